package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/server"
)

// benchServer is keygate's full handler on the real policies and a key store
// opened on a temporary copy of the committed data/, plus one extra seed key
// with 20 individual entries (secret "bench-individual-key", enterprise-demo).
// Key writes do not happen here, so the store's Authorizer is the fake one.
// cache=false disables the decision cache, so every request evaluates.
func benchServer(b *testing.B, declog, cache bool) http.Handler {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	dataDir := b.TempDir()
	for _, name := range []string{"services.json", "members.json", "keys.json"} {
		raw, err := os.ReadFile(filepath.Join("../../data", name))
		if err != nil {
			b.Fatal(err)
		}
		if name == "keys.json" {
			raw = withIndividualKey(b, raw)
		}
		if err := os.WriteFile(filepath.Join(dataDir, name), raw, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	eng, store := openDeps(b, "../../policies", dataDir)
	metrics := server.NewMetrics(store.KeyCounts)
	opts := server.Options{Logger: quiet}
	if !cache {
		opts.CacheEntries = -1
	}
	if declog {
		// As `keygate serve` does by default, minus the terminal: entries are
		// JSON-encoded on the log's goroutine and thrown away.
		l := decision.NewDecisionLog(io.Discard, decision.DecisionLogOptions{})
		b.Cleanup(l.Close)
		opts.DecisionLog = l
	}
	return server.New(eng, store, metrics, opts).Handler()
}

// withIndividualKey appends to a keys.json array a key whose default grants
// nothing and which has 20 individual entries (ep0 … ep19, even ones GET).
func withIndividualKey(b *testing.B, raw []byte) []byte {
	b.Helper()
	var keys []map[string]any
	if err := json.Unmarshal(raw, &keys); err != nil {
		b.Fatal(err)
	}
	individual := map[string]any{}
	for i := range 20 {
		individual[fmt.Sprintf("ep%d", i)] = map[string]bool{"get": i%2 == 0, "post": i%2 == 0}
	}
	keys = append(keys, map[string]any{
		"id": "bench-individual", "service": "enterprise-demo", "name": "20 individual entries",
		"secret":        "bench-individual-key",
		"contentApi":    map[string]any{"default": map[string]bool{}, "individual": individual},
		"managementApi": map[string]bool{"getContents": true, "patchContentStatus": true},
	})
	out, err := json.Marshal(keys)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// discardWriter is a reusable http.ResponseWriter that keeps the status and
// the body, so the loop measures the handler rather than a recorder.
type discardWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

func (w *discardWriter) WriteHeader(code int) { w.status = code }

func (w *discardWriter) reset() {
	clear(w.h)
	w.status = 0
	w.body.Reset()
}

// requestFor returns a reusable POST /v1/decide request and a function that
// rewinds its body before each use.
func requestFor(body string) (*http.Request, func()) {
	rd := strings.NewReader(body)
	req, _ := http.NewRequest(http.MethodPost, "/v1/decide", io.NopCloser(rd))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "127.0.0.1:40000"
	return req, func() { rd.Reset(body) }
}

// decideCases are the bodies of BenchmarkDecideHTTP (each 100–170 bytes, as
// a gateway would send) and the decision each must produce.
var decideCases = []struct {
	name, body string
	allow      bool
	status     int
}{
	{"content-get-list", `{"service":"team-demo","api":"content","method":"GET","path":"/api/v1/blogs?limit=10&offset=20","apiKey":"team-demo-read-key"}`, true, 200},
	{"content-get-draftkey", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs/abc123","query":{"draftKey":"dk-7f3a9c"},"apiKey":"team-demo-read-key"}`, true, 200},
	{"content-get-individual20", `{"service":"enterprise-demo","method":"GET","path":"/api/v1/ep4/abc123?fields=id,title","apiKey":"bench-individual-key"}`, true, 200},
	{"content-post-denied", `{"service":"team-demo","api":"content","method":"POST","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`, false, 400},
	{"management-patch-status", `{"service":"enterprise-demo","api":"management","method":"PATCH","path":"/api/v1/contents/blogs/abc/status","apiKey":"bench-individual-key"}`, true, 200},
	{"unknown-key", `{"service":"team-demo","api":"content","method":"GET","path":"/api/v1/blogs?limit=10","apiKey":"no-such-key-0123456789abcdef"}`, false, 401},
}

// BenchmarkDecideHTTP is the full POST /v1/decide path through Gin's
// router and keygate's middleware, in process (no socket): JSON decoding,
// validation, key lookup, input building, policy evaluation, metrics,
// decision-log hand-off and JSON encoding.
//
// Variants: cache=off evaluates every request (the cold path: what a
// never-seen question costs); cache=on repeats one body, so after the first
// iteration every request is a decision-cache hit (the hot path).
// declog=on is the production setting (`--decision-log` defaults to stdout);
// declog=off shows what the log's hand-off costs on the request goroutine
// (its encoding runs on a goroutine of its own, so on 2 cores it still
// competes for CPU, which this single-goroutine benchmark does not show).
//
// baseline-gin is a gin.New() handler that decodes the same body and
// answers a constant decision: the floor keygate is measured against.
func BenchmarkDecideHTTP(b *testing.B) {
	variants := []struct {
		name          string
		cache, declog bool
		only          map[string]bool // nil: every case
	}{
		{"cache=off/declog=on", false, true, nil},
		{"cache=off/declog=off", false, false, map[string]bool{"content-get-list": true}},
		{"cache=on/declog=on", true, true, map[string]bool{"content-get-list": true, "content-get-draftkey": true}},
	}
	for _, v := range variants {
		h := benchServer(b, v.declog, v.cache)
		for _, tc := range decideCases {
			if v.only != nil && !v.only[tc.name] {
				continue
			}
			b.Run(tc.name+"/"+v.name, func(b *testing.B) {
				req, rewind := requestFor(tc.body)
				w := &discardWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				checkDecision(b, w, tc.allow, tc.status)
				b.ReportAllocs()
				for b.Loop() {
					rewind()
					w.reset()
					h.ServeHTTP(w, req)
				}
				if w.status != http.StatusOK {
					b.Fatalf("status %d: %s", w.status, w.body.String())
				}
			})
		}
	}
	b.Run("baseline-gin", func(b *testing.B) {
		h := baselineHandler()
		req, rewind := requestFor(decideCases[0].body)
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		checkDecision(b, w, true, 200)
		b.ReportAllocs()
		for b.Loop() {
			rewind()
			w.reset()
			h.ServeHTTP(w, req)
		}
	})
}

// BenchmarkDecideHTTPParallel is content-get-list from GOMAXPROCS
// goroutines against one handler, without and with the decision cache:
// lock or cache-line contention on the request path (key-input cache,
// decision cache, metrics, decision log) shows up here as ns/op not
// halving on 2 cores.
func BenchmarkDecideHTTPParallel(b *testing.B) {
	for _, cache := range []bool{false, true} {
		b.Run("cache="+map[bool]string{false: "off", true: "on"}[cache], func(b *testing.B) {
			benchParallel(b, benchServer(b, true, cache))
		})
	}
}

func benchParallel(b *testing.B, h http.Handler) {
	body := decideCases[0].body
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, rewind := requestFor(body)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			rewind()
			w.reset()
			h.ServeHTTP(w, req)
			if w.status != http.StatusOK {
				b.Errorf("status %d", w.status)
				return
			}
		}
	})
}

func checkDecision(b *testing.B, w *discardWriter, allow bool, status int) {
	b.Helper()
	var d struct {
		Allow  bool `json:"allow"`
		Status int  `json:"status"`
	}
	if w.status != http.StatusOK {
		b.Fatalf("HTTP %d: %s", w.status, w.body.String())
	}
	if err := json.Unmarshal(w.body.Bytes(), &d); err != nil {
		b.Fatalf("decode %q: %v", w.body.String(), err)
	}
	if d.Allow != allow || d.Status != status {
		b.Fatalf("decision allow=%v status=%d, want allow=%v status=%d: %s", d.Allow, d.Status, allow, status, w.body.String())
	}
}

// baselineHandler is the floor: Gin decoding the decide body and answering
// a constant decision, nothing else (the same shape as tests/bench's
// baseline target).
func baselineHandler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	type body struct {
		Service string            `json:"service"`
		API     string            `json:"api"`
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Query   map[string]string `json:"query"`
		APIKey  *string           `json:"apiKey"`
		Headers map[string]string `json:"headers"`
	}
	answer := decision.Decision{Allow: true, Status: 200, Code: "allowed", Permission: "get", Endpoint: "blogs",
		Visibility: decision.Visibility{Published: true, FilterOn: "published"}, PolicyRevision: "constant"}
	r.POST("/v1/decide", func(c *gin.Context) {
		var in body
		if err := c.ShouldBindJSON(&in); err != nil {
			c.AbortWithStatus(http.StatusBadRequest)
			return
		}
		d := answer
		d.DecisionID = "0"
		c.JSON(http.StatusOK, &d)
	})
	return r
}

// scaleDataDir writes a data dir with nKeys keys over enterprise services
// (20 keys each, the plan limit); key i has secret "scale-secret-<i>" and
// GET-only defaults plus one individual entry.
func scaleDataDir(b *testing.B, nKeys int) string {
	b.Helper()
	dir := b.TempDir()
	var services, members, keys bytes.Buffer
	services.WriteString("[")
	members.WriteString("[")
	keys.WriteString("[")
	nServices := (nKeys + 19) / 20
	for i := range nServices {
		if i > 0 {
			services.WriteString(",")
			members.WriteString(",")
		}
		fmt.Fprintf(&services, `{"id":"svc-%d","plan":"enterprise"}`, i)
		fmt.Fprintf(&members, `{"id":"svc-%d-admin","service":"svc-%d","role":"admin","token":"svc-%d-token"}`, i, i, i)
	}
	for i := range nKeys {
		if i > 0 {
			keys.WriteString(",")
		}
		fmt.Fprintf(&keys, `{"id":"k-%d","service":"svc-%d","name":"key %d","secret":"scale-secret-%d","contentApi":{"default":{"get":true},"individual":{"contact":{"post":true}}},"managementApi":{}}`,
			i, i/20, i, i)
	}
	services.WriteString("]")
	members.WriteString("]")
	keys.WriteString("]")
	for name, buf := range map[string]*bytes.Buffer{"services.json": &services, "members.json": &members, "keys.json": &keys} {
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// BenchmarkDecideHTTPKeys is the cold path (cache off) at 100 and 100,000
// keys, each iteration presenting one of 1,024 keys spread over the store:
// the two must match within noise (a decision's cost does not grow with
// the number of keys). Because the loop runs
// in one process with the store, the garbage collector's cost of a larger
// live heap (it marks the whole key store every cycle) is in ns/op.
func BenchmarkDecideHTTPKeys(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			quiet := slog.New(slog.DiscardHandler)
			ctx := context.Background()
			eng, err := engine.New(ctx, "../../policies", engine.Options{Timeout: time.Second, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			store, err := keystore.New(ctx, local.New(local.Options{StatePath: filepath.Join(b.TempDir(), "state.json")}), keystore.Options{
				DataDir: scaleDataDir(b, n), Authorizer: &keystoretest.Authorizer{}, Logger: quiet,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			l := decision.NewDecisionLog(io.Discard, decision.DecisionLogOptions{})
			defer l.Close()
			h := server.New(eng, store, server.NewMetrics(store.KeyCounts),
				server.Options{Logger: quiet, DecisionLog: l, CacheEntries: -1}).Handler()
			type prepared struct {
				req    *http.Request
				rewind func()
			}
			reqs := make([]prepared, 1024)
			for i := range reqs {
				k := (i * 7919) % n
				body := fmt.Sprintf(`{"service":"svc-%d","method":"GET","path":"/api/v1/blogs?limit=10","apiKey":"scale-secret-%d"}`, k/20, k)
				reqs[i].req, reqs[i].rewind = requestFor(body)
			}
			w := &discardWriter{h: http.Header{}}
			for _, r := range reqs { // warm the key-input cache
				r.rewind()
				w.reset()
				h.ServeHTTP(w, r.req)
				checkDecision(b, w, true, 200)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := reqs[i&1023]
				r.rewind()
				w.reset()
				h.ServeHTTP(w, r.req)
				i++
			}
		})
	}
}
