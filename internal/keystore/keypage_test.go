package keystore

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

func testIndex(t *testing.T, idHash func(string) uint64) *index {
	t.Helper()
	ix, err := newIndex()
	if err != nil {
		t.Fatal(err)
	}
	if idHash != nil {
		ix.idHash = idHash
	}
	return ix
}

func hashOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// hashWithPrefix returns a hash starting with the two bytes of prefix.
func hashWithPrefix(prefix uint16, s string) [32]byte {
	h := hashOf(s)
	h[0], h[1] = byte(prefix>>8), byte(prefix)
	return h
}

func testDir(services ...string) *Directory {
	d := &Directory{}
	for _, s := range services {
		d.Services = append(d.Services, &Service{ID: s, Plan: "enterprise"})
	}
	return d
}

// TestRecordRoundTrip: a key read back from the index is the key put into
// it, every field: times to the nanosecond with their zone, every
// permission bit, the individual map (nil, empty, with entries), the
// revision and the secret hash; through Load and through a write alike.
func TestRecordRoundTrip(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	when := time.Date(2026, 12, 6, 13, 14, 15, 123456789, time.UTC)
	allContent := ContentPerms{Get: true, GetAllDrafts: true, GetAllClosed: true, Post: true, Put: true, Patch: true, Delete: true}
	allManagement := ManagementPerms{GetContents: true, PatchContentCreatedBy: true, PatchContentStatus: true, GetMedia: true,
		PostMedia: true, DeleteMedia: true, GetMembers: true, GetApis: true, GetService: true}
	tests := []struct {
		name string
		key  Key
	}{
		{"zero values", Key{ID: "key_zero", Service: "svc-a"}},
		{"every flag", Key{ID: "key_all", Service: "svc-a", Name: "all", CreatedBy: "alice", Revision: math.MaxUint64,
			ContentAPI: ContentAPI{Default: allContent}, ManagementAPI: allManagement, CreatedAt: when, UpdatedAt: when.Add(time.Nanosecond)}},
		{"single flags", Key{ID: "key_some", Service: "svc-b", Name: "some", CreatedBy: "bob", Revision: 7,
			ContentAPI:    ContentAPI{Default: ContentPerms{GetAllClosed: true, Delete: true}},
			ManagementAPI: ManagementPerms{GetService: true, GetContents: true}, CreatedAt: when, UpdatedAt: when}},
		{"zones", Key{ID: "key_zones", Service: "svc-b", CreatedAt: when.In(tokyo), UpdatedAt: when.In(time.Local)}},
		{"empty individual map", Key{ID: "key_empty", Service: "svc-a", ContentAPI: ContentAPI{Individual: map[string]ContentPerms{}}}},
		{"individual entries", Key{ID: "key_indiv", Service: "svc-a", Name: "名前", CreatedAt: when, UpdatedAt: when,
			ContentAPI: ContentAPI{Default: ContentPerms{Get: true}, Individual: map[string]ContentPerms{
				"blogs": {Get: true, GetAllDrafts: true}, "news": {}, "pages": allContent, "a-very-long-endpoint-name_1": {Patch: true},
			}}}},
	}
	keys := make([]*Key, len(tests))
	for i := range tests {
		tests[i].key.secretHash = hashOf(tests[i].key.ID)
		k := tests[i].key
		k.ContentAPI = k.ContentAPI.Clone()
		if tests[i].key.ContentAPI.Individual != nil && len(tests[i].key.ContentAPI.Individual) == 0 {
			k.ContentAPI.Individual = map[string]ContentPerms{}
		}
		keys[i] = &k
	}
	loaded := testIndex(t, nil)
	if err := loaded.Load(testDir("svc-a", "svc-b"), keys, nil); err != nil {
		t.Fatal(err)
	}
	written := testIndex(t, nil)
	txn := written.Write()
	for _, k := range keys {
		if err := txn.Put(k); err != nil {
			t.Fatal(err)
		}
	}
	txn.Commit()
	for _, ix := range []struct {
		name string
		ix   *index
	}{{"load", loaded}, {"write", written}} {
		for _, tt := range tests {
			t.Run(ix.name+"/"+tt.name, func(t *testing.T) {
				byID, err := ix.ix.keyByID(ix.ix.read(), tt.key.ID)
				if err != nil || byID == nil {
					t.Fatalf("by id: %v %v", byID, err)
				}
				if !reflect.DeepEqual(*byID, tt.key) {
					t.Errorf("by id:\n got %#v\nwant %#v", *byID, tt.key)
				}
				bySecret, err := ix.ix.keyBySecret(ix.ix.read(), tt.key.secretHash)
				if err != nil || bySecret == nil || !reflect.DeepEqual(*bySecret, tt.key) {
					t.Errorf("by secret: %#v %v", bySecret, err)
				}
				ref, ok := (&Store{index: ix.ix}).KeyRefBySecretHash(tt.key.secretHash)
				if !ok ||
					ref.Version() == 0 || !reflect.DeepEqual(ref.Key(), tt.key) {
					t.Errorf("KeyRef: %v %v", ref.Key(), ok)
				}
			})
		}
	}
}

// TestVersionIsPerWrite: every write of a key gives it a new Version, even
// when it writes the same revision again (a restored backup), so that a
// cache keyed by it never answers for another state of the key.
func TestVersionIsPerWrite(t *testing.T) {
	ix := testIndex(t, nil)
	s := &Store{index: ix}
	k := &Key{ID: "key_v", Service: "svc", Revision: 2, secretHash: hashOf("v")}
	seen := map[uint64]bool{}
	for i := range 3 {
		txn := ix.Write()
		k2 := *k
		k2.ContentAPI.Default.Post = i%2 == 0
		if err := txn.Put(&k2); err != nil {
			t.Fatal(err)
		}
		txn.Commit()
		ref, _ := s.KeyRefBySecretHash(k.secretHash)
		if seen[ref.Version()] || ref.Version() == 0 {
			t.Fatalf("write %d: version %d again", i, ref.Version())
		}
		seen[ref.Version()] = true
	}
	if err := ix.Load(testDir("svc"), []*Key{k}, nil); err != nil {
		t.Fatal(err)
	}
	if ref, _ := s.KeyRefBySecretHash(k.secretHash); seen[ref.Version()] {
		t.Fatal("a load reused a version")
	}
}

func countObjects(t *testing.T, txn *memdb.Txn, table string) int {
	t.Helper()
	it, err := txn.Get(table, indexID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for o := it.Next(); o != nil; o = it.Next() {
		n++
	}
	return n
}

// TestBuckets: a bucket exists while it holds an entry: a rotation moves
// the key's entry from the bucket of the old hash's prefix to the new one's
// (the old secret no longer finds it), a delete empties the bucket away,
// and keys of one prefix share one bucket.
func TestBuckets(t *testing.T) {
	type step struct {
		op      string // put, rotate, delete
		id      string
		prefix  uint16
		buckets int // secret buckets after the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"rotate to another bucket", []step{{"put", "key_a", 1, 1}, {"rotate", "key_a", 2, 1}, {"delete", "key_a", 0, 0}}},
		{"two keys share a bucket", []step{{"put", "key_a", 7, 1}, {"put", "key_b", 7, 1}, {"delete", "key_a", 0, 1}, {"delete", "key_b", 0, 0}}},
		{"rotate within a bucket", []step{{"put", "key_a", 3, 1}, {"put", "key_b", 4, 2}, {"rotate", "key_a", 4, 1}, {"rotate", "key_b", 3, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := testIndex(t, nil)
			cur := map[string][32]byte{}
			var gone [][32]byte
			for i, st := range tt.steps {
				txn := ix.Write()
				var err error
				switch st.op {
				case "put", "rotate":
					if old, ok := cur[st.id]; ok {
						gone = append(gone, old)
					}
					h := hashWithPrefix(st.prefix, fmt.Sprint(st.id, i))
					err = txn.Put(&Key{ID: st.id, Service: "svc", secretHash: h})
					cur[st.id] = h
				case "delete":
					gone = append(gone, cur[st.id])
					err = txn.Delete(&Key{ID: st.id, Service: "svc", secretHash: cur[st.id]})
					delete(cur, st.id)
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				txn.Commit()
				r := ix.read()
				if n := countObjects(t, r, tableKeySecrets); n != st.buckets {
					t.Errorf("step %d: %d secret buckets, want %d", i, n, st.buckets)
				}
				for id, h := range cur {
					if k, err := ix.keyBySecret(r, h); err != nil || k == nil || k.ID != id {
						t.Errorf("step %d: secret of %s finds %v %v", i, id, k, err)
					}
				}
				for _, h := range gone {
					if k, _ := ix.keyBySecret(r, h); k != nil && cur[k.ID] != h {
						t.Errorf("step %d: an old secret finds %s", i, k.ID)
					}
				}
			}
		})
	}
}

// TestLoadRefuses: a load with two keys sharing a secret fails naming them
// and changes nothing; of two keys with one id the later one is kept.
func TestLoad(t *testing.T) {
	ix := testIndex(t, nil)
	a := &Key{ID: "key_a", Service: "svc", Name: "first", secretHash: hashOf("a")}
	if err := ix.Load(testDir("svc"), []*Key{a}, nil); err != nil {
		t.Fatal(err)
	}
	b := &Key{ID: "key_b", Service: "svc", secretHash: hashOf("b")}
	c := &Key{ID: "key_c", Service: "svc", secretHash: hashOf("b")}
	err := ix.Load(testDir("svc"), []*Key{b, c}, nil)
	if err == nil || !strings.Contains(err.Error(), `"key_b" and "key_c" share a secret hash`) {
		t.Fatalf("shared secret: %v", err)
	}
	if k, _ := ix.keyByID(ix.read(), "key_a"); k == nil || k.Name != "first" {
		t.Fatalf("a failed load changed the index: %v", k)
	}
	a2 := &Key{ID: "key_a", Service: "svc", Name: "second", secretHash: hashOf("a2")}
	if err := ix.Load(testDir("svc"), []*Key{a, b, a2}, nil); err != nil {
		t.Fatal(err)
	}
	r := ix.read()
	if k, _ := ix.keyByID(r, "key_a"); k == nil || k.Name != "second" {
		t.Fatalf("duplicate id: %v", k)
	}
	if k, _ := ix.keyBySecret(r, a.secretHash); k != nil {
		t.Fatalf("the replaced key's secret finds %v", k)
	}
	if n, _ := keyCount(r, "svc"); n != 2 {
		t.Fatalf("count %d, want 2", n)
	}
}

// randomKey returns a key with random content; individual entries for
// about one key in four, an empty map for some.
func randomKey(rng *rand.Rand, id, service string, rev uint64) *Key {
	eps := []string{"blogs", "news", "pages", "faq", "authors", "tags"}
	k := &Key{ID: id, Service: service, Name: fmt.Sprintf("n%d", rng.IntN(1000)), CreatedBy: fmt.Sprintf("m%d", rng.IntN(5)),
		Revision: rev, CreatedAt: time.Unix(rng.Int64N(2e9), rng.Int64N(1e9)).UTC(), UpdatedAt: time.Unix(rng.Int64N(2e9), rng.Int64N(1e9)).UTC(),
		ContentAPI:    ContentAPI{Default: contentPerms(uint8(rng.IntN(128)))},
		ManagementAPI: managementPerms(uint16(rng.IntN(512))),
	}
	randomHash(rng, &k.secretHash)
	switch rng.IntN(8) {
	case 0, 1:
		k.ContentAPI.Individual = map[string]ContentPerms{}
		for range 1 + rng.IntN(len(eps)) {
			k.ContentAPI.Individual[eps[rng.IntN(len(eps))]] = contentPerms(uint8(rng.IntN(128)))
		}
	case 2:
		k.ContentAPI.Individual = map[string]ContentPerms{}
	}
	return k
}

func randomHash(rng *rand.Rand, h *[32]byte) {
	for i := 0; i < 32; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			h[i+j] = byte(v >> (8 * j))
		}
	}
}

// checkModel compares what txn sees with model (id → key): every key by id
// and by secret, every service's count, the walk of all keys; and that
// the keys and secrets in gone are not found.
func checkModel(t *testing.T, ix *index, txn *memdb.Txn, model map[string]*Key, services []string, goneIDs []string, goneHashes [][32]byte) {
	t.Helper()
	counts := map[string]int{}
	for id, want := range model {
		counts[want.Service]++
		got, err := ix.keyByID(txn, id)
		if err != nil || got == nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("key %s by id:\n got %#v %v\nwant %#v", id, got, err, want)
		}
		got, err = ix.keyBySecret(txn, want.secretHash)
		if err != nil || got == nil || got.ID != id {
			t.Fatalf("key %s by secret: %v %v", id, got, err)
		}
	}
	for _, s := range services {
		if n, err := keyCount(txn, s); err != nil || n != counts[s] {
			t.Fatalf("service %s: count %d %v, want %d", s, n, err, counts[s])
		}
	}
	n := 0
	if err := ix.eachKey(txn, func(k *Key) bool {
		n++
		if !reflect.DeepEqual(k, model[k.ID]) {
			t.Fatalf("walk: %#v, want %#v", k, model[k.ID])
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(model) {
		t.Fatalf("walk: %d keys, want %d", n, len(model))
	}
	if len(model) > 0 {
		stopped := 0
		_ = ix.eachKey(txn, func(*Key) bool { stopped++; return false })
		if stopped != 1 {
			t.Fatalf("the walk went on after fn returned false: %d calls", stopped)
		}
	}
	for _, id := range goneIDs {
		if _, ok := model[id]; ok {
			continue
		}
		if k, err := ix.keyByID(txn, id); k != nil || err != nil {
			t.Fatalf("deleted key %s found: %v %v", id, k, err)
		}
	}
	for _, h := range goneHashes {
		if k, err := ix.keyBySecret(txn, h); err != nil || k != nil && (model[k.ID] == nil || model[k.ID].secretHash != h) {
			t.Fatalf("an old secret finds %v %v", k, err)
		}
	}
}

// TestIndexAgainstModel puts, updates, rotates and deletes keys at random,
// several per transaction, through Write and through Apply, aborting some
// transactions, with services large enough to span several pages, and
// after every commit compares the index with a map of the keys; a snapshot
// taken before each commit must still show the keys as they were; an
// aborted transaction must change nothing. It runs with the real id hash
// and with one under which every id collides.
func TestIndexAgainstModel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		idHash func(string) uint64
		txns   int
	}{
		{"maphash", nil, 1500},
		{"every id collides", func(string) uint64 { return 42 }, 400},
		{"ids collide in pairs", func(s string) uint64 { return uint64(len(s)&1) << 60 }, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			ix := testIndex(t, tc.idHash)
			services := []string{"svc-big", "svc-mid", "svc-small"}
			model := map[string]*Key{}
			var goneIDs []string
			var goneHashes [][32]byte
			nextID := 0
			ids := func() []string { return slices.Sorted(maps.Keys(model)) }
			for n := range tc.txns {
				next := maps.Clone(model)
				var changes []Change
				var ops int
				useApply := rng.IntN(3) == 0
				var txn IndexTxn
				if !useApply {
					txn = ix.Write()
				}
				apply := func(c Change) {
					ops++
					if useApply {
						changes = append(changes, c)
						return
					}
					var err error
					if c.Op == ChangePut {
						err = txn.Put(c.Key)
					} else {
						err = txn.Delete(model2key(next, model, c.KeyID))
					}
					if err != nil {
						t.Fatalf("txn %d: %s: %v", n, c.Op, err)
					}
				}
				for range 1 + rng.IntN(4) {
					cur := slices.Sorted(maps.Keys(next))
					switch op := rng.IntN(10); {
					case op < 5 || len(cur) == 0: // create
						// svc-big gets most keys: several pages
						svc := services[min(rng.IntN(6), 2)]
						id := fmt.Sprintf("key_%d", nextID)
						nextID++
						k := randomKey(rng, id, svc, 1)
						apply(Change{Op: ChangePut, Key: k})
						next[id] = k
					case op < 7: // update, same secret
						old := next[cur[rng.IntN(len(cur))]]
						k := randomKey(rng, old.ID, old.Service, old.Revision+1)
						k.secretHash = old.secretHash
						apply(Change{Op: ChangePut, Key: k})
						next[k.ID] = k
					case op < 8: // rotate
						old := next[cur[rng.IntN(len(cur))]]
						k := *old
						randomHash(rng, &k.secretHash)
						k.Revision++
						goneHashes = append(goneHashes, old.secretHash)
						apply(Change{Op: ChangePut, Key: &k})
						next[k.ID] = &k
					default: // delete
						old := next[cur[rng.IntN(len(cur))]]
						apply(Change{Op: ChangeDelete, KeyID: old.ID})
						delete(next, old.ID)
						goneIDs = append(goneIDs, old.ID)
						goneHashes = append(goneHashes, old.secretHash)
					}
				}
				before := ix.read()
				abort := rng.IntN(8) == 0
				switch {
				case abort && useApply:
					// a batch with a bad change fails whole
					changes = append(changes, Change{Op: "bogus"})
					if err := ix.Apply(changes); err == nil {
						t.Fatal("a bad batch applied")
					}
				case abort:
					txn.Abort()
				case useApply:
					if err := ix.Apply(changes); err != nil {
						t.Fatalf("txn %d: apply: %v", n, err)
					}
				default:
					txn.Commit()
				}
				if !abort {
					if n%10 == 0 {
						checkModel(t, ix, before, model, services, nil, nil)
					}
					model = next
				}
				if n%5 == 0 || abort {
					checkModel(t, ix, ix.read(), model, services, goneIDs, goneHashes)
				}
				if n%300 == 299 {
					// a full reload of what the model holds
					keys := make([]*Key, 0, len(model))
					for _, id := range ids() {
						keys = append(keys, model[id])
					}
					if err := ix.Load(testDir(services...), keys, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			checkModel(t, ix, ix.read(), model, services, goneIDs, goneHashes)
			if c, _ := keyCount(ix.read(), "svc-big"); tc.idHash == nil && c <= 2*pageCap {
				t.Fatalf("svc-big has %d keys: the test must span several pages", c)
			}
		})
	}
}

// model2key returns the key of id as it is in next (or, deleted in this
// transaction already, as it was in model).
func model2key(next, model map[string]*Key, id string) *Key {
	if k, ok := next[id]; ok {
		return k
	}
	return model[id]
}

// TestPagesBounded: a service's keys fill pages of pageCap; a page whose
// keys are all deleted goes away; a write copies one page whatever the
// size of the service.
func TestPagesBounded(t *testing.T) {
	ix := testIndex(t, nil)
	var keys []*Key
	for i := range 5 * pageCap {
		keys = append(keys, &Key{ID: fmt.Sprintf("key_%04d", i), Service: "svc", secretHash: hashOf(fmt.Sprint(i))})
	}
	if err := ix.Load(testDir("svc"), keys, nil); err != nil {
		t.Fatal(err)
	}
	if n := countObjects(t, ix.read(), tableKeyPages); n != 5 {
		t.Fatalf("%d pages for %d keys", n, len(keys))
	}
	txn := ix.Write()
	for _, k := range keys[:pageCap] { // the first page's keys
		if err := txn.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	txn.Commit()
	if n := countObjects(t, ix.read(), tableKeyPages); n != 4 {
		t.Fatalf("%d pages after emptying one, want 4", n)
	}
	txn = ix.Write()
	if err := txn.Put(&Key{ID: "key_new", Service: "svc", secretHash: hashOf("new")}); err != nil {
		t.Fatal(err)
	}
	w := txn.(*indexTxn).w
	pages := 0
	for o := range w.owned {
		if p, ok := o.(*keyPage); ok {
			pages++
			if len(p.recs) > pageCap {
				t.Fatalf("a page of %d records", len(p.recs))
			}
		}
	}
	txn.Commit()
	if pages != 1 {
		t.Fatalf("a create copied %d pages", pages)
	}
	if n, _ := keyCount(ix.read(), "svc"); n != 4*pageCap+1 {
		t.Fatalf("count %d", n)
	}
}
