package keystore

import (
	"fmt"
	"reflect"
	"runtime"
	"runtime/metrics"
	"testing"
	"unsafe"
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
// collector no per-key strings or pointers: the records, their ids and
// names and the bucket entries live in pointer-free arrays. What is left
// per key at this size is mostly memdb's radix nodes for the buckets
// (~100,000 of them at 100,000 keys, at most 131,072 at any size): about 6
// heap objects and 200 scannable bytes per key here, where records holding
// the id and the name as strings made it 8 objects and 300 bytes.
func TestIndexHeapIsPointerFree(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100,000 keys")
	}
	const n = 100_000
	ix := testIndex(t, nil)
	scan0, obj0 := heapShape()
	loadScaleKeys(t, ix, n)
	scan1, obj1 := heapShape()
	scanPerKey := (float64(scan1) - float64(scan0)) / n
	objPerKey := (float64(obj1) - float64(obj0)) / n
	t.Logf("per key: %.1f scannable bytes, %.3f heap objects", scanPerKey, objPerKey)
	if objPerKey > 7 {
		t.Errorf("%.3f heap objects per key, want ≤ 7", objPerKey)
	}
	if scanPerKey > 250 {
		t.Errorf("%.1f scannable heap bytes per key, want ≤ 250", scanPerKey)
	}
	if k, _ := ix.keyByID(ix.read(), "key_00000042"); k == nil || k.Name != "key 42" {
		t.Fatalf("key_00000042: %v", k)
	}
	runtime.KeepAlive(ix)
}

// TestIndexArraysHoldNoPointers: the element types of the arrays that grow
// with the number of keys hold no pointer, so the collector does not scan
// them (allocated as noscan memory).
func TestIndexArraysHoldNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[keyRec](), reflect.TypeFor[indivEnt](), reflect.TypeFor[secretEnt](), reflect.TypeFor[idEnt](),
	} {
		if path := pointerIn(typ, typ.Name()); path != "" {
			t.Errorf("%s holds a pointer: %s", typ, path)
		}
	}
}

// pointerIn returns the path to a pointer-holding part of typ ("" if none).
func pointerIn(typ reflect.Type, path string) string {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return ""
	case reflect.Array:
		return pointerIn(typ.Elem(), path+"[]")
	case reflect.Struct:
		for i := range typ.NumField() {
			f := typ.Field(i)
			if p := pointerIn(f.Type, path+"."+f.Name); p != "" {
				return p
			}
		}
		return ""
	default:
		return path + " (" + typ.String() + ")"
	}
}

// loadScaleKeys loads n keys into ix, 20 per service; the keys are garbage
// once it returns.
func loadScaleKeys(t *testing.T, ix *index, n int) {
	t.Helper()
	keys := make([]*Key, n)
	for i := range keys {
		svc := fmt.Sprintf("svc-%d", i/20)
		keys[i] = &Key{ID: fmt.Sprintf("key_%08d", i), Service: svc, Name: fmt.Sprintf("key %d", i), CreatedBy: svc + "-admin",
			Revision: 1, ContentAPI: ContentAPI{Default: ContentPerms{Get: true}}}
		keys[i].secretHash = hashOf(keys[i].ID)
	}
	if err := ix.Load(&Directory{}, keys, nil); err != nil {
		t.Fatal(err)
	}
}

// pageOf returns the page holding key id in ix's latest commit.
func pageOf(t *testing.T, ix *index, id string) *keyPage {
	t.Helper()
	p, _, err := ix.findID(ix.read(), id)
	if err != nil || p == nil {
		t.Fatalf("key %s: page %v %v", id, p, err)
	}
	return p
}

// TestPageStringsBounded: 10,000 updates (new names) and rotations of one
// key, one transaction each or all in one transaction, leave its page's
// ids and names (and individual entries) bounded by its live keys, not by
// the writes made.
func TestPageStringsBounded(t *testing.T) {
	for _, perTxn := range []int{1, 10_000} {
		t.Run(fmt.Sprintf("%d writes per transaction", perTxn), func(t *testing.T) {
			ix := testIndex(t, nil)
			other := &Key{ID: "key_other", Service: "svc", Name: "other", secretHash: hashOf("other")}
			k := &Key{ID: "key_busy", Service: "svc", Name: "busy", secretHash: hashOf("busy")}
			if err := ix.Load(testDir("svc"), []*Key{other, k}, nil); err != nil {
				t.Fatal(err)
			}
			var txn IndexTxn
			for i := range 10_000 {
				if i%perTxn == 0 {
					txn = ix.Write()
				}
				k2 := *k
				k2.Name = fmt.Sprintf("busy name %d", i)
				k2.ContentAPI.Individual = map[string]ContentPerms{"blogs": {Get: true}, "news": {}}
				if i%2 == 1 {
					k2.secretHash = hashOf(k2.Name) // a rotation
				}
				if err := txn.Put(&k2); err != nil {
					t.Fatal(err)
				}
				k = &k2
				if i%perTxn == perTxn-1 {
					txn.Commit()
				}
			}
			p := pageOf(t, ix, "key_busy")
			live := len("key_other") + len("other") + len(k.ID) + len(k.Name)
			if len(p.strs) > 2*live+512 || cap(p.strs) > 2*(2*live+512) {
				t.Errorf("page strings: len %d cap %d for %d live bytes", len(p.strs), cap(p.strs), live)
			}
			if len(p.indiv) > 2*2+64 || cap(p.indiv) > 2*(2*2+64) {
				t.Errorf("page individual entries: len %d cap %d for 2 live", len(p.indiv), cap(p.indiv))
			}
			if got, _ := ix.keyByID(ix.read(), "key_busy"); got == nil || got.Name != k.Name || len(got.ContentAPI.Individual) != 2 {
				t.Fatalf("key_busy: %#v", got)
			}
			if got, _ := ix.keyByID(ix.read(), "key_other"); got == nil || got.Name != "other" {
				t.Fatalf("key_other: %#v", got)
			}
		})
	}
}

// TestReadStringsStayUnchanged: the id and name of a key read from the
// index (by id, by secret, through a KeyRef, in a write transaction) keep
// their value whatever is written afterwards: in the same transaction,
// later ones, a delete, a reload.
func TestReadStringsStayUnchanged(t *testing.T) {
	ix := testIndex(t, nil)
	s := &Store{index: ix}
	var keys []*Key
	for i := range 3 {
		keys = append(keys, &Key{ID: fmt.Sprintf("key_%d", i), Service: "svc", Name: fmt.Sprintf("name-%d", i), secretHash: hashOf(fmt.Sprint(i))})
	}
	if err := ix.Load(testDir("svc"), keys, nil); err != nil {
		t.Fatal(err)
	}
	type seen struct{ id, name, wantID, wantName string }
	var reads []seen
	keep := func(k *Key, id, name string) {
		t.Helper()
		if k == nil {
			t.Fatalf("%s not found", id)
		}
		reads = append(reads, seen{k.ID, k.Name, id, name})
	}
	r := ix.read()
	byID, _ := ix.keyByID(r, "key_1")
	keep(byID, "key_1", "name-1")
	bySecret, _ := ix.keyBySecret(r, hashOf("0"))
	keep(bySecret, "key_0", "name-0")
	ref, _ := s.KeyRefBySecretHash(hashOf("2"))
	refKey := ref.Key()
	keep(&refKey, "key_2", "name-2")

	txn := ix.Write()
	for i := range 200 {
		// same lengths: a blob rewritten in place would show it
		k := &Key{ID: "key_1", Service: "svc", Name: fmt.Sprintf("NAME-%d", i%10), secretHash: hashOf("1")}
		if err := txn.Put(k); err != nil {
			t.Fatal(err)
		}
		inTxn, _ := txn.Key("key_1")
		keep(inTxn, "key_1", k.Name)
		if i == 100 {
			if err := txn.Put(&Key{ID: "key_9", Service: "svc", Name: "name-9", secretHash: hashOf("9")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	txn.Commit()
	for i := range 50 {
		txn := ix.Write()
		if err := txn.Put(&Key{ID: "key_0", Service: "svc", Name: fmt.Sprintf("XXXX-%d", i%10), secretHash: hashOf("0")}); err != nil {
			t.Fatal(err)
		}
		txn.Commit()
	}
	txn = ix.Write()
	if err := txn.Delete(keys[2]); err != nil {
		t.Fatal(err)
	}
	txn.Commit()
	if err := ix.Load(testDir("svc"), nil, nil); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	for i, r := range reads {
		if r.id != r.wantID || r.name != r.wantName {
			t.Errorf("read %d: now %q %q, read as %q %q", i, r.id, r.name, r.wantID, r.wantName)
		}
	}
}

// TestKeyRefKeyOwnsItsStrings: the id and name of KeyRef.Key (which the
// decision path keeps per key version) are not strings over the page's
// bytes, so they do not keep a replaced page's ids and names alive; the
// lookups that hand a key out for the moment (by id, by secret) read
// them in place.
func TestKeyRefKeyOwnsItsStrings(t *testing.T) {
	ix := testIndex(t, nil)
	keys := []*Key{
		{ID: "key_a", Service: "svc", Name: "name a", secretHash: hashOf("a")},
		{ID: "key_b", Service: "svc", secretHash: hashOf("b")}, // no name
	}
	if err := ix.Load(testDir("svc"), keys, nil); err != nil {
		t.Fatal(err)
	}
	inPage := func(p *keyPage, s string) bool {
		if len(s) == 0 || len(p.strs) == 0 {
			return false
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(p.strs)))
		at := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return at >= lo && at < lo+uintptr(cap(p.strs))
	}
	for _, want := range keys {
		p := pageOf(t, ix, want.ID)
		ref, ok := (&Store{index: ix}).KeyRefBySecretHash(want.secretHash)
		if !ok {
			t.Fatalf("%s: no KeyRef", want.ID)
		}
		k := ref.Key()
		if k.ID != want.ID || k.Name != want.Name {
			t.Fatalf("KeyRef.Key: %q %q, want %q %q", k.ID, k.Name, want.ID, want.Name)
		}
		if inPage(p, k.ID) || inPage(p, k.Name) {
			t.Errorf("%s: KeyRef.Key's strings point into the page", want.ID)
		}
		if byID, _ := ix.keyByID(ix.read(), want.ID); byID == nil || !inPage(p, byID.ID) {
			t.Errorf("%s: keyByID copied the id (or did not find it)", want.ID)
		}
	}
}
