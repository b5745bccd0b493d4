package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/keygate/keygate/engine"
	"log/slog"
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/keystore"
)

// LoggedDecision is one decision-log line as replay reads it back.
type LoggedDecision struct {
	DecisionID     string            `json:"decisionId"`
	Service        string            `json:"service"`
	KeyID          string            `json:"keyId"`
	KeyRevision    uint64            `json:"keyRevision"`
	API            string            `json:"api"`
	Method         string            `json:"method"`
	Path           string            `json:"path"`
	Query          map[string]string `json:"query"`
	ClientIP       string            `json:"clientIp"`
	Allow          bool              `json:"allow"`
	Status         int               `json:"status"`
	Code           string            `json:"code"`
	Endpoint       string            `json:"endpoint"`
	Permission     string            `json:"permission"`
	PolicyRevision string            `json:"policyRevision"`
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
	// Changed reports whether allow, status or code differ from the log.
	Changed bool
	// KeyDeleted reports that the logged key no longer exists: the
	// decision is not replayed (what the key allowed is unknown).
	KeyDeleted bool
	// KeyChanged reports that the key's revision differs from the logged
	// one: a change may come from the key, not the policy.
	KeyChanged bool
	// Err is the candidate's evaluation error (then Decision is the
	// fail-closed deny the server would answer).
	Err error
}

// Replayer asks a candidate policy the questions of logged decisions,
// building the policy input exactly as the server does.
type Replayer struct {
	s    *Server
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
	s := &Server{
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
// be replayed (ErrNotReplayable).
func (rp *Replayer) Replay(ctx context.Context, e *LoggedDecision) (ReplayOutcome, error) {
	var out ReplayOutcome
	if e.API != apiContent && e.API != apiManagement {
		return out, fmt.Errorf("%w: api %q", ErrNotReplayable, e.API)
	}
	if e.Query == nil {
		return out, fmt.Errorf("%w: logged without its query", ErrNotReplayable)
	}
	r := decisionRequest{service: e.Service, api: e.API, method: e.Method, path: e.Path, clientIP: e.ClientIP}
	r.query = make([][2]string, 0, len(e.Query))
	for k, v := range e.Query {
		r.query = append(r.query, [2]string{k, v})
	}
	slices.SortFunc(r.query, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	var key keystore.Key
	found := false
	if e.KeyID != "" {
		if key, found = rp.keys.KeyByID(e.KeyID); !found {
			out.KeyDeleted = true
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
	if r.api == apiManagement {
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
		out.Decision, out.Err = rp.s.evaluateRequest(ctx, rp.s.policy, &r, &key, found, false)
		if cacheable {
			if len(rp.memo) >= maxReplayMemo {
				clear(rp.memo)
			}
			rp.memo[string(mk)] = memoEntry{d: out.Decision, err: out.Err}
		}
	}
	d := &out.Decision
	out.Changed = d.Allow != e.Allow || d.Status != e.Status || d.Code != e.Code
	return out, nil
}

// replayStore is a read-only KeyStore over ReplayKeys: replay looks keys
// up by id and services by id, and writes nothing.
type replayStore struct{ keys ReplayKeys }

var errReadOnly = errors.New("replay: the key store is read-only")

func (r replayStore) KeyBySecretHash([32]byte) (keystore.Key, bool) { return keystore.Key{}, false }
func (r replayStore) Generation() uint64                            { return 0 }
func (r replayStore) Service(id string) (keystore.Service, bool)    { return r.keys.Service(id) }
func (r replayStore) IPRestrictions(service string) (*keystore.IPRestrictions, uint64, bool) {
	return r.keys.IPRestrictions(service)
}

func (r replayStore) GetIPRestrictions(context.Context, string, string) (keystore.IPRestrictions, error) {
	return keystore.IPRestrictions{}, errReadOnly
}

func (r replayStore) PutIPRestrictions(context.Context, string, string, keystore.IPRestrictions) (keystore.IPRestrictions, error) {
	return keystore.IPRestrictions{}, errReadOnly
}

func (r replayStore) ImportKey(context.Context, string, string, keystore.KeySpec, string) (keystore.Key, bool, error) {
	return keystore.Key{}, false, errReadOnly
}
func (r replayStore) KeyCounts() map[string]int        { return nil }
func (r replayStore) ReloadData(context.Context) error { return errReadOnly }
func (r replayStore) CreateKey(context.Context, string, string, keystore.KeySpec) (keystore.Created, error) {
	return keystore.Created{}, errReadOnly
}

func (r replayStore) GetKey(context.Context, string, string, string) (keystore.Key, error) {
	return keystore.Key{}, errReadOnly
}

func (r replayStore) ListKeys(context.Context, string, string) ([]keystore.Key, error) {
	return nil, errReadOnly
}

func (r replayStore) UpdateKey(context.Context, string, string, string, keystore.KeySpec) (keystore.Updated, error) {
	return keystore.Updated{}, errReadOnly
}

func (r replayStore) RotateKey(context.Context, string, string, string) (keystore.Created, error) {
	return keystore.Created{}, errReadOnly
}

func (r replayStore) DeleteKey(context.Context, string, string, string) error { return errReadOnly }
