package gcpace

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	g := New(Options{Headroom: 256 * mib, MaxPercent: 200, MinPercent: 25})
	tests := []struct {
		name string
		live uint64
		want int
	}{
		{"no live heap yet", 0, 200},
		{"small store keeps the maximum", 8 * mib, 200},
		{"the maximum's headroom is exactly the bound", 128 * mib, 200},
		{"just above it the percent falls", 130 * mib, 196},
		{"a large store gets the bounded headroom", 512 * mib, 50},
		{"1 GiB", 1024 * mib, 25},
		{"very large stores stop at the minimum", 4096 * mib, 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := g.Percent(tt.live)
			if got != tt.want {
				t.Fatalf("Percent(%d MiB) = %d, want %d", tt.live/mib, got, tt.want)
			}
			if tt.live > 0 && got > 25 && got < 200 {
				if headroom := tt.live * uint64(got) / 100; headroom > 256*mib {
					t.Fatalf("headroom %d MiB above the bound", headroom/mib)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	g := New(Options{})
	if g.opts.Headroom != 192<<20 || g.opts.MaxPercent != 200 || g.opts.MinPercent != 25 || g.opts.Interval != time.Second {
		t.Fatalf("defaults: %+v", g.opts)
	}
	if g := New(Options{MaxPercent: 10}); g.opts.MinPercent != 10 {
		t.Fatalf("a minimum above the maximum must fall to it, got %d", g.opts.MinPercent)
	}
}

// fakeRuntime is a collector whose cycles and live heap the test moves.
type fakeRuntime struct {
	mu     sync.Mutex
	cycles uint64
	live   uint64
	sets   []int
}

func (f *fakeRuntime) read() (uint64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cycles, f.live
}

func (f *fakeRuntime) set(p int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, p)
	return 0
}

func (f *fakeRuntime) collect(live uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cycles++
	f.live = live
}

func (f *fakeRuntime) last() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sets) == 0 {
		return 0, 0
	}
	return f.sets[len(f.sets)-1], len(f.sets)
}

func TestRunFollowsTheLiveHeapAfterEachCollection(t *testing.T) {
	const mib = 1 << 20
	f := &fakeRuntime{live: 8 * mib}
	g := New(Options{Interval: time.Millisecond, Headroom: 256 << 20})
	g.read, g.set = f.read, f.set
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx) }()

	waitFor := func(want, wantSets int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if p, n := f.last(); p == want && n == wantSets {
				return
			}
			time.Sleep(time.Millisecond)
		}
		p, n := f.last()
		t.Fatalf("GOGC %d after %d sets, want %d after %d", p, n, want, wantSets)
	}
	waitFor(200, 1) // set once at start

	f.collect(512 * mib) // the store loaded
	waitFor(50, 2)

	f.collect(530 * mib) // 48: within a tenth of 50, left as it is
	time.Sleep(20 * time.Millisecond)
	if p, n := f.last(); p != 50 || n != 2 {
		t.Fatalf("a small move changed GOGC to %d (%d sets)", p, n)
	}

	f.mu.Lock()
	f.live = 64 * mib // read without a new cycle: ignored
	f.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	if _, n := f.last(); n != 2 {
		t.Fatal("GOGC changed without a collection")
	}

	f.collect(64 * mib) // keys deleted: back to the maximum
	waitFor(200, 3)

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestApplySetsTheRuntimesPercent(t *testing.T) {
	g := New(Options{Headroom: 1}) // any live heap is above it
	prev := g.set(100)
	defer g.set(prev)
	runtime.GC()
	if p := g.Apply(); p != 25 {
		t.Fatalf("Apply = %d, want the minimum 25", p)
	}
	if p := g.set(100); p != 25 {
		t.Fatalf("the runtime's GOGC is %d after Apply, want 25", p)
	}
}
