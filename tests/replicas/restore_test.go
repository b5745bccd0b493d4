package replicas

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestRestoredBackupReusesARevision: the database is restored from a backup
// taken before a key's update, and the key is then updated again, so its
// revision number comes back with other permissions (lost revision 2: post
// granted; new revision 2: get only). The replica must judge the key as it is
// now: a policy input cached for the lost revision 2 kept granting post.
func TestRestoredBackupReusesARevision(t *testing.T) {
	c := newCluster(t)
	r := c.start(t, 1)[0]
	const service = "enterprise-demo"
	k := r.createKey(t, service)
	for _, tbl := range []string{"services", "members", "keys", "ip_restrictions", "head", "changes"} {
		c.exec(t, "CREATE TABLE bak_"+tbl+" AS TABLE "+tbl)
	}
	put := func(spec map[string]any) {
		t.Helper()
		rep := mustCall(t, http.MethodPut, r.URL+"/v1/services/"+service+"/keys/"+k.ID, adminToken(service), spec)
		if rep.status != http.StatusOK {
			t.Fatalf("update: %s", rep)
		}
	}
	post := func() decision {
		t.Helper()
		rep := mustCall(t, http.MethodPost, r.URL+"/v1/decide", "", map[string]any{
			"service": service, "method": "POST", "path": "/api/v1/blogs", "apiKey": k.Secret})
		var d decision
		if err := json.Unmarshal(rep.body, &d); err != nil || rep.status != http.StatusOK {
			t.Fatalf("decide: %s (%v)", rep, err)
		}
		return d
	}
	put(map[string]any{"name": "web", "contentApi": map[string]any{"default": map[string]any{"get": true, "post": true}}})
	if d := post(); !d.Allow {
		t.Fatalf("POST with post granted: %+v", d)
	}

	c.exec(t, `BEGIN;
		TRUNCATE changes, keys, members, ip_restrictions, services, head;
		INSERT INTO services SELECT * FROM bak_services;
		INSERT INTO members SELECT * FROM bak_members;
		INSERT INTO keys SELECT * FROM bak_keys;
		INSERT INTO ip_restrictions SELECT * FROM bak_ip_restrictions;
		INSERT INTO head SELECT * FROM bak_head;
		INSERT INTO changes SELECT * FROM bak_changes;
		COMMIT`)
	// Wait for the resync without a decision on the key (which would
	// refresh its cached input on the way).
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, h, err := r.health(t.Context())
		if err == nil && h.Store.Resyncs > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no resync after the restore: %+v %v", h, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	put(map[string]any{"name": "renamed", "contentApi": map[string]any{"default": map[string]any{"get": true}}})
	if d := post(); d.Allow || d.Status != http.StatusBadRequest {
		t.Fatalf("POST with the key at its new revision 2 (get only): %+v, want 400 method_forbidden", d)
	}
}
