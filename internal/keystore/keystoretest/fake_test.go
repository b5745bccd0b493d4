package keystoretest_test

import (
	"encoding/json"

	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
)

const policiesDir = "../../../policies"

// policyDecision asks the keys policy through the authorizer keygate serves with.
func policyDecision(t *testing.T, eng *engine.Engine, req keystore.KeyRequest) keystore.KeyDecision {
	t.Helper()
	d, err := authz.New(eng).AuthorizeKeys(t.Context(), req)
	if err != nil {
		t.Fatalf("data.keys.decision: %v", err)
	}
	return d
}

// policyPlans reads the plans and their key limits from the policy data.
func policyPlans(t *testing.T) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(policiesDir, "plans", "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	var plans map[string]struct {
		MaxKeys int `json:"maxKeys"`
	}
	if err := json.Unmarshal(b, &plans); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int, len(plans))
	for name, p := range plans {
		out[name] = p.MaxKeys
	}
	return out
}

type flag struct{ Endpoint, Flag string }

func flags(vs []keystore.Violation) []flag {
	out := []flag{}
	for _, v := range vs {
		out = append(out, flag{v.Endpoint, v.Flag})
	}
	return out
}

// TestDefaultLimitsArePolicyData: the fake's limits are those of
// policies/plans/data.json; a plan added there must be added to DefaultLimits.
func TestDefaultLimitsArePolicyData(t *testing.T) {
	if got, want := keystoretest.DefaultLimits(), policyPlans(t); !mapsEqual(got, want) {
		t.Fatalf("keystoretest.DefaultLimits() = %v; policies/plans/data.json has %v", got, want)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestFakeMatchesKeysPolicy runs a table of requests through the fake and
// through the real data.keys.decision and asserts the same allow, status,
// code, limit and violations (endpoint and flag, in order). Messages and
// warnings are not compared: the fake's are its own.
func TestFakeMatchesKeysPolicy(t *testing.T) {
	eng, err := engine.New(t.Context(), policiesDir, engine.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	fake := &keystoretest.Authorizer{}

	const service = "team-demo"
	members := []struct {
		note string
		m    *keystore.Member
	}{
		{"no member", nil},
		{"editor", &keystore.Member{ID: "team-demo-editor", Service: service, Role: "editor"}},
		{"other service's admin", &keystore.Member{ID: "hobby-demo-admin", Service: "hobby-demo", Role: "admin"}},
		{"admin", &keystore.Member{ID: "team-demo-admin", Service: service, Role: "admin"}},
	}
	type plan struct {
		name  string
		limit int
	}
	var plans []plan
	for name, limit := range policyPlans(t) {
		plans = append(plans, plan{name, limit})
	}
	slices.SortFunc(plans, func(a, b plan) int { return strings.Compare(a.name, b.name) })
	plans = append(plans, plan{"platinum", 0}) // not in the policy data: no key at all

	perms := func(p keystore.ContentPerms, individual map[string]keystore.ContentPerms) *keystore.KeySpec {
		return &keystore.KeySpec{Name: "k", ContentAPI: keystore.ContentAPI{Default: p, Individual: individual}}
	}
	configs := []struct {
		note string
		key  *keystore.KeySpec
	}{
		{"no key", nil},
		{"valid", perms(keystore.ContentPerms{Get: true}, map[string]keystore.ContentPerms{"blogs": {Get: true, GetAllDrafts: true, GetAllClosed: true}})},
		{"valid with writes", perms(keystore.ContentPerms{Get: true, Post: true}, nil)},
		{"default getAllDrafts+getAllClosed without get", perms(keystore.ContentPerms{GetAllDrafts: true, GetAllClosed: true}, nil)},
		{"individual getAll* without get, several endpoints", perms(keystore.ContentPerms{Get: true}, map[string]keystore.ContentPerms{
			"news": {GetAllDrafts: true}, "blogs": {GetAllClosed: true, GetAllDrafts: true}, "authors": {Get: true, GetAllClosed: true}, "zeta": {Post: true, GetAllClosed: true},
		})},
		{"default and individual without get", perms(keystore.ContentPerms{GetAllClosed: true}, map[string]keystore.ContentPerms{"a": {GetAllDrafts: true}})},
	}
	actions := []string{keystore.ActionCreate, keystore.ActionRead, keystore.ActionList, keystore.ActionUpdate, keystore.ActionRotate, keystore.ActionDelete, keystore.ActionAudit, "purge"}

	n := 0
	for _, action := range actions {
		for _, m := range members {
			for _, p := range plans {
				for _, count := range []int{max(p.limit-1, 0), p.limit, p.limit + 1} {
					for _, c := range configs {
						req := keystore.KeyRequest{Action: action, Service: keystore.ServiceInput{ID: service, Plan: p.name, KeyCount: count}, Member: m.m, Key: c.key}
						want := policyDecision(t, eng, req)
						got, err := fake.AuthorizeKeys(t.Context(), req)
						if err != nil {
							t.Fatal(err)
						}
						n++
						if got.Allow != want.Allow || got.Status != want.Status || got.Code != want.Code || got.Limit != want.Limit ||
							!slices.Equal(flags(got.Violations), flags(want.Violations)) {
							t.Errorf("%s / %s / %s with %d keys / %s:\n fake   allow=%v status=%d code=%s limit=%d violations=%v\n policy allow=%v status=%d code=%s limit=%d violations=%v",
								action, m.note, p.name, count, c.note,
								got.Allow, got.Status, got.Code, got.Limit, flags(got.Violations),
								want.Allow, want.Status, want.Code, want.Limit, flags(want.Violations))
						}
					}
				}
			}
		}
	}
	t.Logf("%d requests compared", n)
}
