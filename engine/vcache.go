package engine

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// flatCache is a topdown.VirtualCache for small evaluations: each frame is
// a slice of (ref, value) entries searched from the newest, instead of OPA's
// tree of hash maps. keygate's decisions cache a few dozen rule values per
// evaluation, where a linear search is cheaper than hashing, and the
// frames' slices are reused across evaluations (the cache is pooled), so
// an evaluation allocates nothing for its virtual cache once warm.
type flatCache struct {
	frames [][]cacheEntry
	depth  int
	// refs holds copies of the cached refs' terms (OPA may reuse a ref's
	// backing array after Put returns).
	refs []*ast.Term
}

type cacheEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
}

var _ topdown.VirtualCache = (*flatCache)(nil)

var flatCaches = sync.Pool{New: func() any { c := &flatCache{}; c.Push(); return c }}

// getFlatCache returns an empty cache with one frame.
func getFlatCache() *flatCache { return flatCaches.Get().(*flatCache) }

// putFlatCache empties c and returns it to the pool.
func putFlatCache(c *flatCache) {
	for i := range c.frames {
		clear(c.frames[i])
		c.frames[i] = c.frames[i][:0]
	}
	clear(c.refs)
	c.refs = c.refs[:0]
	c.depth = 1
	flatCaches.Put(c)
}

func (c *flatCache) Push() {
	if c.depth == len(c.frames) {
		c.frames = append(c.frames, nil)
	}
	c.frames[c.depth] = c.frames[c.depth][:0]
	c.depth++
}

func (c *flatCache) Pop() {
	if c.depth == 0 {
		return
	}
	c.depth--
	clear(c.frames[c.depth])
	c.frames[c.depth] = c.frames[c.depth][:0]
}

func (c *flatCache) top() []cacheEntry { return c.frames[c.depth-1] }

// Get returns (value, false) for a cached value, (nil, true) for a cached
// undefined result and (nil, false) when ref is not cached.
func (c *flatCache) Get(ref ast.Ref) (*ast.Term, bool) {
	entries := c.top()
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].ref.Equal(ref) {
			if entries[i].undefined {
				return nil, true
			}
			return entries[i].value, false
		}
	}
	return nil, false
}

// Put caches value for ref; a nil value records an undefined result.
func (c *flatCache) Put(ref ast.Ref, value *ast.Term) {
	entries := c.top()
	for i := range entries {
		if entries[i].ref.Equal(ref) {
			// As OPA's cache: a value replaces the value, undefined sticks.
			if value != nil {
				entries[i].value = value
			} else {
				entries[i].undefined = true
			}
			return
		}
	}
	start := len(c.refs)
	c.refs = append(c.refs, ref...)
	e := cacheEntry{ref: ast.Ref(c.refs[start:len(c.refs):len(c.refs)]), value: value, undefined: value == nil}
	c.frames[c.depth-1] = append(entries, e)
}

// Keys returns the refs with a value in the active frame.
func (c *flatCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.top() {
		if e.value != nil {
			keys = append(keys, e.ref)
		}
	}
	return keys
}
