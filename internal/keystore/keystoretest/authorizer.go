// Package keystoretest provides a fake keystore.Authorizer that mimics the
// data.keys.decision contract of policies/README.md, for tests of the store
// and of its callers. The real decision is the Rego policy; this fake exists
// so those tests need neither OPA nor the policies directory.
//
// contract_test.go runs a table of requests (every action, no member /
// editor / another service's admin / admin, every plan of
// policies/plans/data.json and an unknown one at, under and over its limit,
// valid and getAll*-without-get configurations) through both and asserts the
// same allow, status, code, limit and violations (endpoint and flag, in the
// policy's order). Messages and warnings are the fake's own and may differ
// from the policy's: do not assert on them in tests that use the fake.
package keystoretest

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"

	"github.com/keygate/keygate/internal/keystore"
)

// DefaultLimits are the per-plan key limits, as in
// policies/plans/data.json (the contract test checks they agree).
func DefaultLimits() map[string]int {
	return map[string]int{"hobby": 1, "team": 3, "business": 10, "advanced": 20, "enterprise": 20}
}

// Authorizer is a fake keys policy: admin of the same service only, plan key
// limits on create (an unknown plan allows none), getAllDrafts/getAllClosed
// require get, and a few warnings.
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

// setErr sets Err while other goroutines may be deciding.
func (a *Authorizer) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Err = err
}

func (a *Authorizer) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Err
}

var actions = []string{keystore.ActionCreate, keystore.ActionRead, keystore.ActionList, keystore.ActionUpdate, keystore.ActionRotate, keystore.ActionDelete, keystore.ActionAudit}

// Revision is the policy revision the fake reports in every decision.
const Revision = "keystoretest"

// AuthorizeKeys implements keystore.Authorizer. It follows the policy's
// verdict order: 401 no member, 403 not an admin of the service, 400 unknown
// action, 409 create at or over the plan's limit, 422 create/update without a
// configuration or with violations, else allow.
func (a *Authorizer) AuthorizeKeys(ctx context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	d, err := a.decide(ctx, req)
	d.PolicyRevision = Revision
	return d, err
}

func (a *Authorizer) decide(ctx context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	a.mu.Lock()
	a.requests = append(a.requests, req)
	failure := a.Err
	a.mu.Unlock()
	if failure != nil {
		return keystore.KeyDecision{}, failure
	}
	if err := ctx.Err(); err != nil {
		return keystore.KeyDecision{}, err
	}
	limits := a.Limits
	if limits == nil {
		limits = DefaultLimits()
	}
	// Every decision carries the plan's limit (0 for an unknown plan).
	limit := limits[req.Service.Plan]
	config := req.Action == keystore.ActionCreate || req.Action == keystore.ActionUpdate
	// As the policy does, violations are computed for every create and
	// update whatever the verdict (the store validates seed keys with them).
	violations := []keystore.Violation{}
	if req.Key != nil && config {
		violations = violationsOf(req.Key.ContentAPI)
	}
	deny := func(status int, code, msg string) keystore.KeyDecision {
		return keystore.KeyDecision{Status: status, Code: code, Message: msg, Violations: violations, Warnings: []keystore.Warning{}, Limit: limit}
	}
	switch {
	case req.Member == nil:
		return deny(http.StatusUnauthorized, "unauthenticated", "Unauthorized"), nil
	case req.Member.Service != req.Service.ID || req.Member.Role != "admin":
		return deny(http.StatusForbidden, "forbidden", "Forbidden"), nil
	case !slices.Contains(actions, req.Action):
		return deny(http.StatusBadRequest, "unknown_action", "Unknown action"), nil
	case req.Action == keystore.ActionCreate && req.Service.KeyCount >= limit:
		return deny(http.StatusConflict, "key_limit_exceeded", fmt.Sprintf("The %s plan allows %d API keys.", req.Service.Plan, limit)), nil
	case config && req.Key == nil:
		return deny(http.StatusUnprocessableEntity, "invalid_key_config", "missing key configuration"), nil
	case len(violations) > 0:
		v := violations[0]
		return deny(http.StatusUnprocessableEntity, "invalid_key_config", fmt.Sprintf("%s requires get (%s)", v.Flag, v.Endpoint)), nil
	}
	dec := keystore.KeyDecision{Allow: true, Status: http.StatusOK, Code: "allowed", Limit: limit, Violations: violations, Warnings: []keystore.Warning{}}
	if !config {
		return dec, nil
	}
	if d := req.Key.ContentAPI.Default; d.Post || d.Put || d.Patch || d.Delete {
		dec.Warnings = append(dec.Warnings, keystore.Warning{Code: "default_write", Message: "write methods in default permissions make every API writable", Endpoint: "default"})
	}
	if req.Key.ManagementAPI != (keystore.ManagementPerms{}) {
		dec.Warnings = append(dec.Warnings, keystore.Warning{Code: "management_permission", Message: "the key has management API permissions"})
	}
	return dec, nil
}

// violationsOf lists getAllDrafts/getAllClosed set without get in the
// policy's order: default first, then by endpoint, and by flag name.
func violationsOf(c keystore.ContentAPI) []keystore.Violation {
	var out []keystore.Violation
	check := func(ep string, p keystore.ContentPerms) {
		if p.GetAllClosed && !p.Get {
			out = append(out, keystore.Violation{Endpoint: ep, Flag: "getAllClosed", Message: "getAllClosed requires get"})
		}
		if p.GetAllDrafts && !p.Get {
			out = append(out, keystore.Violation{Endpoint: ep, Flag: "getAllDrafts", Message: "getAllDrafts requires get"})
		}
	}
	check("default", c.Default)
	for _, ep := range slices.Sorted(maps.Keys(c.Individual)) {
		check(ep, c.Individual[ep])
	}
	if out == nil {
		out = []keystore.Violation{}
	}
	return out
}
