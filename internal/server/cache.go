package server

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// decisionCache memoises decisions by the exact question asked. It can
// never serve a stale answer, by construction: a table of entries belongs
// to one (policy revision, key-store generation) pair, and any policy swap or
// key, service or member change produces a new pair and so an empty table.
// Within a table the key is everything the policy input is built from —
// API, service, the SHA-256 of the presented secret (which names one key,
// or none, for the whole generation), method, path, client address (only for a
// service that restricts addresses) and query — so equal
// keys mean equal inputs, and a hit needs no key-store lookup at all.
//
// Memory is bounded: each of the shards holds at most maxPerShard entries
// and is emptied when full (cheap, and a hot entry is back after one miss).
type decisionCache struct {
	cur  atomic.Pointer[cacheTable]
	seed maphash.Seed
	max  int
}

const cacheShards = 32

// maxCachedKey bounds the size of a cached question's key, so that the
// entry bound (CacheEntries) is also a memory bound: about 1 KiB a key.
const maxCachedKey = 1 << 10

type cacheTable struct {
	revision string
	gen      uint64
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]Decision
}

// newDecisionCache returns a cache bounded to about maxEntries decisions;
// zero or less disables caching.
func newDecisionCache(maxEntries int) *decisionCache {
	if maxEntries <= 0 {
		return nil
	}
	return &decisionCache{seed: maphash.MakeSeed(), max: max(maxEntries/cacheShards, 1)}
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
	s := c.shard(t, key)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= c.max {
		s.m = make(map[string]Decision, min(c.max, 256))
	}
	s.m[string(key)] = d
	s.mu.Unlock()
}

// appendCacheKey writes the cache key of a decision request: every part of
// the policy input, each length-prefixed so that no two different requests
// share a key (a path may contain any byte once unescaped), with the query
// in the order the input builder dedups it.
func appendCacheKey(b []byte, r *decisionRequest, hasSecret bool, secretHash *[32]byte) []byte {
	b = appendKeyPart(b, r.api)
	b = appendKeyPart(b, r.service)
	if hasSecret {
		b = append(b, 1)
		b = append(b, secretHash[:]...)
	} else {
		b = append(b, 0)
	}
	b = appendKeyPart(b, r.method)
	b = appendKeyPart(b, r.path)
	// The client address, "" unless the service restricts addresses.
	b = appendKeyPart(b, r.clientIP)
	for _, kv := range r.query {
		b = appendKeyPart(b, kv[0])
		b = appendKeyPart(b, kv[1])
	}
	return b
}

func appendKeyPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
