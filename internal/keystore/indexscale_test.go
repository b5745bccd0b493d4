package keystore_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
)

// scaleKeys makes n keys shaped like the bench's data: 20 per enterprise
// service, one in ten with 20 individual entries; key i has secret
// "secret-<i>" and id "key_<i>".
func scaleKeys(n int) []*keystore.Key {
	keys := make([]*keystore.Key, n)
	base := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for i := range keys {
		svc := "svc-" + strconv.Itoa(i/20)
		k := &keystore.Key{ID: fmt.Sprintf("key_%08d", i), Service: svc, Name: "key " + strconv.Itoa(i),
			CreatedBy: svc + "-admin", CreatedAt: base.Add(time.Duration(i) * time.Microsecond), Revision: 1,
			ContentAPI:    keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}},
			ManagementAPI: keystore.ManagementPerms{GetMedia: i%3 == 0}}
		k.UpdatedAt = k.CreatedAt
		if i%10 == 0 {
			k.ContentAPI.Individual = make(map[string]keystore.ContentPerms, 20)
			for e := range 20 {
				k.ContentAPI.Individual["ep-"+strconv.Itoa(e)] = keystore.ContentPerms{Get: true, Post: e%2 == 0}
			}
		}
		keystore.WithSecretHash(k, sha256.Sum256([]byte("secret-"+strconv.Itoa(i))))
		keys[i] = k
	}
	return keys
}

// scaleStore is a Store on the local driver whose index holds n keys,
// loaded straight into the index (the driver's own state holds none).
type scaleStore struct {
	s       *keystore.Store
	ix      keystore.Index
	hashes  [][32]byte      // of 1,024 keys spread over the store
	ids     []string        // of the same keys
	samples []*keystore.Key // the same keys
	heap    float64         // live heap bytes per key after the load
	// scan and objects are, per key, the scannable heap bytes and the
	// heap objects the load added: the collector's mark work.
	scan, objects float64
	loadTook      time.Duration
	// loadAllocs and loadBytes are the heap allocations Load made.
	loadAllocs, loadBytes uint64
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// gcShape returns the scannable heap bytes and the heap objects as of the
// last collection (heapNow collects).
func gcShape() (scan, objects uint64) {
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/objects:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

func newScaleStore(b *testing.B, n int) *scaleStore {
	b.Helper()
	dir := b.TempDir()
	services := max(1, (n+19)/20)
	var sb strings.Builder
	sb.WriteString("[")
	for i := range services {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"id":"svc-%d","plan":"enterprise"}`, i)
	}
	sb.WriteString("]")
	if err := os.WriteFile(filepath.Join(dir, "services.json"), []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	members := `[{"id":"svc-0-admin","service":"svc-0","role":"admin","token":"token-0"}]`
	if err := os.WriteFile(filepath.Join(dir, "members.json"), []byte(members), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := keystore.New(b.Context(), local.New(local.Options{StatePath: filepath.Join(b.TempDir(), "state.json"), CompactAfter: 1 << 30}),
		keystore.Options{DataDir: dir, Authorizer: &keystoretest.Authorizer{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	d, err := keystore.LoadDirectory(dir)
	if err != nil {
		b.Fatal(err)
	}
	f := &scaleStore{s: s, ix: keystore.IndexOf(s)}
	before := heapNow()
	scan0, obj0 := gcShape()
	keys := scaleKeys(n)
	for i := range 1024 {
		j := (i * 7919) % n
		if i < 20 && n >= 20 {
			j = i // svc-0's keys come first: the store writes go to them
		}
		k := *keys[j]
		f.samples = append(f.samples, &k)
		f.hashes = append(f.hashes, keystore.SecretHash(keys[j]))
		f.ids = append(f.ids, keys[j].ID)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	if err := f.ix.Load(d, keys, nil); err != nil {
		b.Fatal(err)
	}
	f.loadTook = time.Since(start)
	runtime.ReadMemStats(&m1)
	f.loadAllocs, f.loadBytes = m1.Mallocs-m0.Mallocs, m1.TotalAlloc-m0.TotalAlloc
	keys = nil
	f.heap = float64(heapNow()-before) / float64(n)
	scan1, obj1 := gcShape()
	f.scan = (float64(scan1) - float64(scan0)) / float64(n)
	f.objects = (float64(obj1) - float64(obj0)) / float64(n)
	return f
}

// BenchmarkIndexScale measures the key index at 10 to 1,000,000 keys:
// lookups by secret (the decision path) and by id (replay), a key write
// through an index transaction and through the Store on the local driver
// (journal and fsync included), and the live heap per key and the Load
// time (LoadAndHeap: one load per size, reported as metrics). Lookups and
// writes should cost the same at every size. Each size's index is built
// once (by Load) and shared by its sub-benchmarks.
func BenchmarkIndexScale(b *testing.B) {
	for _, n := range []int{10, 10_000, 100_000, 1_000_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) { benchmarkIndexAt(b, n) })
	}
}

func benchmarkIndexAt(b *testing.B, n int) {
	f := newScaleStore(b, n)
	b.Run("LoadAndHeap", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(f.heap, "heapB/key")
		b.ReportMetric(f.scan, "scanB/key")
		b.ReportMetric(f.objects, "objects/key")
		b.ReportMetric(float64(f.loadTook.Milliseconds()), "load-ms")
		b.ReportMetric(float64(f.loadAllocs), "load-allocs")
		b.ReportMetric(float64(f.loadBytes)/(1<<20), "load-MiB")
	})
	b.Run("KeyBySecretHash", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := f.s.KeyBySecretHash(f.hashes[i&1023]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("KeyRefBySecretHash", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if r, ok := f.s.KeyRefBySecretHash(f.hashes[i&1023]); !ok || r.Version() == 0 {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("KeyByID", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := f.s.KeyByID(f.ids[i&1023]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("IndexPut", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := *f.samples[i&1023]
			k.Revision++
			f.samples[i&1023] = &k
			txn := f.ix.Write()
			if err := txn.Put(&k); err != nil {
				b.Fatal(err)
			}
			txn.Commit()
			i++
		}
	})
	b.Run("StoreUpdate", func(b *testing.B) {
		b.ReportAllocs()
		spec := keystore.KeySpec{Name: "updated", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}
		i := 0
		for b.Loop() {
			if _, err := f.s.UpdateKey(b.Context(), "token-0", "svc-0", f.ids[i%min(n, 20)], spec); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("KeyCount", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if f.s.KeyCount("svc-0") != min(n, 20) {
				b.Fatal("count")
			}
		}
	})
	f.s.Close()
}
