package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReplay replays a synthetic log of content decisions (the demo
// read key; GET, DELETE and POST on items, with a query) against
// policies/ in one goroutine: b.N decisions, reported as decisions/s. In
// "distinct-content-ids" every line names a new content id, which the
// policy does not read, so replay's projection-keyed memo answers all but
// the first of each (key, method, endpoint) — a production log's shape; in
// "repeated" the log asks 5,000 questions over and over; in
// "distinct-endpoints" every line names a new endpoint, which the policy
// reads, so every decision is evaluated (the engine's rate per core).
func BenchmarkReplay(b *testing.B) {
	for _, c := range []struct {
		name  string
		items int
		// endpoints: each question names another endpoint (which the
		// policy reads), so every decision is evaluated: the engine's rate.
		endpoints bool
	}{{"distinct-content-ids", 1 << 30, false}, {"repeated", 5000, false}, {"distinct-endpoints", 1 << 30, true}} {
		b.Run(c.name, func(b *testing.B) { benchReplay(b, c.items, c.endpoints) })
	}
}

func benchReplay(b *testing.B, items int, endpoints bool) {
	dir := b.TempDir()
	logPath := filepath.Join(dir, "decisions.jsonl")
	f, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range b.N {
		path := fmt.Sprintf("/api/v1/blogs/id%d", i%items)
		if endpoints {
			path = fmt.Sprintf("/api/v1/ep%d/id", i%items)
		}
		method := []string{"GET", "DELETE", "POST", "GET"}[i%4]
		fmt.Fprintf(w, `{"time":"2026-12-01T10:32:56.389056806Z","decisionId":"b-%d","service":"team-demo","keyId":"team-demo-read","api":"content","method":%q,"path":%q,"allow":%t,"status":%d,"code":%q,"policyRevision":"dfd32aa254716308","latencyMicros":482.945,"endpoint":"blogs","permission":"get","keyRevision":1,"query":{"draftKey":"[redacted]","limit":"3"}}`+"\n",
			i, method, path, method == "GET", map[bool]int{true: 200, false: 400}[method == "GET"], map[bool]string{true: "allowed", false: "method_forbidden"}[method == "GET"])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	root := filepath.Join("..", "..")
	b.ResetTimer()
	rep, err := runReplay(b.Context(), logPath, filepath.Join(root, "policies"), keySource{state: filepath.Join(dir, "none.json"), data: filepath.Join(root, "data")}, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if rep.Decisions != b.N {
		b.Fatalf("%d decisions replayed, want %d", rep.Decisions, b.N)
	}
	b.ReportMetric(float64(b.N)/rep.took.Seconds(), "decisions/s")
}
