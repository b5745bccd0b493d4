// Package decision is keygate's decision core, apart from HTTP: the policy
// input built from a decision request, the request view and its cache-key
// encoding, the decision cache, shadow evaluation of a candidate policy,
// the decision log and replay of a decision log against a candidate. The
// HTTP server (internal/server) parses requests into a Request and asks a
// Point; `keygate replay` asks a Replayer, which builds the input exactly
// as the Point does, without the HTTP server.
package decision

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus"
)

// Decider evaluates policy entrypoints; *engine.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, entrypoint string, input ast.Value) (engine.Decision, error)
	Reload(ctx context.Context) (engine.ReloadResult, error)
	// ReloadObserved is Reload, calling observe with the outcome before
	// Status reports it.
	ReloadObserved(ctx context.Context, observe func(engine.ReloadResult, error)) (engine.ReloadResult, error)
	Status() engine.Status
	Revision() string
	// Projection returns the serving revision and what an entrypoint's
	// decisions read of the input, from the same policy set.
	Projection(entrypoint string) (string, *engine.Projection)
}

// Keys is what a decision needs of the key store: the key a secret's
// SHA-256 names, services and their IP restrictions, and the generation
// that changes with any of them. *keystore.Store implements it.
type Keys interface {
	KeyRefBySecretHash(h [32]byte) (keystore.KeyRef, bool)
	Generation() uint64
	Service(id string) (keystore.Service, bool)
	IPRestrictions(service string) (*keystore.IPRestrictions, uint64, bool)
}

var (
	_ Decider = (*engine.Engine)(nil)
	_ Keys    = (*keystore.Store)(nil)
)

// Options configure a Point.
type Options struct {
	// DecisionLog receives one entry per decision; nil disables it.
	DecisionLog *DecisionLog
	// Logger for evaluation errors; slog.Default() when nil.
	Logger *slog.Logger
	// CacheEntries bounds the decision cache; 0 means 100,000 and a
	// negative value disables the cache.
	CacheEntries int
	// Shadow evaluates a candidate policy beside the serving one; off
	// when Shadow.Policy is nil.
	Shadow ShadowOptions
	// LegacyHeaders judges content API decisions by microCMS's old key
	// headers when a request carries them (--legacy-headers).
	LegacyHeaders bool
	// Stale reports that the key store's index is too old to decide
	// with: decisions then fail closed with 503 store_stale. nil: never.
	Stale func() bool
	// Buffers are the scratch buffers of cache keys; the server shares
	// its own. A new pool when nil.
	Buffers *Buffers
	// IDs makes the decision ids; the server shares the source of its
	// request ids. A new source when nil.
	IDs *IDSource
	// Registerer registers the shadow evaluation's metrics; a throwaway
	// registry when nil.
	Registerer prometheus.Registerer
	// CacheHits and CacheMisses count answers from the decision cache and
	// evaluations; uncounted when nil.
	CacheHits, CacheMisses prometheus.Counter
}

// Point is the policy decision point: it looks the key up, asks the
// policy (or the decision cache), logs the decision and offers it to the
// shadow candidate.
type Point struct {
	policy        Decider
	keys          Keys
	log           *slog.Logger
	declog        *DecisionLog
	inputs        *keyInputs
	services      *serviceInputs
	names         *names
	ids           *IDSource
	cache         *decisionCache
	shadow        *shadow
	bufs          *Buffers
	stale         func() bool
	legacyHeaders bool
	cacheHits     prometheus.Counter
	cacheMisses   prometheus.Counter
}

// New returns a Point that decides with policy and looks keys up in keys.
func New(policy Decider, keys Keys, opts Options) *Point {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Point{
		policy:        policy,
		keys:          keys,
		log:           log,
		declog:        opts.DecisionLog,
		inputs:        newKeyInputs(),
		services:      newServiceInputs(),
		names:         newNames(),
		ids:           opts.IDs,
		bufs:          opts.Buffers,
		stale:         opts.Stale,
		legacyHeaders: opts.LegacyHeaders,
		cacheHits:     opts.CacheHits,
		cacheMisses:   opts.CacheMisses,
	}
	if s.bufs == nil {
		s.bufs = NewBuffers()
	}
	if s.ids == nil {
		s.ids = NewIDSource()
	}
	if s.stale == nil {
		s.stale = func() bool { return false }
	}
	if s.cacheHits == nil {
		s.cacheHits = prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_hits"})
	}
	if s.cacheMisses == nil {
		s.cacheMisses = prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_misses"})
	}
	if opts.CacheEntries == 0 {
		opts.CacheEntries = 100_000
	}
	s.cache = newDecisionCache(opts.CacheEntries, keys)
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.shadow = newShadow(s, reg, opts.Shadow)
	return s
}

// ForgetKey drops a deleted key's cached input.
func (s *Point) ForgetKey(id string) { s.inputs.forget(id) }

// errStoreStale is the error a stale key store's answer is counted with.
var errStoreStale = errors.New("key store index is stale")

// staleDecision is the answer while the key store is stale: 503, never an
// allow, whatever the cache or the policy would say.
func staleDecision(revision string) Decision {
	return Decision{Status: http.StatusServiceUnavailable, Code: "store_stale",
		Message: "The key store is not current; try again shortly.", PolicyRevision: revision,
		Visibility: Visibility{FilterOn: "published"}}
}

// Buffers is a pool of small scratch buffers: request bodies and cache
// keys, reused so that a decision allocates none.
type Buffers struct{ pool sync.Pool }

// NewBuffers returns an empty pool of 256-byte buffers.
func NewBuffers() *Buffers {
	b := &Buffers{}
	b.pool.New = func() any { b := make([]byte, 0, 256); return &b }
	return b
}

// Get returns a buffer of the pool.
func (b *Buffers) Get() *[]byte { return b.pool.Get().(*[]byte) }

// Put returns a scratch buffer to the pool, unless a large request grew
// it: the pool must not pin big buffers for every later request.
func (b *Buffers) Put(buf *[]byte, s []byte) {
	if cap(s) > 4<<10 {
		return
	}
	*buf = s[:0]
	b.pool.Put(buf)
}

// CacheStats is the decision cache's size and evictions, as /metrics
// reports them.
type CacheStats struct {
	Entries, Bytes   int
	Evictions, Stale uint64
}

// CacheStats returns the decision cache's size and evictions (zeros when
// the cache is off).
func (s *Point) CacheStats() CacheStats {
	if s.cache == nil {
		return CacheStats{}
	}
	st := s.cache.stats()
	return CacheStats{Entries: st.entries, Bytes: st.bytes, Evictions: st.evictions, Stale: st.stale}
}
