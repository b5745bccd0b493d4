package decision

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/text"
)

// losses counts what a DecisionLog reports through its options.
type losses struct {
	mu        sync.Mutex
	dropped   map[string]int
	truncated atomic.Int64
	logs      syncBuffer
}

func newLosses() *losses { return &losses{dropped: map[string]int{}} }

func (c *losses) options(o DecisionLogOptions) DecisionLogOptions {
	o.Dropped = func(reason string, n int) {
		c.mu.Lock()
		c.dropped[reason] += n
		c.mu.Unlock()
	}
	o.Truncated = func() { c.truncated.Add(1) }
	o.Logger = slog.New(slog.NewJSONHandler(&c.logs, nil))
	return o
}

func (c *losses) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped[reason]
}

// warnings is the number of "entries dropped" warnings logged.
func (c *losses) warnings() int {
	return strings.Count(c.logs.String(), `"msg":"decision log entries dropped"`)
}

// stuckWriter never returns from Write until released: a sink that stopped
// reading (a pipe nobody drains, a hung NFS mount).
type stuckWriter struct {
	release chan struct{}
	once    sync.Once
}

func newStuckWriter() *stuckWriter { return &stuckWriter{release: make(chan struct{})} }

func (w *stuckWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }
func (w *stuckWriter) unblock()                    { w.once.Do(func() { close(w.release) }) }

// failingWriter fails its first n writes with err, then writes to out.
type failingWriter struct {
	err   error
	fails atomic.Int64
	out   syncBuffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fails.Add(-1) >= 0 {
		return 0, w.err
	}
	return w.out.Write(p)
}

// logMany logs n entries and returns the longest a single Log call took;
// it fails the test if the n calls have not returned within 5 s (a Log
// that waits for the sink).
func logMany(t *testing.T, l *DecisionLog, n int, e DecisionEntry) time.Duration {
	t.Helper()
	done := make(chan time.Duration, 1)
	go func() {
		var worst time.Duration
		for range n {
			start := time.Now()
			l.Log(e)
			worst = max(worst, time.Since(start))
		}
		done <- worst
	}()
	select {
	case worst := <-done:
		return worst
	case <-time.After(5 * time.Second):
		t.Fatalf("%d Log calls still running after 5 s: Log waits for the sink", n)
		return 0
	}
}

// maxLogCall bounds one Log call in these tests: generous, for a loaded
// machine; a Log that waits for the sink takes forever instead.
const maxLogCall = 500 * time.Millisecond

// TestDecisionLogBlockedSink: a sink that never returns costs decisions
// nothing: Log stays fast, what does not fit is dropped and counted, the
// loss is reported once per interval (not once per entry), and Close gives
// up after CloseWait instead of hanging shutdown.
func TestDecisionLogBlockedSink(t *testing.T) {
	w := newStuckWriter()
	defer w.unblock()
	c := newLosses()
	l := NewDecisionLog(w, c.options(DecisionLogOptions{Entries: 1000, ReportEvery: 100 * time.Millisecond, CloseWait: 200 * time.Millisecond}))
	start := time.Now()
	const n = 20000
	worst := logMany(t, l, n, DecisionEntry{DecisionID: "d", Service: "team-demo", Path: "/api/v1/blogs"})
	time.Sleep(350 * time.Millisecond) // three report intervals
	if worst > maxLogCall {
		t.Errorf("a Log call took %s with the sink blocked", worst)
	}
	// At most the queue and the writer's batch are held; the rest is lost.
	if got := c.get(DropQueueFull); got < n-1000-batchBytes/100 || got > n {
		t.Errorf("%d entries dropped as queue_full, want about %d", got, n-1000)
	}
	intervals := int(time.Since(start)/(100*time.Millisecond)) + 1
	if got := c.warnings(); got == 0 || got > intervals {
		t.Errorf("%d warnings in %d intervals, want 1..%d (one per interval, not per drop):\n%s", got, intervals, intervals, c.logs.String())
	}
	closed := time.Now()
	l.Close()
	if took := time.Since(closed); took > 2*time.Second {
		t.Errorf("Close took %s with the sink blocked, want about CloseWait", took)
	}
}

// TestDecisionLogFailingSink: a sink that refuses writes (a closed pipe,
// a full disk, an I/O error) loses the entries of the refused batch,
// counted as write_error and reported once per interval; logging resumes
// when the sink does (no sticky error as with a bufio.Writer).
func TestDecisionLogFailingSink(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close() // nobody reads: writes fail with EPIPE
	defer pw.Close()
	for _, tc := range []struct {
		note string
		w    io.Writer // a *failingWriter recovers after its failures
	}{
		{note: "closed pipe", w: pw},
		{note: "disk full", w: &failingWriter{err: syscall.ENOSPC}},
		{note: "I/O error", w: &failingWriter{err: syscall.EIO}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			fw, _ := tc.w.(*failingWriter)
			if fw != nil {
				fw.fails.Store(2)
			}
			c := newLosses()
			l := NewDecisionLog(tc.w, c.options(DecisionLogOptions{ReportEvery: 100 * time.Millisecond}))
			start := time.Now()
			// Four rounds, each flushed by the interval: a recovering
			// sink fails the first two batches.
			var worst time.Duration
			for round := range 4 {
				worst = max(worst, logMany(t, l, 500, DecisionEntry{DecisionID: "r" + string(rune('0'+round)), Service: "team-demo", Path: "/api/v1/blogs"}))
				time.Sleep(2 * flushEvery)
			}
			l.Close()
			if worst > maxLogCall {
				t.Errorf("a Log call took %s with a failing sink", worst)
			}
			lost := c.get(DropWriteError)
			if c.get(DropQueueFull) != 0 {
				t.Errorf("%d queue_full drops; the sink failed fast", c.get(DropQueueFull))
			}
			if fw == nil {
				if lost != 2000 {
					t.Errorf("%d entries lost to write errors, want all 2000", lost)
				}
			} else {
				written := strings.Count(fw.out.String(), "\n")
				if lost == 0 || written == 0 || lost+written != 2000 {
					t.Errorf("lost %d + written %d, want some of each summing to 2000 (logging resumes)", lost, written)
				}
			}
			intervals := int(time.Since(start)/(100*time.Millisecond)) + 1
			if got := c.warnings(); got == 0 || got > intervals {
				t.Errorf("%d warnings in %d intervals, want 1..%d:\n%s", got, intervals, intervals, c.logs.String())
			}
			if !strings.Contains(c.logs.String(), `"error":"`) {
				t.Errorf("the warning does not name the sink's error:\n%s", c.logs.String())
			}
		})
	}
}

// TestDecisionLogBoundedInBytes: the queue is bounded in bytes as well as
// entries. Entries with 1 MB fields, queued behind a
// stalled sink, are cut to 1 KiB per field and counted, and do not pin the
// requests' memory; entries of legal size stop being queued at the byte
// bound long before the entry bound.
func TestDecisionLogBoundedInBytes(t *testing.T) {
	t.Run("1 MB fields", func(t *testing.T) {
		w := newStuckWriter()
		defer w.unblock()
		c := newLosses()
		l := NewDecisionLog(w, c.options(DecisionLogOptions{CloseWait: 100 * time.Millisecond}))
		defer l.Close()
		before := heapInUse()
		const n = 300
		for i := range n {
			// A fresh string per entry, as each request body decodes to.
			big := strings.Repeat(string(rune('a'+i%26)), 1<<20)
			l.Log(DecisionEntry{DecisionID: "d", Service: big, Path: "/" + big})
		}
		grown := heapInUse() - before
		if c.truncated.Load() != n {
			t.Errorf("%d entries counted as truncated, want %d", c.truncated.Load(), n)
		}
		// 300 entries of 2 KiB each are 600 KiB; 300 MB were logged.
		if grown > 16<<20 {
			t.Errorf("heap grew by %d MiB for %d entries queued behind a stalled sink", grown>>20, n)
		}
	})
	t.Run("byte bound before entry bound", func(t *testing.T) {
		w := newStuckWriter()
		defer w.unblock()
		c := newLosses()
		const maxBytes = 1 << 20
		l := NewDecisionLog(w, c.options(DecisionLogOptions{Entries: 16384, Bytes: maxBytes, CloseWait: 100 * time.Millisecond}))
		defer l.Close()
		path := "/" + strings.Repeat("p", maxLogField-1)
		logMany(t, l, 5000, DecisionEntry{DecisionID: "d", Service: "team-demo", Path: path})
		if q := l.queued.Load(); q > maxBytes {
			t.Errorf("%d bytes queued, bound %d", q, maxBytes)
		}
		// 1 MiB holds about 800 entries of 1.3 KiB; the other 4,200 are
		// dropped although the queue has room for 16,384 entries.
		if got := c.get(DropQueueFull); got < 4000 {
			t.Errorf("%d dropped as queue_full, want the byte bound to drop over 4000", got)
		}
		if c.truncated.Load() != 0 {
			t.Errorf("%d entries truncated; a 1 KiB path is within bounds", c.truncated.Load())
		}
	})
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func TestBoundedFieldKeepsRunes(t *testing.T) {
	s := strings.Repeat("é", maxLogField)
	got := text.Bounded(s, maxLogField)
	if len(got) > maxLogField || !strings.HasSuffix(got, "…") || strings.ContainsRune(got, '\uFFFD') {
		t.Fatalf("truncated to %d bytes, suffix %q", len(got), got[len(got)-6:])
	}
}
