//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDecisionLogStdoutFaults runs keygate with the decision log on stdout
// (the default) and stdout a pipe that nobody drains, or whose reader has
// gone: decisions keep being answered, fast; the process keeps running (a
// closed stdout is no SIGPIPE death); its memory stays bounded although
// every entry carries an 8 KB path (fields are cut to 1 KiB and the queue
// is bounded in bytes); the
// losses are counted by reason and warned about once per interval; and
// SIGTERM still ends it with status 0.
func TestDecisionLogStdoutFaults(t *testing.T) {
	// Decisions with distinct 8,000-byte paths (the longest a request may
	// carry). Each logged path is cut to 1 KiB, and the queue's 8 MiB byte
	// bound is reached at about 6,000 entries, far below its entry bound
	// (16,384): 12,000 decisions queue 96 MB of paths behind the stuck
	// pipe (8,000 under -race, where each costs ten times as much).
	// keygate built with -race holds shadow memory besides its heap.
	stuck, rssBound := 12000, int64(120<<20)
	if raceBuild {
		stuck, rssBound = 8000, 320<<20
	}
	for _, tc := range []struct {
		note        string
		closeReader bool
		reason      string
		n           int
	}{
		{"stdout never read", false, "queue_full", stuck},
		{"stdout closed", true, "write_error", 3000},
	} {
		t.Run(tc.note, func(t *testing.T) {
			w := newWorkDir(t)
			fifo := filepath.Join(w.dir, "stdout.fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			// The reader end first, so that keygate's stdout opens at
			// once; close-on-exec, or keygate would hold a reader itself.
			fd, err := syscall.Open(fifo, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			reader := os.NewFile(uintptr(fd), fifo)
			defer reader.Close()
			cfg := w.serveConfig("--decision-log", "-") // the last flag wins
			cfg.StdoutPath = fifo
			k := startConfig(t, cfg)
			started := time.Now()
			if tc.closeReader {
				_ = reader.Close()
			}

			n, workers := tc.n, 4
			lat := make([]time.Duration, n)
			var wg sync.WaitGroup
			var failed sync.Once
			client := &http.Client{Timeout: 10 * time.Second}
			for g := range workers {
				wg.Go(func() {
					for i := g; i < n; i += workers {
						body := fmt.Sprintf(`{"service":"team-demo","method":"GET","path":"/api/v1/blogs/%s%d","apiKey":%q}`,
							strings.Repeat("x", 7980), i, demoReadKey)
						start := time.Now()
						resp, err := client.Post(k.URL+"/v1/decide", "application/json", strings.NewReader(body))
						lat[i] = time.Since(start)
						if err == nil {
							_, _ = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
						if err != nil || resp.StatusCode != http.StatusOK {
							failed.Do(func() { t.Errorf("decision %d: %v %v\n%s", i, err, resp, readFile(t, w.stderr)) })
							return
						}
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			slices.Sort(lat)
			p99, worst := lat[n*99/100], lat[n-1]
			rss := vmRSS(t, k.PID())
			t.Logf("%d decisions: p50 %s, p99 %s, max %s; RSS %d MiB", n, lat[n/2], p99, worst, rss>>20)
			if p99 > 100*time.Millisecond || worst > 2*time.Second {
				t.Errorf("decision latency p99 %s, max %s with stdout stuck", p99, worst)
			}
			if rss > rssBound {
				t.Errorf("RSS %d MiB after %d logged decisions behind a stuck stdout, want at most %d", rss>>20, n, rssBound>>20)
			}

			resp, err := client.Get(k.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /metrics: %d %.300s", resp.StatusCode, b)
			}
			m := parseMetrics(t, b)
			if got := m.value(`keygate_decision_log_dropped_total{reason="` + tc.reason + `"}`); got == 0 {
				t.Errorf("no %s drops counted:\n%s", tc.reason, grepMetric(b, "keygate_decision_log"))
			}
			if got := m.value("keygate_decision_log_truncated_total"); got != float64(n) {
				t.Errorf("%v entries counted as truncated, want %d", got, n)
			}

			if err := k.Stop(); err != nil {
				t.Fatal(err)
			}
			if code := k.ExitCode(); code != 0 {
				t.Fatalf("exit %d on SIGTERM, want 0:\n%s", code, readFile(t, w.stderr))
			}
			// One warning per 10 s interval with losses, plus one at exit.
			intervals := int(time.Since(started)/(10*time.Second)) + 2
			warnings := strings.Count(readFile(t, w.stderr), `"msg":"decision log entries dropped"`)
			if warnings == 0 || warnings > intervals {
				t.Errorf("%d drop warnings in %d intervals, want 1..%d (one per interval, not one per drop)", warnings, intervals, intervals)
			}
		})
	}
}

// vmRSS is a process's resident set size.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func grepMetric(b []byte, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
