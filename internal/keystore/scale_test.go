package keystore_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
)

// writeScaleData writes a data dir with nKeys keys spread over nServices
// enterprise services; key i has secret "secret-<i>".
func writeScaleData(tb testing.TB, nServices, nKeys int) string {
	tb.Helper()
	dir := tb.TempDir()
	write := func(name string, fill func(w *bufio.Writer)) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		w := bufio.NewWriter(f)
		fill(w)
		if err := w.Flush(); err != nil {
			tb.Fatal(err)
		}
		f.Close()
	}
	list := func(w *bufio.Writer, n int, item func(i int) string) {
		w.WriteString("[\n")
		for i := range n {
			if i > 0 {
				w.WriteString(",\n")
			}
			w.WriteString(item(i))
		}
		w.WriteString("\n]\n")
	}
	write("services.json", func(w *bufio.Writer) {
		list(w, nServices, func(i int) string { return fmt.Sprintf(`{"id":"svc-%d","plan":"enterprise"}`, i) })
	})
	write("members.json", func(w *bufio.Writer) {
		list(w, nServices, func(i int) string {
			return fmt.Sprintf(`{"id":"svc-%d-admin","service":"svc-%d","role":"admin","token":"token-%d"}`, i, i, i)
		})
	})
	write("keys.json", func(w *bufio.Writer) {
		list(w, nKeys, func(i int) string {
			return fmt.Sprintf(`{"id":"k-%d","service":"svc-%d","name":"key %d","secret":"secret-%d","contentApi":{"default":{"get":true},"individual":{"blogs":{"get":true,"post":true}}},"managementApi":{"getMedia":true}}`, i, i%nServices, i, i)
		})
	})
	return dir
}

func openScale(tb testing.TB, dataDir, statePath string) *keystore.Store {
	tb.Helper()
	s, err := keystore.New(tb.Context(), local.New(local.Options{StatePath: statePath}), keystore.Options{DataDir: dataDir, Authorizer: &keystoretest.Authorizer{}})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkKeyBySecret measures the decision hot path; it should stay flat
// from 10 to 100k keys (a radix tree lookup of a 32-byte hash).
func BenchmarkKeyBySecret(b *testing.B) {
	for _, n := range []int{10, 10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			dir := writeScaleData(b, max(1, n/100), n)
			s := openScale(b, dir, filepath.Join(b.TempDir(), "state.json"))
			defer s.Close()
			secrets := make([]string, 1024)
			for i := range secrets {
				secrets[i] = "secret-" + strconv.Itoa((i*7919)%n)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := s.KeyBySecret(secrets[i&1023]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
	}
}

// TestScaleLoad reports load time and heap for 100k keys across 1,000
// services, from data/keys.json (first start) and from state (restart).
// It asserts nothing about timing; run with -v to see the figures.
func TestScaleLoad(t *testing.T) {
	nServices, nKeys := 1000, 100_000
	if testing.Short() || raceEnabled {
		// The race detector multiplies time and memory; the loading code
		// is the same, so a tenth of the keys still exercises it.
		nServices, nKeys = 100, 10_000
		t.Logf("-race or -short: %d keys; run without them for the 100k figures", nKeys)
	}
	dir := writeScaleData(t, nServices, nKeys)
	state := filepath.Join(t.TempDir(), "state.json")

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for _, phase := range []string{"seed from data/keys.json", "restart from state"} {
		before := heap()
		start := time.Now()
		s := openScale(t, dir, state)
		elapsed := time.Since(start)
		after := heap()
		counts := s.KeyCounts()
		if len(counts) != nServices || counts["svc-7"] != nKeys/nServices {
			t.Fatalf("counts: %d services, svc-7 has %d", len(counts), counts["svc-7"])
		}
		last := fmt.Sprintf("secret-%d", nKeys-1)
		if k, ok := s.KeyBySecret(last); !ok || k.ID != fmt.Sprintf("k-%d", nKeys-1) {
			t.Fatalf("lookup of %s: %+v %v", last, k, ok)
		}
		if _, ok := s.KeyBySecret(fmt.Sprintf("secret-%d", nKeys)); ok {
			t.Fatal("a secret no key has was found")
		}
		fi, _ := os.Stat(state)
		t.Logf("%s: %d keys / %d services: Open %v, live heap +%.1f MiB, snapshot %.1f MiB",
			phase, nKeys, nServices, elapsed.Round(time.Millisecond), float64(after-before)/(1<<20), float64(fi.Size())/(1<<20))
		runtime.KeepAlive(s)
		s.Close()
	}
}
