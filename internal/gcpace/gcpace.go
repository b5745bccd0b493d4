// Package gcpace bounds the garbage collector's heap headroom.
//
// keygate's heap is mostly the key store, which lives as long as the
// process, while each decision leaves short-lived garbage. With a fixed
// GOGC the heap goal is live × (1 + GOGC/100): a small store gets cheap,
// rare collections, but a store of a million keys would carry hundreds of
// megabytes of headroom above itself — memory the store never uses. The
// Governor keeps GOGC at its maximum while the live heap is small and
// lowers it as the live heap grows, so that the headroom (the garbage
// allowed between two collections) stays near a fixed number of bytes.
//
// The collector then runs about once per Headroom bytes allocated, however
// large the store: the number of collections per request does not grow
// with the store, and the cost of each is its mark work, which is small
// when the store's records hold few pointers.
package gcpace

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Options configure a Governor. Zero fields take the defaults.
type Options struct {
	// Headroom is the garbage, in bytes, the heap may grow by above the
	// live heap before the next collection, once the live heap is large
	// enough for MaxPercent to exceed it. Default 192 MiB.
	Headroom uint64
	// MaxPercent is the GOGC of a small heap. Default 200.
	MaxPercent int
	// MinPercent is the lowest GOGC the Governor sets, whatever the live
	// heap: below it collections would run too often for a very large
	// heap. Default 25.
	MinPercent int
	// Interval is how often the Governor reads the collector's metrics.
	// Default 1 s.
	Interval time.Duration
	// Logger receives a debug line when GOGC changes. Nil discards.
	Logger *slog.Logger
}

// Governor sets GOGC from the live heap after each collection (Run).
type Governor struct {
	opts Options
	log  *slog.Logger
	// read returns the completed collections and the live heap after the
	// last one; set sets GOGC and returns the previous value. They are
	// the runtime's in production and fakes in tests.
	read func() (cycles, live uint64)
	set  func(percent int) int
}

// New returns a Governor of the runtime's collector.
func New(opts Options) *Governor {
	if opts.Headroom == 0 {
		opts.Headroom = 192 << 20
	}
	if opts.MaxPercent <= 0 {
		opts.MaxPercent = 200
	}
	if opts.MinPercent <= 0 || opts.MinPercent > opts.MaxPercent {
		opts.MinPercent = min(25, opts.MaxPercent)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Governor{opts: opts, log: log, read: readRuntime(), set: debug.SetGCPercent}
}

// Percent is the GOGC for a live heap of live bytes: MaxPercent while
// live × MaxPercent/100 is at most Headroom, then the percent that makes
// the headroom Headroom, never below MinPercent.
func (g *Governor) Percent(live uint64) int {
	if live == 0 {
		return g.opts.MaxPercent
	}
	p := g.opts.Headroom * 100 / live
	if p >= uint64(g.opts.MaxPercent) {
		return g.opts.MaxPercent
	}
	return max(int(p), g.opts.MinPercent)
}

// Apply sets GOGC for the live heap now and returns it.
func (g *Governor) Apply() int {
	_, live := g.read()
	p := g.Percent(live)
	g.set(p)
	return p
}

// Run sets GOGC now and again after every collection that ends (checked
// every Interval) until ctx is done. It changes GOGC only when the percent
// moves by more than a tenth, so that a live heap that breathes with the
// load does not move the goal at every cycle.
func (g *Governor) Run(ctx context.Context) {
	cur := g.Apply()
	seen, _ := g.read()
	t := time.NewTicker(g.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cycles, live := g.read()
		if cycles == seen {
			continue
		}
		seen = cycles
		p := g.Percent(live)
		if p == cur || (p > cur && p-cur <= cur/10) || (p < cur && cur-p <= cur/10) {
			continue
		}
		g.set(p)
		g.log.LogAttrs(ctx, slog.LevelDebug, "gc percent", slog.Int("gogc", p), slog.Int("previous", cur),
			slog.Uint64("live_bytes", live))
		cur = p
	}
}

// readRuntime reads the completed collections and the live heap from
// runtime/metrics (one sample slice, reused: Run calls it from one
// goroutine).
func readRuntime() func() (cycles, live uint64) {
	samples := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/live:bytes"}}
	return func() (uint64, uint64) {
		metrics.Read(samples)
		var cycles, live uint64
		if samples[0].Value.Kind() == metrics.KindUint64 {
			cycles = samples[0].Value.Uint64()
		}
		if samples[1].Value.Kind() == metrics.KindUint64 {
			live = samples[1].Value.Uint64()
		}
		return cycles, live
	}
}
