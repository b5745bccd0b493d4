// Package keystoretest provides a fake keystore.Authorizer that mimics the
// data.keys.decision contract of policies/README.md, for tests of the store
// and of its callers. The real decision is the Rego policy; this fake exists
// so those tests need neither OPA nor the policies directory.
package keystoretest

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/keygate/keygate/internal/keystore"
)

// DefaultLimits are the plan limits of SPEC.md rule 7.
func DefaultLimits() map[string]int {
	return map[string]int{"hobby": 1, "team": 3, "business": 10, "enterprise": 20}
}

// Authorizer is a fake keys policy: admin of the same service only, plan key
// limits on create, getAllDrafts/getAllClosed require get, and a few warnings.
type Authorizer struct {
	// Limits per plan; nil means DefaultLimits.
	Limits map[string]int
	// Err, when set, is returned by every call (to test failing closed).
	Err error

	mu       sync.Mutex
	requests []keystore.KeyRequest
}

var _ keystore.Authorizer = (*Authorizer)(nil)

// Requests returns the requests seen so far.
func (a *Authorizer) Requests() []keystore.KeyRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]keystore.KeyRequest(nil), a.requests...)
}

// AuthorizeKeys implements keystore.Authorizer.
func (a *Authorizer) AuthorizeKeys(ctx context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	a.mu.Lock()
	a.requests = append(a.requests, req)
	a.mu.Unlock()
	if a.Err != nil {
		return keystore.KeyDecision{}, a.Err
	}
	if err := ctx.Err(); err != nil {
		return keystore.KeyDecision{}, err
	}
	// As the policy does, violations are computed for every create and
	// update whatever the verdict (the store validates seed keys with them).
	violations := []keystore.Violation{}
	if req.Key != nil && (req.Action == keystore.ActionCreate || req.Action == keystore.ActionUpdate) {
		check := func(ep string, p keystore.ContentPerms) {
			if p.GetAllDrafts && !p.Get {
				violations = append(violations, keystore.Violation{Endpoint: ep, Flag: "getAllDrafts", Message: "getAllDrafts requires get"})
			}
			if p.GetAllClosed && !p.Get {
				violations = append(violations, keystore.Violation{Endpoint: ep, Flag: "getAllClosed", Message: "getAllClosed requires get"})
			}
		}
		check("default", req.Key.ContentAPI.Default)
		for ep, p := range req.Key.ContentAPI.Individual {
			check(ep, p)
		}
	}
	deny := func(status int, code, msg string) keystore.KeyDecision {
		return keystore.KeyDecision{Status: status, Code: code, Message: msg, Violations: violations, Warnings: []keystore.Warning{}}
	}
	switch {
	case req.Member == nil:
		return deny(http.StatusUnauthorized, "unauthenticated", "Unauthorized"), nil
	case req.Member.Service != req.Service.ID || req.Member.Role != "admin":
		return deny(http.StatusForbidden, "forbidden", "Forbidden"), nil
	}
	limits := a.Limits
	if limits == nil {
		limits = DefaultLimits()
	}
	limit, known := limits[req.Service.Plan]
	if req.Action == keystore.ActionCreate && (!known || req.Service.KeyCount >= limit) {
		d := deny(http.StatusConflict, "key_limit_exceeded", fmt.Sprintf("The %s plan allows %d API keys.", req.Service.Plan, limit))
		d.Limit = limit
		return d, nil
	}
	dec := keystore.KeyDecision{Allow: true, Status: http.StatusOK, Code: "allowed", Limit: limit, Violations: violations, Warnings: []keystore.Warning{}}
	if req.Key == nil {
		return dec, nil
	}
	if len(violations) > 0 {
		v := violations[0]
		return deny(http.StatusUnprocessableEntity, "invalid_key_config", fmt.Sprintf("%s requires get (%s)", v.Flag, v.Endpoint)), nil
	}
	if d := req.Key.ContentAPI.Default; d.Post || d.Put || d.Patch || d.Delete {
		dec.Warnings = append(dec.Warnings, keystore.Warning{Code: "default_write", Message: "write methods in default permissions make every API writable", Endpoint: "default"})
	}
	if req.Key.ManagementAPI != (keystore.ManagementPerms{}) {
		dec.Warnings = append(dec.Warnings, keystore.Warning{Code: "management_permission", Message: "the key has management API permissions"})
	}
	return dec, nil
}
