package decision

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/keygate/keygate/internal/cachescope"
)

// decisionCache memoises decisions by what the policy reads of the
// question. It never serves a stale answer: a table of entries belongs to
// one policy revision (a policy swap installs an empty table), and each
// entry carries the stamp of the key-store state it was decided from, read
// before the lookups (cacheStamp). A hit needs the stamp still current: a
// store with a cachescope.Ledger moves the stamp of a question only when
// its service or the key its secret names (or their absence) changed, so a
// write to one service leaves the others' entries hot; any other store
// moves every stamp on any key, service or member change (its Generation).
//
// Within a table the key is the API, the service, the SHA-256 of the
// presented secret (which names one key, or none, for one stamp) and the
// projection of the request input onto the paths the entrypoint's rules
// read (engine.Project): equal keys mean inputs equal wherever the policy
// looks, so equal decisions, and a hit needs no key-store lookup at all.
// The content id is echoed per request, not cached. The client address is
// in the request input (and so in the key, when the policy reads it) only
// for a service that restricts addresses.
//
// Memory is bounded: each of the shards holds at most maxPerShard entries
// and cacheBytes/cacheShards bytes. A full shard evicts by CLOCK: a hit
// marks its entry, the hand clears marks and evicts the first unmarked
// entry, so entries hit since the hand last passed survive and an active
// set larger than the cache degrades the hit rate gradually, not to zero.
type decisionCache struct {
	cur      atomic.Pointer[cacheTable]
	seed     maphash.Seed
	max      int
	maxBytes int
	// scopes is the store's invalidation ledger; nil when the store has
	// none (then stamps are its Generation).
	scopes *cachescope.Ledger

	evictions atomic.Uint64 // entries evicted to make room
	stale     atomic.Uint64 // lookups that found an entry of an older stamp
}

// CacheScoper is what a key store adds to Keys for decisions cached
// per service and per secret: the ledger it touches after each change is
// visible and before it is answered (see package cachescope).
type CacheScoper interface {
	CacheScopes() *cachescope.Ledger
}

// cacheStamp is the key-store state an entry was decided from.
type cacheStamp = cachescope.Stamp

const cacheShards = 32

// cacheBytes bounds the cache's memory: keys, the strings of the cached
// decisions and a fixed overhead per entry. The entry bound alone is not
// one: unauthenticated questions with ~1 KiB endpoint names cost ~2.3 KB an
// entry, 100,000 entries ~230 MB of live heap (~630 MB RSS at GOGC=200).
const cacheBytes = 64 << 20

// cacheEntryOverhead approximates an entry's memory beyond its strings: its
// slot (the Decision, the string headers, the stamp) and its index entry.
const cacheEntryOverhead = int(unsafe.Sizeof(cacheSlot{})) + 48

// maxCachedKey bounds the size of a cached question's key, so that the
// entry bound (CacheEntries) is also a memory bound: about 1 KiB a key.
const maxCachedKey = 1 << 10

type cacheTable struct {
	revision string
	shards   [cacheShards]cacheShard
}

// cacheShard holds entries in slots, indexed by key. Evicted slots go to a
// free list and are reused; the slice never shrinks, and never grows past
// the entry bound.
type cacheShard struct {
	mu    sync.RWMutex
	idx   map[string]int32
	slots []cacheSlot
	free  []int32
	hand  int
	bytes int // cacheEntrySize of the live entries
}

type cacheSlot struct {
	key   string // "" for a free slot
	d     Decision
	stamp cacheStamp
	size  int32
	// ref is CLOCK's mark: set by a hit (under the read lock, hence
	// atomic), cleared by the hand.
	ref atomic.Uint32
}

// newDecisionCache returns a cache bounded to about maxEntries decisions;
// zero or less disables caching. keys' ledger, when it has one, scopes the
// invalidation.
func newDecisionCache(maxEntries int, keys Keys) *decisionCache {
	if maxEntries <= 0 {
		return nil
	}
	c := &decisionCache{seed: maphash.MakeSeed(), max: max(maxEntries/cacheShards, 1), maxBytes: cacheBytes / cacheShards}
	if sc, ok := keys.(CacheScoper); ok {
		c.scopes = sc.CacheScopes()
	}
	return c
}

// stamp returns the stamp of a question to service with the secret hashing
// to h (nil: no secret); gen is the store's Generation, read by the caller.
// Call it before any key-store lookup the decision makes.
func (c *decisionCache) stamp(gen uint64, service string, h *[32]byte) cacheStamp {
	if c.scopes == nil {
		return cacheStamp{Epoch: gen}
	}
	return c.scopes.Stamp(service, h)
}

// table returns the table of revision, installing a fresh one when the
// policy moved on.
func (c *decisionCache) table(revision string) *cacheTable {
	t := c.cur.Load()
	if t != nil && t.revision == revision {
		return t
	}
	nt := &cacheTable{revision: revision}
	if c.cur.CompareAndSwap(t, nt) {
		return nt
	}
	if t = c.cur.Load(); t != nil && t.revision == revision {
		return t
	}
	return nil
}

func (c *decisionCache) shard(t *cacheTable, key []byte) *cacheShard {
	return &t.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the entry of key if it was decided under stamp.
func (c *decisionCache) get(t *cacheTable, key []byte, stamp cacheStamp) (Decision, bool) {
	s := c.shard(t, key)
	s.mu.RLock()
	i, found := s.idx[string(key)]
	var d Decision
	ok := false
	if found {
		sl := &s.slots[i]
		if ok = sl.stamp == stamp; ok {
			d = sl.d
			if sl.ref.Load() == 0 {
				sl.ref.Store(1)
			}
		}
	}
	s.mu.RUnlock()
	if found && !ok {
		c.stale.Add(1)
	}
	return d, ok
}

// put remembers d as the answer to key under stamp, evicting as needed.
func (c *decisionCache) put(t *cacheTable, key []byte, d Decision, stamp cacheStamp) {
	size := cacheEntrySize(key, &d)
	if size > c.maxBytes {
		return
	}
	s := c.shard(t, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.idx[string(key)]; ok {
		sl := &s.slots[i]
		s.bytes += size - int(sl.size)
		sl.d, sl.stamp, sl.size = d, stamp, int32(size)
		for s.bytes > c.maxBytes && len(s.idx) > 1 {
			c.evict(s, i)
		}
		return
	}
	if s.idx == nil {
		s.idx = make(map[string]int32, min(c.max, 256))
	}
	for len(s.idx) > 0 && (len(s.idx) >= c.max || s.bytes+size > c.maxBytes) {
		c.evict(s, -1)
	}
	var i int32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		i = int32(len(s.slots))
		s.slots = append(s.slots, cacheSlot{})
	}
	k := string(key)
	sl := &s.slots[i]
	sl.key, sl.d, sl.stamp, sl.size = k, d, stamp, int32(size)
	sl.ref.Store(0)
	s.idx[k] = i
	s.bytes += size
}

// evict frees one live slot other than keep, by CLOCK: the hand clears the
// marks of entries hit since it last passed and evicts the first unmarked
// one. Two turns of the hand always find one.
func (c *decisionCache) evict(s *cacheShard, keep int32) {
	for range 2*len(s.slots) + 1 {
		if s.hand >= len(s.slots) {
			s.hand = 0
		}
		i := s.hand
		s.hand++
		sl := &s.slots[i]
		if sl.key == "" || int32(i) == keep {
			continue
		}
		if sl.ref.Load() != 0 {
			sl.ref.Store(0)
			continue
		}
		delete(s.idx, sl.key)
		s.bytes -= int(sl.size)
		sl.key, sl.d, sl.size = "", Decision{}, 0
		s.free = append(s.free, int32(i))
		c.evictions.Add(1)
		return
	}
}

// cacheStats is the cache's state for /metrics.
type cacheStats struct {
	entries, bytes   int
	evictions, stale uint64
}

func (c *decisionCache) stats() cacheStats {
	st := cacheStats{evictions: c.evictions.Load(), stale: c.stale.Load()}
	t := c.cur.Load()
	if t == nil {
		return st
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		st.entries += len(s.idx)
		st.bytes += s.bytes
		s.mu.RUnlock()
	}
	return st
}

// cacheEntrySize is what an entry costs, counting its strings as its own (an
// over-estimate where they are shared).
func cacheEntrySize(key []byte, d *Decision) int {
	return cacheEntryOverhead + len(key) + len(d.DecisionID) + len(d.Code) + len(d.Message) +
		len(d.Permission) + len(d.Endpoint) + len(d.ContentID) + len(d.KeyID) + len(d.matchedKeyID) +
		len(d.PolicyRevision) + len(d.Visibility.FilterOn)
}
