package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/strictjson"
	"github.com/open-policy-agent/opa/ast"
)

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
	if _, ok := s.decodeBody(c, nil, &b, strictjson.Rules{}); !ok {
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
