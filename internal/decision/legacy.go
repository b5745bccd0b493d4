package decision

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The old microCMS key headers (services created up to 2021-10-22), which
// --legacy-headers accepts on the decision endpoints as a migration aid.
const (
	LegacyAPIKeyHeader   = "X-API-KEY"
	LegacyWriteKeyHeader = "X-WRITE-API-KEY"
	LegacyDraftKeyHeader = "X-GLOBAL-DRAFT-KEY"
)

var legacyHeaderNames = [...]string{LegacyAPIKeyHeader, LegacyWriteKeyHeader, LegacyDraftKeyHeader}

// legacyRequest is the old headers of one decision request: each present
// one's value, by its canonical name.
type legacyRequest struct {
	values map[string]string
}

// legacyHeaderName returns the canonical old header name of name, or "".
func legacyHeaderName(name string) string {
	for _, n := range legacyHeaderNames {
		if strings.EqualFold(name, n) {
			return n
		}
	}
	return ""
}

// legacyKey is one old header of a question with the key its value
// matched: found is false for an empty value or a secret that matches no
// key (the selection policy sees the header present without a key).
type legacyKey struct {
	header string
	key    keystore.KeyRef
	found  bool
}

// legacyHash is one old header of a question without its secret: its
// value's hash (hasValue false for an empty value). The shadow worker
// keeps it to look the key up again, as decide did.
type legacyHash struct {
	header   string
	hasValue bool
	hash     [32]byte
}

// hashes returns the request's old headers by canonical name, in name
// order, with their values hashed.
func (l *legacyRequest) hashes() []legacyHash {
	out := make([]legacyHash, 0, len(l.values))
	for _, name := range legacyHeaderNames {
		v, ok := l.values[name]
		if !ok {
			continue
		}
		h := legacyHash{header: name, hasValue: v != ""}
		if h.hasValue {
			h.hash = sha256.Sum256([]byte(v))
		}
		out = append(out, h)
	}
	return out
}

// legacyKeys looks up the key of each old header by its value's hash.
func (s *Point) legacyKeys(hs []legacyHash) []legacyKey {
	out := make([]legacyKey, len(hs))
	for i, h := range hs {
		out[i].header = h.header
		if h.hasValue {
			out[i].key, out[i].found = s.keys.KeyRefBySecretHash(h.hash)
		}
	}
	return out
}

// evaluateLegacy judges a content API request made with old headers with
// policy (the serving one, a shadow or a replay candidate: the same
// questions either way): the legacy selection chooses the key among the
// headers' keys (or refuses), the content decision judges with it, and
// drafts show only when the selection says so. microcmsKey reports that
// X-MICROCMS-API-KEY was sent too. The returned entry records the question
// and the chosen header for the decision log.
func (s *Point) evaluateLegacy(ctx context.Context, policy Decider, r *Request, req *ast.Term, keys []legacyKey, microcmsKey bool,
	ipr *keystore.IPRestrictions, iprRev uint64, logErrors bool) (Decision, *LegacyEntry, error) {
	le := &LegacyEntry{MicrocmsKey: microcmsKey, Headers: make([]LegacyHeaderEntry, len(keys))}
	headers := ast.NewObject()
	for i, lk := range keys {
		le.Headers[i].Header = lk.header
		entry := ast.NewObject()
		if lk.found {
			in := s.inputs.get(lk.key)
			le.Headers[i].KeyID, le.Headers[i].KeyRevision = in.id, in.revision
			entry.Insert(str("key"), ast.NewTerm(in.value))
		}
		headers.Insert(str(lk.header), ast.NewTerm(entry))
	}
	var svc *ast.Term
	if sv, ok := s.keys.Service(r.service); ok {
		svc = s.services.get(s.names, &sv, ipr, iprRev)
	}
	in := requestInput(s.names, svc, nil, req).(ast.Object)
	in.Insert(str("legacy"), ast.ObjectTerm(
		ast.Item(str("headers"), ast.NewTerm(headers)),
		ast.Item(str("microcmsKey"), boolean(microcmsKey)),
	))
	sel, err := policy.Decide(ctx, engine.LegacySelection, in)
	var out Decision
	out.PolicyRevision = sel.Revision
	out.Visibility.FilterOn = "published"
	if err != nil {
		if logErrors {
			s.log.ErrorContext(ctx, "legacy decision failed closed", "service", r.service, "error", err.Error())
		}
		out.Status, out.Code, out.Message = http.StatusServiceUnavailable, "policy_error", "Policy evaluation failed."
		return out, le, err
	}
	if !getBool(sel.Value, s.names.allow) {
		if err := fillDecision(s.names, &out, sel.Value); err != nil {
			if logErrors {
				s.log.ErrorContext(ctx, "legacy decision failed closed", "service", r.service, "error", err.Error())
			}
			return out, le, err
		}
		out.Allow, out.Permission, out.Endpoint, out.ContentID = false, "", "", ""
		return out, le, nil
	}
	chosen := getString(sel.Value, str("keyHeader"))
	i := slices.IndexFunc(keys, func(lk legacyKey) bool { return lk.header == chosen })
	if i < 0 || !keys[i].found { // an allow naming no found key contradicts itself: fail closed
		out.Status, out.Code, out.Message = http.StatusServiceUnavailable, "policy_error", "Policy chose no key."
		return out, le, errors.New("legacy selection chose a header without a key")
	}
	le.KeyHeader = chosen
	out, err = s.evaluateWith(ctx, policy, r, engine.Content, req, keys[i].key, true, ipr, iprRev, logErrors)
	if err == nil && !getBool(sel.Value, str("drafts")) {
		out.Visibility.Drafts = false
	}
	return out, le, err
}

// LegacyHeaderNames returns the old key headers' canonical names.
func LegacyHeaderNames() [3]string { return legacyHeaderNames }

// AddLegacyHeader records the value of the old key header name (one of
// LegacyHeaderNames) on a content API request.
func (r *Request) AddLegacyHeader(name, value string) {
	if r.legacy == nil {
		r.legacy = &legacyRequest{values: make(map[string]string, 3)}
	}
	r.legacy.values[name] = value
}
