package local

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// benchKeys are n keys shaped like the -scale bench's (tests/bench): 20 keys
// per service, every tenth key with 20 individual entries, in random id order.
func benchKeys(n int) []*keystore.Key {
	at := time.Date(2026, 12, 6, 10, 0, 0, 123456000, time.UTC)
	keys := make([]*keystore.Key, n)
	for i := range keys {
		var seed [8]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		h := sha256.Sum256(seed[:])
		k := &keystore.Key{
			ID: fmt.Sprintf("key_%x", h[:10]), Service: fmt.Sprintf("svc-%06d", i/20), Name: fmt.Sprintf("bench key %d", i),
			CreatedBy: "seed", CreatedAt: at, UpdatedAt: at, Revision: 1,
			ContentAPI:    keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, GetAllDrafts: i%3 == 0}},
			ManagementAPI: keystore.ManagementPerms{GetContents: i%5 == 0},
		}
		if i%10 == 0 {
			k.ContentAPI.Individual = make(map[string]keystore.ContentPerms, 20)
			for e := range 20 {
				k.ContentAPI.Individual[fmt.Sprintf("endpoint-%02d", e)] = keystore.ContentPerms{Get: true, Post: e%2 == 0}
			}
		}
		keystore.WithSecretHash(k, sha256.Sum256(h[:]))
		keys[i] = k
	}
	return keys
}

var benchKeySets sync.Map // n → []*keystore.Key

func benchKeySet(n int) []*keystore.Key {
	if v, ok := benchKeySets.Load(n); ok {
		return v.([]*keystore.Key)
	}
	keys := benchKeys(n)
	benchKeySets.Store(n, keys)
	return keys
}

// peakHeap samples the heap's live objects every millisecond until stop is
// called, which returns the highest sample.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var benchSizes = []int{100_000, 1_000_000}

// BenchmarkSnapshotEncode writes the snapshot of n keys to a file and
// fsyncs it, as a compaction does: format 3 (json.Marshal of everything
// into one buffer, then one write) against format 4 (streamed). Reports
// bytes on disk per key and the peak heap above the keys themselves.
//
//	go test -run '^$' -bench 'BenchmarkSnapshot' -benchtime 3x ./internal/keystore/local/
func BenchmarkSnapshotEncode(b *testing.B) {
	for _, n := range benchSizes {
		keys := benchKeySet(n)
		for _, format := range []int{3, 4} {
			b.Run(fmt.Sprintf("keys=%d/format=%d", n, format), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "state.json")
				base := heapNow()
				var peak uint64
				var cpu time.Duration
				for b.Loop() {
					cpu0 := cpuTime()
					f, err := os.Create(path)
					if err != nil {
						b.Fatal(err)
					}
					stop := peakHeap()
					if format == 3 {
						data, err := encodeSnapshotV3(7, slices.Clone(keys))
						if err == nil {
							_, err = f.Write(data)
						}
						if err != nil {
							b.Fatal(err)
						}
					} else if err := writeSnapshot(f, 7, slices.Clone(keys)); err != nil {
						b.Fatal(err)
					}
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
					peak = max(peak, stop())
					cpu += cpuTime() - cpu0
					f.Close()
				}
				fi, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(fi.Size())/float64(n), "disk-B/key")
				b.ReportMetric(float64(fi.Size())/1e6, "disk-MB")
				b.ReportMetric(float64(peak-min(peak, base))/1e6, "peak-heap-MB")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			})
		}
	}
}

// BenchmarkSnapshotDecode reads the snapshot of n keys from its file as a
// start does: format 3 (ReadFile, checksum, strict JSON decode, one
// DecodeKeyRecord per key) against format 4 (streamed, strict binary
// decode). Reports the peak heap during the decode and the heap the keys
// hold after it (both above the heap before).
func BenchmarkSnapshotDecode(b *testing.B) {
	for _, n := range benchSizes {
		for _, format := range []int{3, 4} {
			b.Run(fmt.Sprintf("keys=%d/format=%d", n, format), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "state.json")
				encode := encodeSnapshot
				if format == 3 {
					encode = encodeSnapshotV3
				}
				data, err := encode(7, slices.Clone(benchKeySet(n)))
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					b.Fatal(err)
				}
				data = nil
				j := newJournal(nil, path, 10, slog.New(slog.DiscardHandler))
				base := heapNow()
				var peak, kept uint64
				var cpu time.Duration
				for b.Loop() {
					cpu0 := cpuTime()
					stop := peakHeap()
					var keys []*keystore.Key
					if format == 3 {
						data, err := os.ReadFile(path)
						if err != nil {
							b.Fatal(err)
						}
						_, keys, err = j.decodeSnapshot(data)
						if err != nil {
							b.Fatal(err)
						}
					} else {
						f, err := os.Open(path)
						if err != nil {
							b.Fatal(err)
						}
						_, keys, err = j.readSnapshot(bufio.NewReaderSize(f, snapshotIOBuffer))
						f.Close()
						if err != nil {
							b.Fatal(err)
						}
					}
					peak = max(peak, stop())
					cpu += cpuTime() - cpu0
					if len(keys) != n {
						b.Fatalf("%d keys", len(keys))
					}
					b.StopTimer()
					kept = heapNow()
					runtime.KeepAlive(keys)
					keys = nil
					b.StartTimer()
				}
				b.ReportMetric(float64(peak-min(peak, base))/1e6, "peak-heap-MB")
				b.ReportMetric(float64(kept-min(kept, base))/1e6, "keys-heap-MB")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			})
		}
	}
}

// BenchmarkLoadState is a restart's part of the local driver at n keys:
// journal.loadState on a state directory (the snapshot of n keys and an
// empty log based on it) — open, decode, validate, replay — for a format-3
// and a format-4 snapshot; what Open does after it is Index.Load (not
// measured here) and, for format 3, the rewrite in format 4. It also
// reports what debug.FreeOSMemory (which keygate serve calls once the store
// is open) costs right after: a forced collection and scavenge.
func BenchmarkLoadState(b *testing.B) {
	for _, n := range benchSizes {
		for _, format := range []int{3, 4} {
			b.Run(fmt.Sprintf("keys=%d/format=%d", n, format), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "state.json")
				encode := encodeSnapshot
				if format == 3 {
					encode = encodeSnapshotV3
				}
				data, err := encode(7, slices.Clone(benchKeySet(n)))
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(path+".log", encodeLogHeader(7), 0o600); err != nil {
					b.Fatal(err)
				}
				// Only the loaded keys are live, as in a keygate after its
				// start (FreeOSMemory's collection marks every live object).
				data = nil
				benchKeySets.Delete(n)
				base := heapNow()
				var peak uint64
				var free, cpu time.Duration
				for b.Loop() {
					j := newJournal(nil, path, 10, slog.New(slog.DiscardHandler))
					cpu0 := cpuTime()
					stop := peakHeap()
					keys, found, err := j.loadState()
					peak = max(peak, stop())
					cpu += cpuTime() - cpu0
					if err != nil || !found || keys.len() != n {
						b.Fatalf("%v %v", found, err)
					}
					b.StopTimer()
					start := time.Now()
					debug.FreeOSMemory()
					free += time.Since(start)
					runtime.KeepAlive(keys)
					b.StartTimer()
				}
				b.ReportMetric(float64(peak-min(peak, base))/1e6, "peak-heap-MB")
				b.ReportMetric(float64(free.Milliseconds())/float64(b.N), "FreeOSMemory-ms")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			})
		}
	}
}
