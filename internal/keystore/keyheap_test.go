package keystore

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
)

// heapShape is the scannable heap (bytes the collector must scan) and the
// number of heap objects after two collections.
func heapShape() (scan, objects uint64) {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/objects:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// TestIndexHeapIsPointerFree: a loaded index of 100,000 keys gives the
// collector little to scan and few objects to mark per key: the records,
// their ids and names and the bucket entries live in pointer-free arrays,
// not as strings and pointers per key. The keys given to Load are dropped
// before measuring, so their strings count only if the index keeps them.
func TestIndexHeapIsPointerFree(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100,000 keys")
	}
	const n = 100_000
	ix := testIndex(t, nil)
	keys := make([]*Key, n)
	for i := range keys {
		svc := fmt.Sprintf("svc-%d", i/20)
		keys[i] = &Key{ID: fmt.Sprintf("key_%08d", i), Service: svc, Name: fmt.Sprintf("key %d", i), CreatedBy: svc + "-admin",
			Revision: 1, ContentAPI: ContentAPI{Default: ContentPerms{Get: true}}}
		keys[i].secretHash = hashOf(keys[i].ID)
	}
	dir := &Directory{}
	scan0, obj0 := heapShape()
	if err := ix.Load(dir, keys, nil); err != nil {
		t.Fatal(err)
	}
	keys = nil
	scan1, obj1 := heapShape()
	scanPerKey := (float64(scan1) - float64(scan0)) / n
	objPerKey := (float64(obj1) - float64(obj0)) / n
	t.Logf("per key: %.1f scannable bytes, %.3f heap objects", scanPerKey, objPerKey)
	// Per key, a page of 20 keys (one page object, its blob) and its
	// share of the buckets and memdb's radix nodes: a fraction of an
	// object and some tens of scannable bytes. Two strings per key would
	// be two objects; pointerful records would be ~100 scannable bytes.
	if objPerKey > 0.8 {
		t.Errorf("%.3f heap objects per key, want ≤ 0.8", objPerKey)
	}
	if scanPerKey > 60 {
		t.Errorf("%.1f scannable heap bytes per key, want ≤ 60", scanPerKey)
	}
	if k, _ := ix.keyByID(ix.read(), "key_00000042"); k == nil || k.Name != "key 42" {
		t.Fatalf("key_00000042: %v", k)
	}
	runtime.KeepAlive(ix)
}
