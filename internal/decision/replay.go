package decision

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/strictjson"
	"github.com/keygate/keygate/internal/text"
)

// LoggedDecision is one decision-log line as replay reads it back.
type LoggedDecision struct {
	DecisionID  string            `json:"decisionId"`
	Service     string            `json:"service"`
	KeyID       string            `json:"keyId"`
	KeyRevision uint64            `json:"keyRevision"`
	API         string            `json:"api"`
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Query       map[string]string `json:"query"`
	ClientIP    string            `json:"clientIp"`
	Allow       bool              `json:"allow"`
	Status      int               `json:"status"`
	Code        string            `json:"code"`
	// Message is nil on lines from before keygate logged it: then it is
	// not compared.
	Message        *string `json:"message"`
	Endpoint       string  `json:"endpoint"`
	Permission     string  `json:"permission"`
	PolicyRevision string  `json:"policyRevision"`
	// Legacy is set on decisions judged by the old key headers.
	Legacy *LegacyEntry `json:"legacy"`
	// NotAsked is set on answers given without asking the policy.
	NotAsked bool `json:"notAsked"`
	// Truncated is set on lines whose fields the log cut.
	Truncated bool `json:"truncated"`
	// Shadow is set on the lines that record a shadow candidate's
	// disagreement: they repeat a decision, replay skips them.
	Shadow json.RawMessage `json:"shadow"`
}

// ReplayKeys is what replay needs of the key store: keys by id and
// services, as they are now. *keystore.Store implements it.
type ReplayKeys interface {
	KeyByID(id string) (keystore.Key, bool)
	Service(id string) (keystore.Service, bool)
	IPRestrictions(service string) (*keystore.IPRestrictions, uint64, bool)
}

var _ ReplayKeys = (*keystore.Store)(nil)

// ErrNotReplayable reports a logged decision that cannot be asked again as
// it was: it lacks what the policy saw (lines from before keygate logged
// the query) or names an unknown API.
var ErrNotReplayable = errors.New("decision cannot be replayed")

// ReplayOutcome is what a candidate policy decides for a logged decision.
type ReplayOutcome struct {
	// Decision is the candidate's answer (zero when KeyDeleted).
	Decision Decision
	// KeyHeader is the old header whose key the candidate chose, for a
	// decision judged by the old key headers.
	KeyHeader string
	// Changed reports whether allow, status, code, message or (old
	// headers) the chosen header differ from the log.
	Changed bool
	// KeyDeleted reports that a logged key no longer exists: the
	// decision is not replayed (what the key allowed is unknown).
	KeyDeleted bool
	// DeletedKeyID is that key's id.
	DeletedKeyID string
	// NotAsked reports a logged answer the server gave without asking the
	// policy (a stale key store's 503): nothing is replayed.
	NotAsked bool
	// Truncated reports a line whose fields the decision log cut (a path
	// or query value over 1 KiB): the question is not known exactly, so
	// it is not replayed.
	Truncated bool
	// KeyChanged reports that a key's revision differs from the logged
	// one: a change may come from the key, not the policy.
	KeyChanged bool
	// Err is the candidate's evaluation error (then Decision is the
	// fail-closed deny the server would answer).
	Err error
}

// Replayer asks a candidate policy the questions of logged decisions,
// building the policy input exactly as the server does.
type Replayer struct {
	s    *Point
	keys ReplayKeys
	// memo remembers the candidate's answer by the exact question (as the
	// server's decision cache does): a log repeats the same questions
	// over and over, and an evaluation is deterministic.
	memo    map[string]memoEntry
	memoKey []byte
	// Hits counts the decisions answered from the memo.
	Hits int
}

type memoEntry struct {
	d   Decision
	err error
}

// maxReplayMemo bounds the memo; it is emptied when full.
const maxReplayMemo = 200_000

// NewReplayer returns a replayer evaluating candidate with keys as keys
// has them now.
func NewReplayer(candidate Decider, keys ReplayKeys) *Replayer {
	s := &Point{
		policy:   candidate,
		keys:     replayStore{keys},
		log:      slog.New(slog.DiscardHandler),
		inputs:   newKeyInputs(),
		services: newServiceInputs(),
		names:    newNames(),
	}
	return &Replayer{s: s, keys: keys, memo: make(map[string]memoEntry)}
}

// Replay re-evaluates one logged decision; an error means the line cannot
// be replayed (ErrNotReplayable): it is validated as /v1/decide validates
// a request, so a line keygate could not have written is refused, not
// asked.
func (rp *Replayer) Replay(ctx context.Context, e *LoggedDecision) (ReplayOutcome, error) {
	var out ReplayOutcome
	r, err := replayRequest(e)
	if err != nil {
		return out, err
	}
	if e.NotAsked {
		out.NotAsked = true
		return out, nil
	}
	if e.Truncated {
		out.Truncated = true
		return out, nil
	}
	if e.Legacy != nil {
		return rp.replayLegacy(ctx, e, &r)
	}
	var key keystore.Key
	found := false
	if e.KeyID != "" {
		if key, found = rp.keys.KeyByID(e.KeyID); !found {
			out.KeyDeleted, out.DeletedKeyID = true, e.KeyID
			return out, nil
		}
		out.KeyChanged = e.KeyRevision != 0 && key.Revision != e.KeyRevision
	}
	// The question, as the server's decision cache keys it: the key by id
	// and current revision (which fix its input), and the projection of the
	// request onto what the candidate's entrypoint reads (engine.Project) —
	// so logged decisions that differ only where the candidate does not
	// look (a content id, another query parameter) are evaluated once. A
	// candidate that reaches a non-deterministic builtin is asked every
	// time.
	entrypoint := engine.Content
	if r.api == APIManagement {
		entrypoint = engine.Management
	}
	_, proj := rp.s.policy.Projection(entrypoint)
	cacheable := proj != nil && proj.Cacheable
	var mk []byte
	if cacheable {
		clientIP := r.clientIP
		if _, _, restricted := rp.s.keys.IPRestrictions(r.service); !restricted {
			clientIP = ""
		}
		view := newRequestView(r.api, r.method, r.path, clientIP, r.query)
		mk = appendKeyPart(rp.memoKey[:0], key.ID)
		mk = binary.AppendUvarint(mk, key.Revision)
		mk = appendCacheKey(mk, rp.s.names, proj, &r, &view, false, nil)
		rp.memoKey = mk
	}
	if m, ok := rp.memo[string(mk)]; cacheable && ok {
		rp.Hits++
		out.Decision, out.Err = m.d, m.err
	} else {
		out.Decision, out.Err = rp.s.evaluateRequest(ctx, rp.s.policy, &r, keystore.RefOf(key), found, false)
		if cacheable {
			if len(rp.memo) >= maxReplayMemo {
				clear(rp.memo)
			}
			rp.memo[string(mk)] = memoEntry{d: out.Decision, err: out.Err}
		}
	}
	out.Changed = changed(e, &out.Decision)
	return out, nil
}

// replayLegacy asks a decision judged by the old key headers again: each
// header with the key it matched then, as that key is now. It is not
// memoised (the server does not cache these either).
func (rp *Replayer) replayLegacy(ctx context.Context, e *LoggedDecision, r *Request) (ReplayOutcome, error) {
	var out ReplayOutcome
	keys := make([]legacyKey, len(e.Legacy.Headers))
	for i, h := range e.Legacy.Headers {
		keys[i].header = h.Header
		if h.KeyID == "" {
			continue
		}
		k, found := rp.keys.KeyByID(h.KeyID)
		if !found {
			out.KeyDeleted, out.DeletedKeyID = true, h.KeyID
			return out, nil
		}
		keys[i].key, keys[i].found = keystore.RefOf(k), true
		out.KeyChanged = out.KeyChanged || h.KeyRevision != 0 && k.Revision != h.KeyRevision
	}
	d, le, err := rp.s.evaluateLegacyRequest(ctx, rp.s.policy, r, keys, e.Legacy.MicrocmsKey, false)
	out.Decision, out.Err, out.KeyHeader = d, err, le.KeyHeader
	out.Changed = changed(e, &d) || le.KeyHeader != e.Legacy.KeyHeader
	return out, nil
}

// changed reports whether a candidate's answer differs from the logged
// one in what a client is told: allow, status, code and message (when the
// line has one).
func changed(e *LoggedDecision, d *Decision) bool {
	return d.Allow != e.Allow || d.Status != e.Status || d.Code != e.Code || e.Message != nil && d.Message != *e.Message
}

// replayRequest validates a logged decision as /v1/decide validates a
// request — through the same function, with the same bounds — and returns
// its question. The other fields a line carries are bounded as the
// decision log bounds what it writes.
func replayRequest(e *LoggedDecision) (Request, error) {
	if e.API != APIContent && e.API != APIManagement {
		return Request{}, fmt.Errorf("%w: api %q", ErrNotReplayable, text.Bounded(e.API, maxLogField))
	}
	if e.Query == nil {
		return Request{}, fmt.Errorf("%w: logged without its query", ErrNotReplayable)
	}
	for _, f := range [...]struct{ name, v string }{{"decisionId", e.DecisionID}, {"keyId", e.KeyID}, {"code", e.Code},
		{"endpoint", e.Endpoint}, {"permission", e.Permission}, {"policyRevision", e.PolicyRevision}} {
		if len(f.v) > maxLogField {
			return Request{}, fmt.Errorf("%w: field %s is longer than the decision log writes", ErrNotReplayable, f.name)
		}
	}
	if e.Message != nil && len(*e.Message) > maxLogField {
		return Request{}, fmt.Errorf("%w: field message is longer than the decision log writes", ErrNotReplayable)
	}
	// The logged path is unescaped; escaped again ('%' and '?' included),
	// the body's parse gives it back exactly.
	b := Body{Service: e.Service, API: e.API, Method: e.Method, Path: (&url.URL{Path: e.Path}).EscapedPath(),
		Query: e.Query, ClientIP: e.ClientIP}
	// The body passes the edge's scan as a request's would, within the
	// same structural bounds. A NUL is text here: the query a line holds
	// includes the path's parameters, where %00 decodes to one.
	if raw, err := json.Marshal(&b); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrNotReplayable, err)
	} else if f := strictjson.Scan(raw, strictjson.Rules{ExactIn: "query", AllowNUL: true}); f.Kind == strictjson.FaultText {
		return Request{}, fmt.Errorf("%w: %s", ErrNotReplayable, strictjson.TextFaultDetail(f))
	} else if f.Kind != strictjson.FaultNone {
		return Request{}, fmt.Errorf("%w: field %s is not a body /v1/decide reads", ErrNotReplayable, text.Bounded(f.Path, text.MaxEcho))
	}
	r, field, why := b.Request()
	if field != "" {
		return r, fmt.Errorf("%w: field %s %s", ErrNotReplayable, field, why)
	}
	if r.path != e.Path || len(r.query) != len(e.Query) {
		return r, fmt.Errorf("%w: field path is not a path /v1/decide reads", ErrNotReplayable)
	}
	if l := e.Legacy; l != nil {
		if r.api != APIContent {
			return r, fmt.Errorf("%w: old key headers on a %s decision", ErrNotReplayable, r.api)
		}
		if len(l.Headers) == 0 {
			return r, fmt.Errorf("%w: field legacy names no header", ErrNotReplayable)
		}
		chosen := l.KeyHeader == ""
		for i, h := range l.Headers {
			if legacyHeaderName(h.Header) != h.Header || slices.ContainsFunc(l.Headers[:i], func(p LegacyHeaderEntry) bool { return p.Header == h.Header }) {
				return r, fmt.Errorf("%w: field legacy names an unknown or repeated header", ErrNotReplayable)
			}
			if len(h.KeyID) > maxLogField {
				return r, fmt.Errorf("%w: field legacy has a key id longer than the decision log writes", ErrNotReplayable)
			}
			chosen = chosen || h.Header == l.KeyHeader
		}
		if !chosen {
			return r, fmt.Errorf("%w: field legacy chose a header it does not list", ErrNotReplayable)
		}
	}
	return r, nil
}

// replayStore is the Keys of a replay: keys by id and services by id as
// ReplayKeys has them now; no key is looked up by secret.
type replayStore struct{ keys ReplayKeys }

func (r replayStore) KeyRefBySecretHash([32]byte) (keystore.KeyRef, bool) {
	return keystore.KeyRef{}, false
}
func (r replayStore) Generation() uint64                         { return 0 }
func (r replayStore) Service(id string) (keystore.Service, bool) { return r.keys.Service(id) }
func (r replayStore) IPRestrictions(service string) (*keystore.IPRestrictions, uint64, bool) {
	return r.keys.IPRestrictions(service)
}
