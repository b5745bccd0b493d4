package decision

import (
	"strconv"
	"strings"
	"testing"
)

// TestDecisionCacheBoundedInBytes: the decision cache's memory is bounded in bytes, not
// only in entries. Unauthenticated questions may name ~1 KiB endpoints (the cache key bound),
// and each answer carries its endpoint: 100,000 such entries held ~230 MB of heap.
func TestDecisionCacheBoundedInBytes(t *testing.T) {
	const bound = 64 << 20 // cacheBytes
	for _, tc := range []struct {
		note    string
		entries int
		keyLen  int
	}{
		{"long keys and endpoints", 100_000, 1000},
		{"short keys", 100_000, 40},
	} {
		t.Run(tc.note, func(t *testing.T) {
			c := newDecisionCache(100_000, nil)
			tbl := c.table("rev")
			long := strings.Repeat("a", tc.keyLen)
			for i := range tc.entries {
				name := long + strconv.Itoa(i)
				c.put(tbl, []byte(name), Decision{Status: 401, Code: "invalid_api_key", Endpoint: name}, cacheStamp{})
			}
			held, entries := 0, 0
			for i := range tbl.shards {
				for j := range tbl.shards[i].slots {
					if sl := &tbl.shards[i].slots[j]; sl.key != "" {
						held += len(sl.key) + len(sl.d.Endpoint)
						entries++
					}
				}
			}
			if held > bound {
				t.Fatalf("%d entries hold %d bytes of keys and endpoints, over the %d-byte bound", entries, held, bound)
			}
			t.Logf("%d entries, %d bytes of keys and endpoints", entries, held)
		})
	}
}
