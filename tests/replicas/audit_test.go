package replicas

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

type auditEntry struct {
	Action    string `json:"action"`
	Outcome   string `json:"outcome"`
	Status    int    `json:"status"`
	Actor     string `json:"actor"`
	KeyID     string `json:"keyId"`
	ClientIP  string `json:"clientIp"`
	Recovered bool   `json:"recovered"`
}

// trail is service's audit trail as replica r serves it, newest first.
func (r *replica) trail(t *testing.T, service string) string {
	t.Helper()
	rep := mustCall(t, http.MethodGet, r.URL+"/v1/services/"+service+"/audit?limit=100", adminToken(service), nil)
	if rep.status != http.StatusOK {
		t.Fatalf("replica %s: audit: %s", r.name, rep)
	}
	var page struct {
		Entries []auditEntry `json:"entries"`
	}
	if err := json.Unmarshal(rep.body, &page); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range page.Entries {
		if e.ClientIP == "" || e.Recovered {
			t.Errorf("entry %+v: no address, or recovered", e)
		}
		out = append(out, e.Action+" "+e.Outcome+" "+http.StatusText(e.Status)+" "+e.Actor+" "+e.KeyID)
	}
	return strings.Join(out, "\n")
}

// TestAuditAcrossReplicas: writes and refusals made through either replica
// are in the one audit trail in PostgreSQL, which every replica serves; a
// write acknowledged just before its replica is killed with SIGKILL is in
// it too (its audit row committed with the change).
func TestAuditAcrossReplicas(t *testing.T) {
	const svc = "business-demo"
	c := newCluster(t)
	rs := c.start(t, 2)
	a, b := rs[0], rs[1]
	k := a.createKey(t, svc)
	b.rotateKey(t, svc, k.ID)
	if rep := mustCall(t, http.MethodPost, b.URL+"/v1/services/"+svc+"/keys", svc+"-editor-token", readSpec); rep.status != http.StatusForbidden {
		t.Fatalf("editor create: %s", rep)
	}
	a.deleteKey(t, svc, k.ID)
	last := a.createKey(t, svc)
	if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.Exited()
	want := strings.Join([]string{
		"create allowed Created business-demo-admin " + last.ID,
		"delete allowed No Content business-demo-admin " + k.ID,
		"create refused Forbidden business-demo-editor ",
		"rotate allowed OK business-demo-admin " + k.ID,
		"create allowed Created business-demo-admin " + k.ID,
	}, "\n")
	if got := b.trail(t, svc); got != want {
		t.Fatalf("trail on B after A was killed:\n%s\nwant\n%s", got, want)
	}
	a.restart(t)
	if got := a.trail(t, svc); got != want {
		t.Fatalf("trail on A restarted:\n%s\nwant\n%s", got, want)
	}
}
