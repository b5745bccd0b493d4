package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// reloadTimeout bounds how long a policy edit may take to reach the running keygate (the watcher
// debounces bursts; CI machines are slow).
const reloadTimeout = 30 * time.Second

// TestNginxPolicyReload edits the running keygate's policy data (the hobby plan gains the status
// parameter) and sees the change through nginx without a restart; then a broken Rego edit is
// rejected while the gateway keeps serving; and with keygate stopped the gateway fails closed.
func TestNginxPolicyReload(t *testing.T) {
	st := newStack(t)
	hobby := createKey(t, st.Keygate.URL, "hobby-demo", `{"name":"hobby","contentApi":{"default":{"get":true,"post":true}}}`)
	post := request{method: "POST", host: hobbyContent, path: "/api/v1/blogs?status=draft", key: hobby.secret, body: `{"title":"x"}`}
	get := request{host: hobbyContent, path: "/api/v1/blogs", key: hobby.secret}

	wantDenied(t, do(t, st.URL, post), 400, msgStatusParam)
	before := readHealth(t, st.Keygate.URL)

	t.Run("policy data edit is picked up through the proxy", func(t *testing.T) {
		plansPath := filepath.Join(st.Policies, "plans", "data.json")
		b, err := os.ReadFile(plansPath)
		if err != nil {
			t.Fatal(err)
		}
		var plans map[string]map[string]any
		if err := json.Unmarshal(b, &plans); err != nil {
			t.Fatalf("decode %s: %v", plansPath, err)
		}
		if _, ok := plans["hobby"]; !ok {
			t.Fatalf("%s has no hobby plan: %s", plansPath, b)
		}
		plans["hobby"]["statusParameter"] = true
		edited, err := json.MarshalIndent(plans, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		writeFileAtomic(t, plansPath, edited)

		after := waitHealth(t, st.Keygate.URL, reloadTimeout, "a policy revision change",
			func(h health) bool { return h.PolicyRevision != before.PolicyRevision })
		got := do(t, st.URL, post)
		wantAllowed(t, got, 201)
		if v := got.header.Get("X-Echo-Keygate-Policy-Revision"); v != after.PolicyRevision {
			t.Errorf("origin saw policy revision %q, want %q", v, after.PolicyRevision)
		}
		before = after
	})

	t.Run("a broken edit is rejected and the gateway keeps serving", func(t *testing.T) {
		broken := filepath.Join(st.Policies, "content", "zz_broken.rego")
		writeFileAtomic(t, broken, []byte("package content\n\ndecision := {\"allow\": true\n"))
		h := waitHealth(t, st.Keygate.URL, reloadTimeout, "a reload error",
			func(h health) bool { return h.LastReloadError != "" })
		if h.PolicyRevision != before.PolicyRevision {
			t.Errorf("revision changed to %q on a broken edit", h.PolicyRevision)
		}
		wantAllowed(t, do(t, st.URL, get), 200)
		wantAllowed(t, do(t, st.URL, post), 201)
		wantDenied(t, do(t, st.URL, request{host: hobbyContent, path: "/api/v1/blogs"}), 401, msgInvalidKey)
		if err := os.Remove(broken); err != nil {
			t.Fatal(err)
		}
		waitHealth(t, st.Keygate.URL, reloadTimeout, "recovery from the broken edit",
			func(h health) bool { return h.LastReloadError == "" })
	})

	t.Run("keygate down: the gateway fails closed", func(t *testing.T) {
		if err := st.Keygate.Stop(); err != nil {
			t.Fatalf("stop keygate: %v", err)
		}
		for _, req := range []request{get, post, {host: hobbyContent, path: "/api/v1/blogs"}} {
			wantDenied(t, do(t, st.URL, req), 503, "Authorization service unavailable.")
		}
	})
}
