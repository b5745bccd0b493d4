package server_test

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/server"
)

// BenchmarkDecideShadow is content-get-list (and content-post-denied)
// from GOMAXPROCS goroutines with shadow evaluation off and on (the same
// policies as candidate, --shadow-sample 1, one shadow worker, a 4096
// queue), decision log on, decision cache off and on, in one run: what a
// shadow costs the request path. It reports decisions/s, and for shadow=on
// how many decisions the shadow evaluated and dropped (a full queue drops:
// the shadow never slows an answer, so it evaluates what one worker can).
func BenchmarkDecideShadow(b *testing.B) {
	for _, cache := range []bool{false, true} {
		for _, shadow := range []bool{false, true} {
			name := "cache=" + onOff(cache) + "/shadow=" + onOff(shadow)
			b.Run(name, func(b *testing.B) {
				h, metrics := shadowServer(b, cache, shadow)
				b.ReportAllocs()
				start := time.Now()
				benchParallel(b, h)
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
				if shadow {
					m := scrapeHandler(b, metrics)
					b.ReportMetric(m["keygate_shadow_evaluations_total"]/float64(b.N), "shadowed/op")
					b.ReportMetric(m["keygate_shadow_dropped_total"]/float64(b.N), "dropped/op")
				}
			})
		}
	}
}

func onOff(v bool) string {
	if v {
		return "on"
	}
	return "off"
}

func shadowServer(b *testing.B, cache, shadow bool) (http.Handler, http.Handler) {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	dataDir := b.TempDir()
	if err := os.CopyFS(dataDir, os.DirFS("../../data")); err != nil {
		b.Fatal(err)
	}
	eng, store := openDeps(b, "../../policies", dataDir)
	metrics := server.NewMetrics(store.KeyCounts)
	l := decision.NewDecisionLog(io.Discard, decision.DecisionLogOptions{})
	opts := server.Options{Logger: quiet, DecisionLog: l}
	if !cache {
		opts.CacheEntries = -1
	}
	if shadow {
		cand, err := engine.New(b.Context(), "../../policies", engine.Options{Timeout: time.Second, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		opts.Shadow = decision.ShadowOptions{Policy: cand, Sample: 1}
	}
	srv := server.New(eng, store, metrics, opts)
	b.Cleanup(func() { srv.Close(); l.Close() })
	return srv.Handler(), metrics.Handler()
}

// scrapeHandler sums each metric family of a /metrics answer by name.
func scrapeHandler(tb testing.TB, h http.Handler) map[string]float64 {
	tb.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(line[:i], "{")
		out[name] += v
	}
	return out
}
