package keystore

import (
	"fmt"
	"hash/maphash"
	"maps"
	"sync"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/keygate/keygate/internal/cachescope"
)

// index is the Store's in-memory view: services, members and keys in
// go-memdb (schema.go), the IP restriction settings, the generation that
// moves with any of them, and the ledger of what each change touched (for
// the decision cache). Lookups read it without a lock; a Backend changes it
// inside its write transaction (local) or through Load and Apply (a change
// feed).
//
// The keys are not one memdb object each (a radix leaf per key and per
// index costs more than the key itself, and gives the collector a pointer
// graph to walk that grows with the store). They are laid out compactly
// (keypage.go), in four memdb tables:
//   - keypages: a page is up to pageCap keys of one service, as keyRec
//     values, which hold no pointer: the secret hash, the id and the name
//     as a range of the page's one byte array of ids and names, times as
//     seconds and nanoseconds with an interned zone, the revision,
//     permissions as bits, the creator interned, and the individual
//     entries as a range of the page's one array of {interned endpoint,
//     permission bits}. A page's key is its service's number and a chunk
//     number, so a service's pages are one prefix (list, walk).
//   - keysecrets: buckets by the first two bytes of the secret hash (at
//     most 65,536), each a sorted array of {hash, locator}; a locator is a
//     page key and a slot. The decision path: one bucket, a binary search,
//     one page, one slot.
//   - keyids: the same by a seeded 64-bit hash of the key id (ids are
//     unique across services); entries whose hashes collide are told apart
//     by the id in the page.
//   - keyservices: per service, its key count (KeyCount, KeyCounts and the
//     plan limit read it: O(1) per service) and its newest chunk.
//
// A key never moves while it exists: an update or a rotation replaces its
// record in its slot; a new key takes a free slot of its service's newest
// page or starts a new page; a delete frees its slot and a page with no
// keys left is deleted. Slots freed in older pages are not reused (a
// service that churns keys can leave pages partly empty; each holds at
// least one key). Pages, buckets and service records are immutable once
// committed: a write transaction copies each one it changes, once (then
// changes its copy in place), so a write costs a page (≤ pageCap records),
// two or three buckets (~15 entries each at a million keys) and a service
// record, whatever the number of keys, and readers keep their snapshot. A
// page's copy gets its arrays of ids, names and entries rebuilt from its
// live records and only ever appends to them, so that the strings read
// from a page (which point into it) never change.
// Load builds every page and bucket in one pass, carving records, entries
// and buckets out of a few large arrays (and one byte array of ids and
// names per page), and inserts those objects, not the keys. None of these
// arrays holds a pointer: the collector marks them without scanning them,
// and they are counted by the page, not by the key. The interned names
// only grow (endpoint names and member ids ever seen: far fewer than keys).
//
// Every change, whichever driver makes it, ends in one of Load, Apply,
// ReplaceDirectory or indexTxn.Commit, and each of them touches the ledger
// after the change is visible to lookups (the memdb commit together with
// the replacement of the shared read view, in commit; and the IP settings
// swap) and before it returns, hence before the write is answered (a
// backend answers only after these return; the PostgreSQL writer waits
// until its change has come back through Apply):
//   - a key put or delete touches the secret hash the key had before the
//     change (read from the index before it is replaced) and the one it
//     has after;
//   - an IP restriction change touches its service;
//   - Load and ReplaceDirectory (data reload, full resync) touch everything.
//
// Why that is sound: the decision cache reads a question's stamp (its
// service's and its secret's slots, and the epoch) BEFORE it looks the key
// and the IP settings up, and serves an entry only while its stamp is still
// current. A decision computed from state older than a change made its
// lookups before the commit, so it read its stamp before the commit, hence
// before the touch that follows the commit: its stamp is older than the
// touched slot, and once the touch is done (before the write is answered)
// that entry can no longer hit. A decision whose stamp was read after the
// touch looked up state at least as new as the change (the view it reads
// was replaced before the touch, and a view is never replaced by an older
// one: commit orders them). A question not touched by a change (another
// secret, another service) keeps its entries.
type index struct {
	db *memdb.MemDB
	// view is a read transaction on the latest commit, shared by the
	// hot-path lookups (a read transaction only reads immutable trees);
	// it is replaced after every commit, before the ledger is touched.
	view   atomic.Pointer[memdb.Txn]
	viewMu sync.Mutex // orders commits and view replacements alike
	gen    atomic.Uint64
	ip     *ipStore
	scopes *cachescope.Ledger

	// names interns endpoint names and creators; locs the time zones of
	// key times. Both only grow.
	names *interner
	locs  *locations
	// idHash places key ids in the id buckets (a seeded maphash; tests
	// replace it to make ids collide).
	idHash func(string) uint64
	// version numbers every key state written (secretEnt.version).
	version atomic.Uint64
	// nextSvc is the number the next service with keys gets; changed
	// only in memdb write transactions, which memdb serializes.
	nextSvc uint32
}

var _ Index = (*index)(nil)

func newIndex() (*index, error) {
	db, err := memdb.NewMemDB(newSchema())
	if err != nil {
		return nil, fmt.Errorf("keystore: schema: %w", err)
	}
	seed := maphash.MakeSeed()
	ix := &index{db: db, ip: &ipStore{}, scopes: cachescope.New(), names: newInterner(), locs: newLocations(),
		idHash: func(id string) uint64 { return maphash.String(seed, id) }}
	ix.ip.cur.Store(&ipState{rev: 1, services: map[string]*IPRestrictions{}})
	ix.gen.Store(1)
	ix.view.Store(db.Txn(false))
	return ix, nil
}

// read returns a read transaction on the latest commit.
func (ix *index) read() *memdb.Txn { return ix.view.Load() }

// commit commits txn and publishes it to the lookups.
func (ix *index) commit(txn *memdb.Txn) {
	// Under viewMu, so that a view taken after one commit never replaces
	// the view of a later one.
	ix.viewMu.Lock()
	defer ix.viewMu.Unlock()
	txn.Commit()
	ix.view.Store(ix.db.Txn(false))
}

// Load implements Index. It builds the pages and buckets of all keys in
// one pass (build) and inserts them, not the keys, into memdb.
func (ix *index) Load(dir *Directory, keys []*Key, ip map[string]*IPRestrictions) error {
	b, err := ix.build(keys)
	if err != nil {
		return err
	}
	txn := ix.db.Txn(true)
	defer txn.Abort()
	for _, t := range []string{tableKeyPages, tableKeySecrets, tableKeyIDs, tableKeyServices, tableMembers, tableServices} {
		if _, err := txn.DeleteAll(t, indexID); err != nil {
			return fmt.Errorf("clear %s: %w", t, err)
		}
	}
	if err := insertDirectory(txn, dir); err != nil {
		return err
	}
	if err := b.insert(txn); err != nil {
		return err
	}
	ix.nextSvc = uint32(len(b.services))
	ix.commit(txn)
	if ip == nil {
		ip = map[string]*IPRestrictions{}
	}
	ix.ip.cur.Store(&ipState{rev: ix.ip.cur.Load().rev + 1, services: ip})
	ix.scopes.TouchAll()
	ix.gen.Add(1)
	return nil
}

// CacheScopes returns the ledger the index touches after each change is
// visible and before it is answered (see index); the decision cache scopes
// its invalidation by it.
func (ix *index) CacheScopes() *cachescope.Ledger { return ix.scopes }

// Apply implements Index. IP restriction settings of the batch are swapped
// in together, before the generation moves.
func (ix *index) Apply(changes []Change) error {
	txn := ix.db.Txn(true)
	defer txn.Abort()
	w := newKeyWriter(ix, txn)
	var ip *ipState
	// What the batch touches, applied to the ledger after the commit.
	var hashes [][32]byte
	var services []string
	for i, c := range changes {
		switch c.Op {
		case ChangeIP:
			if ip == nil {
				cur := ix.ip.cur.Load()
				ip = &ipState{rev: cur.rev + 1, services: maps.Clone(cur.services)}
			}
			if c.IP == nil || (len(c.IP.Default) == 0 && len(c.IP.APIs) == 0) {
				delete(ip.services, c.Service)
			} else {
				ip.services[c.Service] = c.IP
			}
			services = append(services, c.Service)
		case ChangePut:
			if c.Key == nil {
				return fmt.Errorf("change %d: put without a key", i)
			}
			old, err := w.put(c.Key)
			if err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			if old != nil {
				hashes = append(hashes, *old)
			}
			hashes = append(hashes, c.Key.secretHash)
		case ChangeDelete:
			h, found, err := w.del(c.KeyID)
			if err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			if found {
				hashes = append(hashes, h)
			}
		default:
			return fmt.Errorf("change %d: unknown op %q", i, c.Op)
		}
	}
	ix.commit(txn)
	if ip != nil {
		ix.ip.cur.Store(ip)
	}
	ix.touch(hashes, services)
	ix.gen.Add(1)
	return nil
}

// touch records in the ledger a committed change to the keys with secret
// hashes and to the IP settings of services (see index for when).
func (ix *index) touch(hashes [][32]byte, services []string) {
	for _, h := range hashes {
		ix.scopes.TouchSecret(h)
	}
	for _, id := range services {
		ix.scopes.TouchService(id)
	}
}

// ReplaceDirectory implements Index.
func (ix *index) ReplaceDirectory(dir *Directory) error {
	txn := ix.db.Txn(true)
	defer txn.Abort()
	if _, err := txn.DeleteAll(tableServices, indexID); err != nil {
		return err
	}
	if _, err := txn.DeleteAll(tableMembers, indexID); err != nil {
		return err
	}
	if err := insertDirectory(txn, dir); err != nil {
		return err
	}
	ix.commit(txn)
	ix.scopes.TouchAll()
	ix.gen.Add(1)
	return nil
}

// Keys implements Index: every key, materialized from the pages.
func (ix *index) Keys() []*Key {
	var keys []*Key
	_ = ix.eachKey(ix.read(), func(k *Key) bool {
		keys = append(keys, k)
		return true
	})
	return keys
}

// EachKey implements Index.
func (ix *index) EachKey(fn func(*Key) bool) { _ = ix.eachKey(ix.read(), fn) }

// IPRestrictions implements Index.
func (ix *index) IPRestrictions() map[string]*IPRestrictions { return ix.ip.cur.Load().services }

// Write implements Index.
func (ix *index) Write() IndexTxn {
	txn := ix.db.Txn(true)
	return &indexTxn{ix: ix, txn: txn, w: newKeyWriter(ix, txn)}
}

// indexTxn is a memdb write transaction on the index. It remembers the
// secret hashes its puts and deletes change, for the ledger at Commit.
type indexTxn struct {
	ix     *index
	txn    *memdb.Txn
	w      *keyWriter
	hashes [][32]byte
}

func (t *indexTxn) Member(h [32]byte) (*Member, error) {
	raw, err := t.txn.First(tableMembers, indexToken, &h)
	if err != nil || raw == nil {
		return nil, err
	}
	return raw.(*Member), nil
}

func (t *indexTxn) Service(id string) (*Service, int, error) {
	raw, err := t.txn.First(tableServices, indexID, id)
	if err != nil || raw == nil {
		return nil, 0, err
	}
	n, err := keyCount(t.txn, id)
	if err != nil {
		return nil, 0, err
	}
	return raw.(*Service), n, nil
}

func (t *indexTxn) Key(id string) (*Key, error) { return t.ix.keyByID(t.txn, id) }

func (t *indexTxn) KeyBySecret(h [32]byte) (*Key, error) { return t.ix.keyBySecret(t.txn, h) }

// Put inserts or replaces k; the key it replaces (same id) and k itself
// name the secret hashes the write changes.
func (t *indexTxn) Put(k *Key) error {
	old, err := t.w.put(k)
	if err != nil {
		return err
	}
	if old != nil {
		t.hashes = append(t.hashes, *old)
	}
	t.hashes = append(t.hashes, k.secretHash)
	return nil
}

// Delete deletes k (the key of its id); the secret hash of the key it
// deletes is the one the write changes.
func (t *indexTxn) Delete(k *Key) error {
	h, found, err := t.w.del(k.ID)
	if err != nil {
		return err
	}
	if !found {
		return memdb.ErrNotFound
	}
	t.hashes = append(t.hashes, h, k.secretHash)
	return nil
}

// Commit publishes the changes, touches the secret hashes they changed
// (after they are visible, before the caller answers: see index) and moves
// the generation.
func (t *indexTxn) Commit() {
	t.ix.commit(t.txn)
	t.ix.touch(t.hashes, nil)
	t.hashes = nil
	t.ix.gen.Add(1)
}

func (t *indexTxn) Abort() { t.txn.Abort() }
