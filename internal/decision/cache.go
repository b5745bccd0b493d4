package decision

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// decisionCache memoises decisions by what the policy reads of the
// question. It can never serve a stale answer, by construction: a table of
// entries belongs to one (policy revision, key-store generation) pair, and
// any policy swap or key, service or member change produces a new pair and
// so an empty table. Within a table the key is the API, the service, the
// SHA-256 of the presented secret (which names one key, or none, for the
// whole generation) and the projection of the request input onto the paths
// the entrypoint's rules read (engine.Project): equal keys mean inputs equal
// wherever the policy looks, so equal decisions, and a hit needs no
// key-store lookup at all. The content id is echoed per request, not cached.
// The client address is in the request input (and so in the key, when the
// policy reads it) only for a service that restricts addresses.
//
// Memory is bounded: each of the shards holds at most maxPerShard entries
// and cacheBytes/cacheShards bytes, and is emptied when full (cheap, and a
// hot entry is back after one miss).
type decisionCache struct {
	cur      atomic.Pointer[cacheTable]
	seed     maphash.Seed
	max      int
	maxBytes int
}

const cacheShards = 32

// cacheBytes bounds the cache's memory: keys, the strings of the cached
// decisions and a fixed overhead per entry. The entry bound alone is not
// one: unauthenticated questions with ~1 KiB endpoint names cost ~2.3 KB an
// entry, 100,000 entries ~230 MB of live heap (~630 MB RSS at GOGC=200).
const cacheBytes = 64 << 20

// cacheEntryOverhead approximates an entry's memory beyond its strings: the
// map slot, the Decision and the string headers.
const cacheEntryOverhead = 192

// maxCachedKey bounds the size of a cached question's key, so that the
// entry bound (CacheEntries) is also a memory bound: about 1 KiB a key.
const maxCachedKey = 1 << 10

type cacheTable struct {
	revision string
	gen      uint64
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]Decision
	bytes int // cacheEntrySize of every put since the shard was emptied
}

// newDecisionCache returns a cache bounded to about maxEntries decisions;
// zero or less disables caching.
func newDecisionCache(maxEntries int) *decisionCache {
	if maxEntries <= 0 {
		return nil
	}
	return &decisionCache{seed: maphash.MakeSeed(), max: max(maxEntries/cacheShards, 1), maxBytes: cacheBytes / cacheShards}
}

// table returns the table for (revision, gen), installing a fresh one when
// the state moved on. A caller holding an older generation than the
// installed table gets nil and bypasses the cache.
func (c *decisionCache) table(revision string, gen uint64) *cacheTable {
	t := c.cur.Load()
	if t != nil && t.gen == gen && t.revision == revision {
		return t
	}
	if t != nil && gen < t.gen {
		return nil
	}
	nt := &cacheTable{revision: revision, gen: gen}
	if c.cur.CompareAndSwap(t, nt) {
		return nt
	}
	if t = c.cur.Load(); t != nil && t.gen == gen && t.revision == revision {
		return t
	}
	return nil
}

func (c *decisionCache) shard(t *cacheTable, key []byte) *cacheShard {
	return &t.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

func (c *decisionCache) get(t *cacheTable, key []byte) (Decision, bool) {
	s := c.shard(t, key)
	s.mu.RLock()
	d, ok := s.m[string(key)]
	s.mu.RUnlock()
	return d, ok
}

func (c *decisionCache) put(t *cacheTable, key []byte, d Decision) {
	size := cacheEntrySize(key, &d)
	s := c.shard(t, key)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= c.max || s.bytes+size > c.maxBytes {
		s.m = make(map[string]Decision, min(c.max, 256))
		s.bytes = 0
	}
	s.m[string(key)] = d
	s.bytes += size
	s.mu.Unlock()
}

// cacheEntrySize is what an entry costs, counting its strings as its own (an
// over-estimate where they are shared).
func cacheEntrySize(key []byte, d *Decision) int {
	return cacheEntryOverhead + len(key) + len(d.DecisionID) + len(d.Code) + len(d.Message) +
		len(d.Permission) + len(d.Endpoint) + len(d.ContentID) + len(d.KeyID) + len(d.matchedKeyID) +
		len(d.PolicyRevision) + len(d.Visibility.FilterOn)
}
