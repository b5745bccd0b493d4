package decision

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/keygate/keygate/internal/cachescope"
)

// benchDecision is an allow as the shipped content policy answers it.
func benchDecision(i int) Decision {
	return Decision{Allow: true, Status: 200, Code: "allowed", Message: "", Permission: "get",
		Endpoint: "blogs", KeyID: fmt.Sprintf("key-%d", i), matchedKeyID: fmt.Sprintf("key-%d", i),
		PolicyRevision: "rev-0123456789abcdef", Visibility: Visibility{Published: true, FilterOn: "published"}}
}

// benchCacheKeys returns n distinct cache keys shaped as decide writes them
// (API, service, secret hash, projected request), about 90 bytes each, and
// the service and secret hash of each.
func benchCacheKeys(n, services int) (keys [][]byte, svcs []string, hashes [][32]byte) {
	keys, svcs, hashes = make([][]byte, n), make([]string, n), make([][32]byte, n)
	for i := range n {
		svcs[i] = fmt.Sprintf("service-%06d", i%services)
		hashes[i] = sha256.Sum256(fmt.Appendf(nil, "secret-%d", i))
		b := appendKeyPart(nil, APIContent)
		b = appendKeyPart(b, svcs[i])
		b = append(append(b, 1), hashes[i][:]...)
		b = appendKeyPart(b, "GET")
		b = appendKeyPart(b, "blogs")
		b = appendKeyPart(b, fmt.Sprintf("list-%d", i%2))
		keys[i] = b
	}
	return keys, svcs, hashes
}

// BenchmarkDecisionCacheHit is the hit path: stamp, table, get of a warm
// entry. It must not allocate.
func BenchmarkDecisionCacheHit(b *testing.B) {
	for _, scoped := range []bool{false, true} {
		b.Run(fmt.Sprintf("scoped=%v", scoped), func(b *testing.B) {
			c := newDecisionCache(100_000, nil)
			if scoped {
				c.scopes = cachescope.New()
			}
			keys, svcs, hashes := benchCacheKeys(1024, 64)
			t := c.table("rev")
			for i, k := range keys {
				c.put(t, k, benchDecision(i), c.stamp(1, svcs[i], &hashes[i]))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := i & 1023
				st := c.stamp(1, svcs[j], &hashes[j])
				if _, ok := c.get(c.table("rev"), keys[j], st); !ok {
					b.Fatal("miss")
				}
			}
		})
	}
}

// BenchmarkDecisionCacheActiveSet draws questions uniformly from an active
// set of 0.5 to 4 times the cache's entry bound (100,000), answering a miss
// by a put, and reports the hit rate: with CLOCK eviction it falls
// gradually (about bound/active) instead of off a cliff.
func BenchmarkDecisionCacheActiveSet(b *testing.B) {
	const bound = 100_000
	for _, ratio := range []float64{0.5, 1, 2, 4} {
		b.Run(fmt.Sprintf("active=%.1fx", ratio), func(b *testing.B) {
			n := int(ratio * bound)
			keys, svcs, hashes := benchCacheKeys(n, 1000)
			c := newDecisionCache(bound, nil)
			d := benchDecision(0)
			rng := rand.New(rand.NewPCG(1, 2))
			t := c.table("rev")
			for range 2 * n { // warm up to the steady state
				j := rng.IntN(n)
				if _, ok := c.get(t, keys[j], c.stamp(1, svcs[j], &hashes[j])); !ok {
					c.put(t, keys[j], d, c.stamp(1, svcs[j], &hashes[j]))
				}
			}
			hits := 0
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				j := rng.IntN(n)
				st := c.stamp(1, svcs[j], &hashes[j])
				if _, ok := c.get(t, keys[j], st); ok {
					hits++
				} else {
					c.put(t, keys[j], d, st)
				}
			}
			b.ReportMetric(100*float64(hits)/float64(b.N), "hit%")
		})
	}
}

// BenchmarkDecisionCacheUnderWrites: 20,000 active questions over 1,000
// services, all fitting the cache, with one key write to a random service
// every 100 decisions. A scoped ledger invalidates the written key's
// entries only; the store generation (scoped=false) invalidates every
// entry on each write. Reports the hit rate.
func BenchmarkDecisionCacheUnderWrites(b *testing.B) {
	for _, scoped := range []bool{false, true} {
		b.Run(fmt.Sprintf("scoped=%v", scoped), func(b *testing.B) {
			const n = 20_000
			keys, svcs, hashes := benchCacheKeys(n, 1000)
			c := newDecisionCache(100_000, nil)
			l := cachescope.New()
			if scoped {
				c.scopes = l
			}
			var gen uint64 = 1
			d := benchDecision(0)
			rng := rand.New(rand.NewPCG(1, 2))
			t := c.table("rev")
			hits := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%100 == 99 { // a write to one key
					w := rng.IntN(n)
					l.TouchSecret(hashes[w])
					gen++
				}
				j := rng.IntN(n)
				st := c.stamp(gen, svcs[j], &hashes[j])
				if _, ok := c.get(t, keys[j], st); ok {
					hits++
				} else {
					c.put(t, keys[j], d, st)
				}
			}
			b.ReportMetric(100*float64(hits)/float64(b.N), "hit%")
		})
	}
}
