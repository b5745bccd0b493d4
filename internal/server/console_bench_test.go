package server_test

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/keygate/keygate/internal/console"
	"github.com/keygate/keygate/internal/server"
)

// BenchmarkDecideConsole is content-get-list through POST /v1/decide with
// the console mounted and without it, decision cache on (the hot path,
// where a router cost would show most) and off: the console adds a route,
// nothing to the decision path, so the ratio of each pair should be 1
// within noise.
func BenchmarkDecideConsole(b *testing.B) {
	c, err := console.New()
	if err != nil {
		b.Fatal(err)
	}
	for _, cache := range []bool{true, false} {
		for _, mounted := range []bool{false, true} {
			opts := server.Options{Logger: slog.New(slog.DiscardHandler)}
			if !cache {
				opts.CacheEntries = -1
			}
			if mounted {
				opts.Console = c
			}
			eng, store := openDeps(b, "../../policies", "../../data")
			h := server.New(eng, store, server.NewMetrics(store.KeyCounts), opts).Handler()
			name := map[bool]string{true: "cache=on", false: "cache=off"}[cache] + map[bool]string{true: "/console=on", false: "/console=off"}[mounted]
			b.Run(name, func(b *testing.B) {
				req, rewind := requestFor(decideCases[0].body)
				w := &discardWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				checkDecision(b, w, true, 200)
				b.ReportAllocs()
				for b.Loop() {
					rewind()
					w.reset()
					h.ServeHTTP(w, req)
				}
			})
		}
	}
}
