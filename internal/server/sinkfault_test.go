package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/server"
)

// stuckSink is a decision-log sink or a scrape's connection that stopped
// reading: Write blocks until released.
type stuckSink struct {
	release chan struct{}
	once    *sync.Once
	header  http.Header
	entered chan struct{}
}

func newStuckSink() *stuckSink {
	return &stuckSink{release: make(chan struct{}), once: &sync.Once{}, header: http.Header{}, entered: make(chan struct{}, 100)}
}

// another is one more sink (a writer of its own: one per request) released
// with s.
func (s *stuckSink) another() *stuckSink {
	c := *s
	c.header = http.Header{}
	return &c
}

func (s *stuckSink) Write(p []byte) (int, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return len(p), nil
}
func (s *stuckSink) Header() http.Header { return s.header }
func (s *stuckSink) WriteHeader(int)     {}
func (s *stuckSink) unblock()            { s.once.Do(func() { close(s.release) }) }

// fullDisk refuses every write, as a file log on a full disk does.
type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// TestDecisionsIgnoreSinkFaults: decisions are answered, fast, while the
// decision log's sink is blocked or failing and while /metrics scrapes
// hang on clients that never read; the losses show in the metrics.
func TestDecisionsIgnoreSinkFaults(t *testing.T) {
	data := copyTree(t, "../../data")
	for _, tc := range []struct {
		note    string
		sink    io.Writer // the decision log's; nil: io.Discard
		scrapes int       // /metrics requests left hanging
		dropped string    // the drop reason that must be counted
	}{
		{note: "decision log blocked", sink: newStuckSink(), dropped: decision.DropQueueFull},
		{note: "decision log failing", sink: fullDisk{}, dropped: decision.DropWriteError},
		{note: "metrics scrapes hang", scrapes: 6},
	} {
		t.Run(tc.note, func(t *testing.T) {
			sink := tc.sink
			if sink == nil {
				sink = io.Discard
			}
			if s, ok := sink.(*stuckSink); ok {
				defer s.unblock()
			}
			eng, store := openDeps(t, "../../policies", data)
			metrics := server.NewMetrics(store.KeyCounts)
			l := decision.NewDecisionLog(sink, decision.DecisionLogOptions{Entries: 512, CloseWait: 100 * time.Millisecond,
				Dropped: metrics.DecisionLogDropped, Truncated: metrics.DecisionLogTruncated})
			defer l.Close()
			h := server.New(eng, store, metrics, server.Options{DecisionLog: l, Logger: slog.New(slog.DiscardHandler)}).Handler()

			// Hanging scrapes: each holds its handler in Write.
			hung := newStuckSink()
			defer hung.unblock()
			for range tc.scrapes {
				go h.ServeHTTP(hung.another(), httptest.NewRequest(http.MethodGet, "/metrics", nil))
			}
			for range min(tc.scrapes, 4) {
				select {
				case <-hung.entered:
				case <-time.After(5 * time.Second):
					t.Fatal("scrape did not reach its write")
				}
			}
			if tc.scrapes > 0 {
				// Beyond the in-flight bound a scrape is refused at once
				// instead of piling up behind the hung ones.
				start := time.Now()
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				if rec.Code != http.StatusServiceUnavailable || time.Since(start) > time.Second {
					t.Errorf("scrape beyond the bound: %d after %s, want 503 at once", rec.Code, time.Since(start))
				}
			}

			lat := make([]time.Duration, 0, 3000)
			for i := range 3000 {
				// Distinct paths: every decision is evaluated and logged.
				body := `{"service":"team-demo","method":"GET","path":"/api/v1/blogs/a` + strconv.Itoa(i) + `","apiKey":"team-demo-read-key"}`
				start := time.Now()
				rec := postDecide(t, h, body)
				lat = append(lat, time.Since(start))
				if rec.Code != http.StatusOK {
					t.Fatalf("decision %d: %d %s", i, rec.Code, rec.Body)
				}
			}
			slices.Sort(lat)
			p99, worst := lat[len(lat)*99/100], lat[len(lat)-1]
			t.Logf("3000 decisions: p50 %s, p99 %s, max %s", lat[len(lat)/2], p99, worst)
			// Generous bounds for a loaded CI machine; a decision that
			// waited for a stuck sink would not return at all.
			if p99 > 100*time.Millisecond || worst > 2*time.Second {
				t.Errorf("decision latency p99 %s, max %s with the fault", p99, worst)
			}

			hung.unblock()
			if tc.dropped != "" {
				time.Sleep(300 * time.Millisecond) // the failing sink's interval flushes
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				m := regexp.MustCompile(`keygate_decision_log_dropped_total\{reason="` + tc.dropped + `"\} (\d+)`).FindStringSubmatch(rec.Body.String())
				if m == nil || m[1] == "0" {
					t.Errorf("no %s drops counted:\n%s", tc.dropped, grepLines(rec.Body.String(), "decision_log"))
				}
			}
		})
	}
}
