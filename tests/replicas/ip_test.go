package replicas

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// decideFrom asks r whether secret may GET /api/v1/news of service from
// the client address ip.
func (r *replica) decideFrom(ctx context.Context, service, secret, ip string) (decision, error) {
	rep, err := call(ctx, http.MethodPost, r.URL+"/v1/decide", "", map[string]any{
		"service": service, "method": "GET", "path": "/api/v1/news", "apiKey": secret, "clientIp": ip})
	if err != nil {
		return decision{}, err
	}
	if rep.status != http.StatusOK {
		return decision{}, fmt.Errorf("decide: %s", rep)
	}
	var d decision
	return d, json.Unmarshal(rep.body, &d)
}

// waitIP polls r until the decision for ip is want (allow, or the 400
// ip_address_rejected) and returns how long that took.
func (r *replica) waitIP(t *testing.T, service, secret, ip string, allow bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		d, err := r.decideFrom(t.Context(), service, secret, ip)
		if err != nil {
			t.Fatalf("replica %s: %v", r.name, err)
		}
		if d.Allow == allow && (allow || d.Status == http.StatusBadRequest && d.Code == "ip_address_rejected") {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("replica %s: decision from %s is %+v after %s, want allow=%v", r.name, ip, d, within, allow)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *replica) putIP(t *testing.T, service string, body any) reply {
	t.Helper()
	return mustCall(t, http.MethodPut, r.URL+"/v1/services/"+service+"/ip-restrictions", adminToken(service), body)
}

func (c *cluster) changeCounts(t *testing.T) (head, changes int64) {
	t.Helper()
	c.query(t, `SELECT revision, (SELECT count(*) FROM changes) FROM head`, nil, &head, &changes)
	return head, changes
}

// TestIPRestrictionReachesEveryReplica: an IP restriction PUT on replica A
// is enforced on B within a second (a listed address allowed, another
// rejected with 400 ip_address_rejected); refused PUTs leave no change row;
// clearing it on B lifts it on A.
func TestIPRestrictionReachesEveryReplica(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 2)
	a, b := rs[0], rs[1]
	k := a.createKey(t, "business-demo")
	const listed, other = "203.0.113.9", "192.0.2.1"
	// Warm B's decision cache with an allow from the address about to be
	// refused.
	b.waitIP(t, "business-demo", k.Secret, other, true, 5*time.Second)

	if rep := a.putIP(t, "business-demo", map[string]any{"default": []string{"203.0.113.0/24"}, "apis": map[string]any{}}); rep.status != http.StatusOK {
		t.Fatalf("PUT on A: %s", rep)
	}
	took := b.waitIP(t, "business-demo", k.Secret, other, false, time.Second)
	t.Logf("B rejects %s %s after A's PUT answered", other, took)
	b.waitIP(t, "business-demo", k.Secret, listed, true, time.Second)
	a.waitIP(t, "business-demo", k.Secret, other, false, 0)

	head, changes := c.changeCounts(t)
	for _, tc := range []struct {
		name, service string
		body          any
		status        int
		code          string
	}{
		{"plan without the feature", "team-demo", map[string]any{"default": []string{"203.0.113.7"}, "apis": map[string]any{}}, http.StatusForbidden, "plan_feature_unavailable"},
		{"too many entries", "business-demo", map[string]any{"default": addresses(31), "apis": map[string]any{}}, http.StatusUnprocessableEntity, "ip_entry_limit_exceeded"},
		{"bad entry", "business-demo", map[string]any{"default": []string{"203.0.113.0/33"}, "apis": map[string]any{}}, http.StatusUnprocessableEntity, "invalid_ip_entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := a.putIP(t, tc.service, tc.body)
			var p struct {
				Code string `json:"code"`
			}
			_ = json.Unmarshal(rep.body, &p)
			if rep.status != tc.status || p.Code != tc.code {
				t.Fatalf("PUT: %s, want %d %s", rep, tc.status, tc.code)
			}
			if h, ch := c.changeCounts(t); h != head || ch != changes {
				t.Fatalf("head %d with %d change rows after a refused PUT, want %d and %d", h, ch, head, changes)
			}
		})
	}
	b.waitIP(t, "business-demo", k.Secret, other, false, 0)

	if rep := b.putIP(t, "business-demo", map[string]any{"default": []string{}, "apis": map[string]any{}}); rep.status != http.StatusOK {
		t.Fatalf("clear on B: %s", rep)
	}
	a.waitIP(t, "business-demo", k.Secret, other, true, time.Second)
}

func addresses(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("198.51.100.%d", i+1)
	}
	return out
}

// TestIPRestrictionSurvivesPrunedResync: B is frozen while A sets an IP
// restriction and the change log is pruned (--store-retention 1s); thawed,
// B resyncs from the tables and enforces the setting, as does a fresh
// replica.
func TestIPRestrictionSurvivesPrunedResync(t *testing.T) {
	c := newCluster(t)
	a := c.start(t, 1, "--store-retention", "1s")[0]
	b := startReplica(t, "B", c.replicaConfig(t, "B"))
	k := a.createKey(t, "enterprise-demo")
	const listed, other = "2001:db8::5", "192.0.2.1"
	b.waitIP(t, "enterprise-demo", k.Secret, other, true, 5*time.Second)
	if err := syscall.Kill(b.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(b.PID(), syscall.SIGCONT)
		}
	}
	defer thaw()
	if rep := a.putIP(t, "enterprise-demo", map[string]any{"default": []string{"2001:db8::/32"}, "apis": map[string]any{}}); rep.status != http.StatusOK {
		t.Fatalf("PUT on A: %s", rep)
	}
	a.createKey(t, "enterprise-demo")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rows int
		c.query(t, `SELECT count(*) FROM changes`, nil, &rows)
		if rows == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d change rows left 10s after the writes (retention 1s)", rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
	thaw()
	b.waitIP(t, "enterprise-demo", k.Secret, other, false, 5*time.Second)
	b.waitIP(t, "enterprise-demo", k.Secret, listed, true, time.Second)
	if _, h, err := b.health(t.Context()); err != nil || h.Store.Resyncs == 0 {
		t.Fatalf("B health %+v %v: want a resync", h, err)
	}
	fresh := startReplica(t, "C", c.replicaConfig(t, "C"))
	fresh.waitIP(t, "enterprise-demo", k.Secret, other, false, 0)
	fresh.waitIP(t, "enterprise-demo", k.Secret, listed, true, 0)
}
