package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
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
	key    keystore.Key
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
func (s *Server) legacyKeys(hs []legacyHash) []legacyKey {
	out := make([]legacyKey, len(hs))
	for i, h := range hs {
		out[i].header = h.header
		if h.hasValue {
			out[i].key, out[i].found = s.keys.KeyBySecretHash(h.hash)
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
func (s *Server) evaluateLegacy(ctx context.Context, policy Decider, r *decisionRequest, req *ast.Term, keys []legacyKey, microcmsKey bool,
	ipr *keystore.IPRestrictions, iprRev uint64, logErrors bool) (Decision, *LegacyEntry, error) {
	le := &LegacyEntry{MicrocmsKey: microcmsKey, Headers: make([]LegacyHeaderEntry, len(keys))}
	headers := ast.NewObject()
	for i, lk := range keys {
		le.Headers[i].Header = lk.header
		entry := ast.NewObject()
		if lk.found {
			le.Headers[i].KeyID, le.Headers[i].KeyRevision = lk.key.ID, lk.key.Revision
			entry.Insert(str("key"), ast.NewTerm(s.inputs.get(&lk.key)))
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
	out, err = s.evaluateWith(ctx, policy, r, engine.Content, req, &keys[i].key, true, ipr, iprRev, logErrors)
	if err == nil && !getBool(sel.Value, str("drafts")) {
		out.Visibility.Drafts = false
	}
	return out, le, err
}

// legacyImportBody is the body of POST /v1/services/{service}/legacy-keys.
type legacyImportBody struct {
	Keys         []legacyImportKey   `json:"keys"`
	WriteMethods map[string][]string `json:"writeMethods"`
}

type legacyImportKey struct {
	Header string `json:"header"`
	Value  string `json:"value"`
	Name   string `json:"name"`
}

// LegacyImportResult is one old key's outcome: created, exists (a key of
// this service has the value already: nothing written) or refused.
type LegacyImportResult struct {
	Index   int           `json:"index"`
	Header  string        `json:"header"`
	Result  string        `json:"result"`
	Key     *keystore.Key `json:"key,omitempty"`
	Problem *Problem      `json:"problem,omitempty"`
}

const maxLegacyImport = 100

// handleImportLegacy imports old microCMS keys as X-MICROCMS-API-KEY keys
// with the same values: the legacy policy maps each to its configuration,
// and the key store creates it through the authorized, plan-limited write
// path of every create. A 401 or 403 answers the whole request; anything
// else is reported per key, in order, and the answer is 200.
func (s *Server) handleImportLegacy(c *gin.Context) {
	var b legacyImportBody
	if _, ok := s.decodeBody(c, nil, &b, bodyRules{}); !ok {
		return
	}
	if len(b.Keys) == 0 || len(b.Keys) > maxLegacyImport {
		s.problem(c, http.StatusBadRequest, "invalid_field", "Field keys must list 1 to 100 old keys.")
		return
	}
	ctx := c.Request.Context()
	token, service := bearer(c), c.Param("service")
	results := make([]LegacyImportResult, 0, len(b.Keys))
	for i, k := range b.Keys {
		res := LegacyImportResult{Index: i, Header: k.Header}
		spec, p := s.legacyMigration(ctx, k, b.WriteMethods)
		if p == nil {
			key, existed, err := s.keys.ImportKey(ctx, token, service, spec, k.Value)
			s.metrics.observeKeyWrite(keystore.ActionCreate, http.StatusCreated, err)
			var ke *keystore.Error
			switch {
			case err == nil && existed:
				res.Result, res.Key = "exists", &key
			case err == nil:
				res.Result, res.Key = "created", &key
			case errors.As(err, &ke) && (ke.Status == http.StatusUnauthorized || ke.Status == http.StatusForbidden):
				s.storeProblem(c, err)
				return
			case errors.As(err, &ke) && ke.Status < 500:
				p = &Problem{Status: ke.Status, Code: ke.Code, Detail: ke.Message, Violations: ke.Violations, Limit: ke.Limit}
			default:
				s.storeProblem(c, err)
				return
			}
		}
		if p != nil {
			p.Title = http.StatusText(p.Status)
			p.Type = "https://keygate.dev/problems/" + strings.ReplaceAll(p.Code, "_", "-")
			res.Result, res.Problem = "refused", p
		}
		results = append(results, res)
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"results": results})
}

// legacyMigration asks data.legacy.migration for an old key's configuration.
func (s *Server) legacyMigration(ctx context.Context, k legacyImportKey, methods map[string][]string) (keystore.KeySpec, *Problem) {
	in := map[string]any{"header": strings.ToUpper(k.Header), "name": k.Name}
	if methods != nil {
		in["writeMethods"] = methods
	}
	v, err := ast.InterfaceToValue(in)
	if err != nil {
		return keystore.KeySpec{}, &Problem{Status: http.StatusBadRequest, Code: "invalid_field", Detail: "The old key could not be read."}
	}
	d, err := s.policy.Decide(ctx, engine.LegacyMigration, v)
	if err != nil {
		s.log.ErrorContext(ctx, "legacy migration failed closed", "error", err.Error())
		return keystore.KeySpec{}, &Problem{Status: http.StatusServiceUnavailable, Code: "policy_error", Detail: "Policy evaluation failed."}
	}
	var out struct {
		Allow   bool             `json:"allow"`
		Status  int              `json:"status"`
		Code    string           `json:"code"`
		Message string           `json:"message"`
		Key     keystore.KeySpec `json:"key"`
	}
	if err := ast.As(d.Value, &out); err != nil || !out.Allow {
		if out.Status < 400 {
			out.Status, out.Code, out.Message = http.StatusUnprocessableEntity, "invalid_legacy_key", "The old key cannot be migrated."
		}
		return keystore.KeySpec{}, &Problem{Status: out.Status, Code: out.Code, Detail: out.Message}
	}
	return out.Key, nil
}
