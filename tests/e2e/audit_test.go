package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

type auditEntry struct {
	ID             uint64         `json:"id"`
	Service        string         `json:"service"`
	KeyID          string         `json:"keyId"`
	Action         string         `json:"action"`
	Actor          string         `json:"actor"`
	Outcome        string         `json:"outcome"`
	Status         int            `json:"status"`
	Code           string         `json:"code"`
	Before         map[string]any `json:"before"`
	After          map[string]any `json:"after"`
	PolicyRevision string         `json:"policyRevision"`
	ClientIP       string         `json:"clientIp"`
	RequestID      string         `json:"requestId"`
	Recovered      bool           `json:"recovered"`
}

// auditTrail reads service's whole trail as its admin, newest first.
func (f *fixture) auditTrail(t *testing.T, service string) ([]auditEntry, []byte) {
	t.Helper()
	var all []auditEntry
	var raw []byte
	path := "/v1/services/" + service + "/audit?limit=3"
	for {
		r := f.do(t, http.MethodGet, path, nil, bearer(adminToken(service))...)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %s", path, r)
		}
		raw = append(raw, r.body...)
		var page struct {
			Entries []auditEntry `json:"entries"`
			Next    string       `json:"next"`
		}
		r.decode(t, &page)
		all = append(all, page.Entries...)
		if page.Next == "" {
			return all, raw
		}
		path = "/v1/services/" + service + "/audit?limit=3&cursor=" + page.Next
	}
}

func trailSummary(entries []auditEntry) string {
	var out []string
	for _, e := range entries {
		s := e.Action + " " + e.Outcome + " " + http.StatusText(e.Status) + " " + e.Actor
		if e.Recovered {
			s += " recovered"
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n")
}

// TestAuditTrail: on the real binary, key creates, updates, rotations and
// deletes and refused attempts appear in GET /v1/services/{service}/audit
// with the policy revision that decided, the caller's address and the
// request id the answer carried; never a secret; they survive a restart and
// a SIGKILL right after an acknowledged write; other admins and editors
// cannot read them.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const svc = "team-demo"
	admin := bearer(adminToken(svc))
	var ids []string
	note := func(r reply, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s, want %d", r, status)
		}
		ids = append(ids, r.header.Get("X-Keygate-Request-Id"))
	}
	r := f.do(t, http.MethodPost, keysPath(svc), keySpec("web", perms{"get": true}, nil, nil), admin...)
	note(r, http.StatusCreated)
	var c created
	r.decode(t, &c)
	f.addSecret(c.Secret)
	note(f.do(t, http.MethodPut, keysPath(svc, c.Key.ID), keySpec("web2", perms{"get": true, "post": true}, nil, nil), admin...), http.StatusOK)
	r = f.do(t, http.MethodPost, keysPath(svc, c.Key.ID, "rotate"), nil, admin...)
	note(r, http.StatusOK)
	var rot created
	r.decode(t, &rot)
	f.addSecret(rot.Secret)
	note(f.do(t, http.MethodPost, keysPath(svc), keySpec("x", perms{"get": true}, nil, nil), bearer(editorToken(svc))...), http.StatusForbidden)
	note(f.do(t, http.MethodPost, keysPath(svc, c.Key.ID, "rotate"), nil, bearer("e2e-unknown-token-a7f1")...), http.StatusUnauthorized)
	note(f.do(t, http.MethodPut, keysPath(svc, c.Key.ID), keySpec("bad", perms{"getAllDrafts": true}, nil, nil), admin...), http.StatusUnprocessableEntity)
	note(f.do(t, http.MethodDelete, keysPath(svc, c.Key.ID), nil, admin...), http.StatusNoContent)

	var pol struct {
		Revision string `json:"revision"`
	}
	f.do(t, http.MethodGet, "/v1/policies", nil).decode(t, &pol)
	want := strings.Join([]string{
		"delete allowed No Content team-demo-admin",
		"update refused Unprocessable Entity team-demo-admin",
		"rotate refused Unauthorized ",
		"create refused Forbidden team-demo-editor",
		"rotate allowed OK team-demo-admin",
		"update allowed OK team-demo-admin",
		"create allowed Created team-demo-admin",
	}, "\n")
	check := func(t *testing.T, extra ...string) []auditEntry {
		t.Helper()
		entries, raw := f.auditTrail(t, svc)
		if got, want := trailSummary(entries), strings.Join(append(extra, want), "\n"); got != want {
			t.Fatalf("trail:\n%s\nwant\n%s", got, want)
		}
		f.assertNoSecrets(t, "the audit trail", raw)
		for _, s := range []string{c.Secret, rot.Secret} {
			h := sha256.Sum256([]byte(s))
			if strings.Contains(string(raw), hex.EncodeToString(h[:])) {
				t.Fatal("a secret hash is in the audit trail")
			}
		}
		for i, e := range entries[len(extra):] {
			if e.RequestID != ids[len(ids)-1-i] || e.ClientIP != "127.0.0.1" || e.PolicyRevision != pol.Revision {
				t.Errorf("entry %d: request %q (want %q), address %q, policy %q (want %q)", e.ID, e.RequestID, ids[len(ids)-1-i], e.ClientIP, e.PolicyRevision, pol.Revision)
			}
		}
		return entries
	}
	entries := check(t)
	if upd := entries[5]; upd.Before["name"] != "web" || upd.After["name"] != "web2" || upd.KeyID != c.Key.ID {
		t.Errorf("update entry before %v after %v", upd.Before, upd.After)
	}
	for _, who := range [][]string{bearer(editorToken(svc)), bearer(adminToken("business-demo")), nil} {
		if r := f.do(t, http.MethodGet, "/v1/services/"+svc+"/audit", nil, who...); r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
			t.Errorf("audit read by %v: %s", who, r)
		}
	}
	f.assertNoSecrets(t, "the audit file", []byte(readFile(t, f.work.state+".audit")))

	f.restart(t)
	check(t)

	// SIGKILL right after an acknowledged write: its entry was fsynced
	// before the answer, so it is there, not recovered.
	f.createKey(t, svc, keySpec("last", perms{"get": true}, nil, nil))
	if err := f.StopWith(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.Keygate = startKeygate(t, f.work)
	check(t, "create allowed Created team-demo-admin")
}

// TestPolicyHistoryEndpoint: /v1/policies/history lists reloads.
func TestPolicyHistoryEndpoint(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	type history struct {
		Reloads []struct {
			Kind   string `json:"kind"`
			Result string `json:"result"`
			From   string `json:"fromRevision"`
			To     string `json:"toRevision"`
		} `json:"reloads"`
		Capacity int `json:"capacity"`
	}
	// Nothing changed: the reload is not history.
	if r := f.do(t, http.MethodPost, "/v1/policies/reload", nil); r.status != http.StatusOK {
		t.Fatalf("reload: %s", r)
	}
	var h history
	f.do(t, http.MethodGet, "/v1/policies/history", nil).decode(t, &h)
	if len(h.Reloads) != 0 || h.Capacity != 100 {
		t.Fatalf("history after a reload that changed nothing: %+v", h)
	}
	services := filepath.Join(f.work.data, "services.json")
	b := readFile(t, services)
	changed := strings.Replace(b, `"plan": "hobby"`, `"plan": "team"`, 1)
	if changed == b {
		t.Fatal("services.json has no hobby plan to change")
	}
	// Renamed into place, so that a watcher never reads a half-written file.
	tmp := filepath.Join(f.work.dir, "services.json.new")
	writeFile(t, tmp, []byte(changed))
	if err := os.Rename(tmp, services); err != nil {
		t.Fatal(err)
	}
	if r := f.do(t, http.MethodPost, "/v1/policies/reload", nil); r.status != http.StatusOK {
		t.Fatalf("reload: %s", r)
	}
	f.do(t, http.MethodGet, "/v1/policies/history", nil).decode(t, &h)
	if len(h.Reloads) != 1 || h.Reloads[0].Kind != "data" || h.Reloads[0].Result != "ok" || h.Reloads[0].To == "" {
		t.Fatalf("history after a data change: %+v", h)
	}
}

// TestIdempotencyKeyRetry: on the real binary, a create retried with the
// same Idempotency-Key (also after a restart) makes one key; the retry is
// marked Idempotent-Replayed and carries no secret.
func TestIdempotencyKeyRetry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const svc = "business-demo"
	hdr := append(bearer(adminToken(svc)), "Idempotency-Key", "e2e-create-1")
	spec := keySpec("web", perms{"get": true}, nil, nil)
	r := f.do(t, http.MethodPost, keysPath(svc), spec, hdr...)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	var c created
	r.decode(t, &c)
	f.addSecret(c.Secret)
	before, _ := f.listKeys(t, svc)
	f.restart(t)
	r = f.do(t, http.MethodPost, keysPath(svc), spec, hdr...)
	if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "true" || strings.Contains(string(r.body), `"secret"`) {
		t.Fatalf("retry: %s %v", r, r.header)
	}
	if after, _ := f.listKeys(t, svc); len(after) != len(before) {
		t.Fatalf("%d keys after the retry, want %d", len(after), len(before))
	}
}
