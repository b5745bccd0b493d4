package decision

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a strings.Builder safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDecisionLogWritesEveryEntry(t *testing.T) {
	var out syncBuffer
	l := NewDecisionLog(&out, DecisionLogOptions{Entries: 1024, Dropped: func(string, int) { t.Error("an entry was dropped") }})
	for i := range 500 {
		l.Log(DecisionEntry{Time: time.Unix(int64(i), 0), DecisionID: "d" + string(rune('a'+i%26)), Service: "team-demo", Status: 200, Allow: true})
		if i%100 == 0 {
			time.Sleep(2 * flushEvery) // some entries reach the writer through the interval flush
		}
	}
	l.Close()
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	n := 0
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", n, err, sc.Text())
		}
		n++
	}
	if n != 500 {
		t.Fatalf("%d lines, want 500", n)
	}
}

// TestDecisionLogIntervalFlush: an entry reaches the writer within the flush
// interval without Close.
func TestDecisionLogIntervalFlush(t *testing.T) {
	var out syncBuffer
	l := NewDecisionLog(&out, DecisionLogOptions{Entries: 16})
	defer l.Close()
	l.Log(DecisionEntry{DecisionID: "only"})
	deadline := time.Now().Add(20 * flushEvery)
	for !strings.Contains(out.String(), `"decisionId":"only"`) {
		if time.Now().After(deadline) {
			t.Fatal("entry not flushed within 20 intervals")
		}
		time.Sleep(flushEvery / 4)
	}
}

// blockingWriter blocks until released: the decision path must not wait for it.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

var _ io.Writer = blockingWriter{}

func TestDecisionLogDropsInsteadOfBlocking(t *testing.T) {
	w := blockingWriter{release: make(chan struct{})}
	var dropped atomic.Int64
	l := NewDecisionLog(w, DecisionLogOptions{Entries: 4, Dropped: func(_ string, n int) { dropped.Add(int64(n)) }, CloseWait: time.Second})
	big := strings.Repeat("x", 70<<10) // cut to 1 KiB; the writer blocks at its first flush
	done := make(chan struct{})
	go func() {
		for range 100 {
			l.Log(DecisionEntry{Path: big})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	if dropped.Load() == 0 {
		t.Fatal("a stuck writer with a 4-entry buffer dropped nothing")
	}
	close(w.release)
	l.Close()
}

// TestDecisionLogAfterClose: a decision that finishes after shutdown closed
// the log (a request outliving the shutdown timeout) is dropped and counted,
// never a panic on the closed queue — also when it races with Close.
func TestDecisionLogAfterClose(t *testing.T) {
	var dropped atomic.Int64
	l := NewDecisionLog(io.Discard, DecisionLogOptions{Dropped: func(_ string, n int) { dropped.Add(int64(n)) }})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				l.Log(DecisionEntry{DecisionID: "d", Service: "team-demo"})
			}
		})
	}
	l.Close()
	wg.Wait()
	before := dropped.Load()
	l.Log(DecisionEntry{DecisionID: "late", Service: "team-demo"})
	if got := dropped.Load(); got != before+1 {
		t.Fatalf("an entry logged after Close: dropped %d, want %d", got, before+1)
	}
}
