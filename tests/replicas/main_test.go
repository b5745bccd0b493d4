// Package replicas tests keygate running as several replicas that share one
// key store on PostgreSQL: each test starts a throwaway PostgreSQL cluster
// (internal/pgtest) and real `keygate serve --store postgres://…` processes
// (tests/gateway/stack), and talks HTTP to them.
package replicas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/tests/gateway/stack"
)

var build stack.TestBuild

func TestMain(m *testing.M) { os.Exit(stack.MainWithKeygate(m, "replicas", &build)) }

// cluster is one PostgreSQL database and the replicas serving from it.
type cluster struct {
	pg     *pgtest.Cluster
	dbName string
	url    string
	// started counts the replicas start started.
	started int
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	pg := pgtest.Start(t)
	name, url, err := pg.NewNamedDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{pg: pg, dbName: name, url: url}
}

// replica is one `keygate serve --store` process.
type replica struct {
	*stack.Keygate
	name string
	dir  string
	cfg  stack.KeygateConfig
}

// replicaConfig is the configuration of a replica named name on c, in a
// private work dir with copies of policies/ and data/.
func (c *cluster) replicaConfig(t *testing.T, name string, extra ...string) stack.KeygateConfig {
	t.Helper()
	dir := t.TempDir()
	if err := stack.CopyDirs(build.Root, dir, "policies", "data"); err != nil {
		t.Fatal(err)
	}
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return stack.KeygateConfig{
		Binary: build.Binary, Dir: dir, Port: port,
		Policies: filepath.Join(dir, "policies"), Data: filepath.Join(dir, "data"),
		Args:         append([]string{"--store", c.url, "--decision-log", "off", "--watch=false", "--log-level", "debug"}, extra...),
		LogPath:      filepath.Join(dir, name+".log"),
		ReadyTimeout: 60 * time.Second,
	}
}

// start starts n replicas and waits until each is ready and listening
// for changes (without its LISTEN connection a replica follows by the
// heartbeat alone, which the latency tests must not measure).
func (c *cluster) start(t *testing.T, n int, extra ...string) []*replica {
	t.Helper()
	var out []*replica
	for i := range n {
		name := string(rune('A' + c.started + i))
		cfg := c.replicaConfig(t, name, extra...)
		out = append(out, startReplica(t, name, cfg))
	}
	c.started += n
	c.waitListeners(t, func(got int) bool { return got >= c.started })
	return out
}

func startReplica(t *testing.T, name string, cfg stack.KeygateConfig) *replica {
	t.Helper()
	k, err := stack.StartKeygate(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start replica %s: %v", name, err)
	}
	r := &replica{Keygate: k, name: name, dir: cfg.Dir, cfg: cfg}
	t.Cleanup(func() {
		_ = r.Stop()
		// A binary built with -race (go test -race) reports data races
		// on stderr, which is this log.
		if b, _ := os.ReadFile(cfg.LogPath); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("replica %s: data race:\n%s", name, b)
		}
		if t.Failed() {
			t.Logf("replica %s log tail:\n%s", name, logTail(cfg.LogPath, 30))
		}
	})
	return r
}

// restart starts the replica again on its configuration (same port).
func (r *replica) restart(t *testing.T) {
	t.Helper()
	k, err := stack.StartKeygate(t.Context(), r.cfg)
	if err != nil {
		t.Fatalf("restart replica %s: %v", r.name, err)
	}
	r.Keygate = k
	t.Cleanup(func() { _ = k.Stop() })
}

func logTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

type reply struct {
	status int
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// call sends a request; body is JSON-encoded when not nil.
func call(ctx context.Context, method, url, token string, body any) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: b}, err
}

func mustCall(t *testing.T, method, url, token string, body any) reply {
	t.Helper()
	r, err := call(t.Context(), method, url, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func adminToken(service string) string { return service + "-admin-token" }

var readSpec = map[string]any{"name": "web", "contentApi": map[string]any{"default": map[string]any{"get": true}}}

type created struct {
	ID     string
	Secret string
}

// createdBody is the answer to a create or a rotation.
type createdBody struct {
	Key struct {
		ID string `json:"id"`
	} `json:"key"`
	Secret string `json:"secret"`
}

func decodeCreated(t *testing.T, b []byte) created {
	t.Helper()
	var c createdBody
	if err := json.Unmarshal(b, &c); err != nil || c.Secret == "" || c.Key.ID == "" {
		t.Fatalf("create/rotate answer %s: %v", b, err)
	}
	return created{ID: c.Key.ID, Secret: c.Secret}
}

// createKey creates a read key on service through r.
func (r *replica) createKey(t *testing.T, service string) created {
	t.Helper()
	rep := mustCall(t, http.MethodPost, r.URL+"/v1/services/"+service+"/keys", adminToken(service), readSpec)
	if rep.status != http.StatusCreated {
		t.Fatalf("replica %s: create on %s: %s", r.name, service, rep)
	}
	return decodeCreated(t, rep.body)
}

func (r *replica) rotateKey(t *testing.T, service, id string) created {
	t.Helper()
	rep := mustCall(t, http.MethodPost, r.URL+"/v1/services/"+service+"/keys/"+id+"/rotate", adminToken(service), nil)
	if rep.status != http.StatusOK {
		t.Fatalf("replica %s: rotate %s: %s", r.name, id, rep)
	}
	return decodeCreated(t, rep.body)
}

func (r *replica) deleteKey(t *testing.T, service, id string) {
	t.Helper()
	rep := mustCall(t, http.MethodDelete, r.URL+"/v1/services/"+service+"/keys/"+id, adminToken(service), nil)
	if rep.status != http.StatusNoContent {
		t.Fatalf("replica %s: delete %s: %s", r.name, id, rep)
	}
}

type decision struct {
	Allow  bool   `json:"allow"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	KeyID  string `json:"keyId"`
}

// decide asks r whether secret may GET /api/v1/blogs of service.
func (r *replica) decide(ctx context.Context, service, secret string) (decision, error) {
	rep, err := call(ctx, http.MethodPost, r.URL+"/v1/decide", "", map[string]any{
		"service": service, "method": "GET", "path": "/api/v1/blogs", "apiKey": secret})
	if err != nil {
		return decision{}, err
	}
	if rep.status != http.StatusOK {
		return decision{}, fmt.Errorf("decide: %s", rep)
	}
	var d decision
	return d, json.Unmarshal(rep.body, &d)
}

func (r *replica) mustDecide(t *testing.T, service, secret string) decision {
	t.Helper()
	d, err := r.decide(t.Context(), service, secret)
	if err != nil {
		t.Fatalf("replica %s: %v", r.name, err)
	}
	return d
}

// waitDecision polls r until the decision on secret is allow (or deny, with
// allow false), and returns how long that took.
func (r *replica) waitDecision(t *testing.T, service, secret string, allow bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		d := r.mustDecide(t, service, secret)
		if d.Allow == allow {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("replica %s: decision on the secret is still allow=%v after %s (%+v)", r.name, d.Allow, within, d)
		}
		time.Sleep(time.Millisecond)
	}
}

type healthBody struct {
	Status string `json:"status"`
	Store  struct {
		Kind      string `json:"kind"`
		Ready     bool   `json:"ready"`
		Applied   uint64 `json:"appliedRevision"`
		Head      uint64 `json:"headRevision"`
		Resyncs   uint64 `json:"resyncs"`
		Staleness string `json:"staleness"`
		LastError string `json:"lastError"`
	} `json:"store"`
}

func (r *replica) health(ctx context.Context) (int, healthBody, error) {
	rep, err := call(ctx, http.MethodGet, r.URL+"/health", "", nil)
	if err != nil {
		return 0, healthBody{}, err
	}
	var h healthBody
	return rep.status, h, json.Unmarshal(rep.body, &h)
}

// keySet is a service's keys as a replica lists them: id, revision and
// update time (to the microsecond PostgreSQL keeps), sorted; replicas with
// the same index answer the same.
func (r *replica) keySet(t *testing.T, service string) []string {
	t.Helper()
	rep := mustCall(t, http.MethodGet, r.URL+"/v1/services/"+service+"/keys", adminToken(service), nil)
	if rep.status != http.StatusOK {
		t.Fatalf("replica %s: list %s: %s", r.name, service, rep)
	}
	var body struct {
		Keys []struct {
			ID        string    `json:"id"`
			Revision  uint64    `json:"revision"`
			UpdatedAt time.Time `json:"updatedAt"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(rep.body, &body); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range body.Keys {
		out = append(out, fmt.Sprintf("%s@%d@%s", k.ID, k.Revision, k.UpdatedAt.Truncate(time.Microsecond).Format(time.RFC3339Nano)))
	}
	sort.Strings(out)
	return out
}

// converge waits until every replica lists the same keys for each service.
func converge(t *testing.T, within time.Duration, replicas []*replica, services ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		same := true
		var diff string
		for _, svc := range services {
			want := replicas[0].keySet(t, svc)
			for _, r := range replicas[1:] {
				if got := r.keySet(t, svc); !slices.Equal(got, want) {
					same, diff = false, fmt.Sprintf("%s: replica %s %v, replica %s %v", svc, r.name, got, replicas[0].name, want)
				}
			}
		}
		if same {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("replicas differ after %s: %s", within, diff)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// query runs one query on the cluster's database.
func (c *cluster) query(t *testing.T, sql string, args []any, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(t.Context(), sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// waitListeners waits up to 5 seconds until the number of LISTEN
// connections to the cluster's database satisfies ok.
func (c *cluster) waitListeners(t *testing.T, ok func(n int) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var listening int
		c.query(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'`, nil, &listening)
		if ok(listening) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d LISTEN connections after 5s", listening)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if err := c.pg.Exec(t.Context(), c.dbName, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// percentile of sorted durations.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// parallel runs fn for each replica at once and waits.
func parallel(rs []*replica, fn func(r *replica)) {
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { fn(r) })
	}
	wg.Wait()
}
