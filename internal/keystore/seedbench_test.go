package keystore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/keystore"
)

type seedLoader func(ctx context.Context, dir string, d *keystore.Directory, now time.Time, a keystore.Authorizer) ([]*keystore.Key, error)

var seedLoaders = []struct {
	name string
	load seedLoader
}{{"baseline", keystore.LoadSeedKeysBaseline}, {"streamed", keystore.LoadSeedKeys}}

// writeBenchSeed writes a data dir shaped as tests/bench's -scale writes
// it: enterprise and business services of 20 and 10 keys, every flag
// spelled out, keys in five configurations (40% GET-only, 20% preview,
// 20% public APIs plus a contact form, 10% an integration, 10% twenty
// individual entries): about 840 bytes a key.
func writeBenchSeed(tb testing.TB, n int) string {
	tb.Helper()
	dir := tb.TempDir()
	contentFlags := []string{"get", "getAllDrafts", "getAllClosed", "post", "put", "patch", "delete"}
	mgmtFlags := []string{"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia", "postMedia", "deleteMedia", "getMembers", "getApis", "getService"}
	set := func(flags []string, on ...string) map[string]bool {
		p := map[string]bool{}
		for _, f := range flags {
			p[f] = false
		}
		for _, f := range on {
			p[f] = true
		}
		return p
	}
	endpoints := []string{"blogs", "news", "categories", "authors", "pages", "products", "faq", "contact", "events", "jobs", "tags", "banners"}
	type svc struct {
		ID   string `json:"id"`
		Plan string `json:"plan"`
	}
	var svcs []svc
	f, err := os.Create(filepath.Join(dir, "keys.json"))
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("[")
	left := 0
	var cur svc
	for i := range n {
		if left == 0 {
			cur, left = svc{fmt.Sprintf("bench-%06d", len(svcs)), "enterprise"}, 20
			if len(svcs)%3 == 0 {
				cur.Plan, left = "business", 10
			}
			svcs = append(svcs, cur)
		}
		left--
		def, ind, mgmt := set(contentFlags, "get"), map[string]map[string]bool{}, set(mgmtFlags)
		switch r := (i * 7919) % 10; {
		case r < 4:
		case r < 6:
			def = set(contentFlags, "get", "getAllDrafts", "getAllClosed")
		case r < 8:
			def = set(contentFlags)
			for _, ep := range endpoints[:5] {
				ind[ep] = set(contentFlags, "get")
			}
			ind["contact"] = set(contentFlags, "post")
		case r < 9:
			ind["contact"] = set(contentFlags, "post", "put")
			mgmt = set(mgmtFlags, "getContents", "patchContentStatus", "getMedia", "postMedia")
		default:
			def = set(contentFlags)
			for j := range 20 {
				ep := fmt.Sprintf("api%02d", j)
				if j < len(endpoints) {
					ep = endpoints[j]
				}
				ind[ep] = set(contentFlags, [][]string{{"get"}, {"get", "post", "put", "patch"}, {"get", "getAllDrafts"}}[j%3]...)
			}
		}
		b, err := json.Marshal(map[string]any{"id": fmt.Sprintf("bk-%07d", i), "service": cur.ID, "name": fmt.Sprintf("bench key %d", i),
			"secret": fmt.Sprintf("bench-secret-%d", i), "contentApi": map[string]any{"default": def, "individual": ind}, "managementApi": mgmt})
		if err != nil {
			tb.Fatal(err)
		}
		if i > 0 {
			w.WriteString(",")
		}
		w.Write(b)
	}
	w.WriteString("]")
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	sb, _ := json.Marshal(svcs)
	for name, content := range map[string]string{"services.json": string(sb), "members.json": "[]"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// policyAuthorizer is the shipped keys policy, as keygate serves it.
func policyAuthorizer(tb testing.TB) authz.Policy {
	tb.Helper()
	eng, err := engine.New(context.Background(), "../../policies", engine.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return authz.New(eng)
}

// peakHeap samples the live heap every 5 ms until stop is called and
// returns the highest sample: the memory a load holds at once.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// BenchmarkSeedFile seeds keys.json shaped as the bench's (about 840
// bytes a key, five configurations) with the loader before streaming
// (baseline: the whole file read and decoded, then one keys-policy
// evaluation per key) and LoadSeedKeys (streamed), both with the shipped
// keys policy (authz=policy) and with a fake that answers at once
// (authz=fake: the loader alone). ns/key and peak-heap-MB (the most live
// heap sampled during a load) compare them; run with -benchtime=1x at
// 100k.
func BenchmarkSeedFile(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		dir := writeBenchSeed(b, n)
		d, err := keystore.LoadDirectory(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, az := range []string{"fake", "policy"} {
			for _, l := range seedLoaders {
				b.Run(fmt.Sprintf("keys=%d/authz=%s/%s", n, az, l.name), func(b *testing.B) {
					var a keystore.Authorizer = &planAuthorizer{plans: map[string]int{}}
					if az == "policy" {
						a = policyAuthorizer(b)
					}
					now := time.Now().UTC()
					runtime.GC()
					b.ReportAllocs()
					var peak uint64
					for b.Loop() {
						if az == "fake" {
							a = &planAuthorizer{plans: map[string]int{}}
						}
						stop := peakHeap()
						keys, err := l.load(context.Background(), dir, d, now, a)
						peak = max(peak, stop())
						if err != nil || len(keys) != n {
							b.Fatalf("seeded %d keys, err %v", len(keys), err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
					b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
				})
			}
		}
	}
}

// BenchmarkSeedFileByHand seeds the keys.json of KEYGATE_SEED_DIR (e.g. the
// data dir tests/bench -scale 1000000 -keep leaves) with the loader named
// by KEYGATE_SEED_LOADER (baseline or streamed) and the shipped keys
// policy, and logs the time, the peak RSS of the process and the peak live
// heap: run once per loader, each in its own process
// (-run '^$' -bench BenchmarkSeedFileByHand -benchtime 1x). A benchmark,
// not a test: it needs a generated data dir, and go test never runs it.
func BenchmarkSeedFileByHand(b *testing.B) {
	dir := os.Getenv("KEYGATE_SEED_DIR")
	if dir == "" {
		b.Skip("KEYGATE_SEED_DIR not set: it names the data dir to seed")
	}
	var load seedLoader
	for _, l := range seedLoaders {
		if l.name == os.Getenv("KEYGATE_SEED_LOADER") {
			load = l.load
		}
	}
	if load == nil {
		b.Fatal("KEYGATE_SEED_LOADER must be baseline or streamed")
	}
	d, err := keystore.LoadDirectory(dir)
	if err != nil {
		b.Fatal(err)
	}
	a := policyAuthorizer(b)
	runtime.GC()
	stop := peakHeap()
	start := time.Now()
	keys, err := load(context.Background(), dir, d, time.Now().UTC(), a)
	took := time.Since(start)
	peak := stop()
	if err != nil {
		b.Fatal(err)
	}
	status, _ := os.ReadFile("/proc/self/status")
	hwm := ""
	for line := range strings.SplitSeq(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM") {
			hwm = strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	st, _ := os.Stat(filepath.Join(dir, "keys.json"))
	b.Logf("%s: %d keys (%d MB file) in %.2f s; peak live heap %d MB; peak RSS %s; GOMAXPROCS %d",
		os.Getenv("KEYGATE_SEED_LOADER"), len(keys), st.Size()>>20, took.Seconds(), peak>>20, hwm, runtime.GOMAXPROCS(0))
	runtime.KeepAlive(keys)
}
