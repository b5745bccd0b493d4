package keystore

import (
	"unsafe"

	memdb "github.com/hashicorp/go-memdb"
)

// KeyByID returns a key by id, as it is now: for replaying logged
// decisions, which name keys by id (never by secret).
func (s *Store) KeyByID(id string) (Key, bool) {
	k, err := s.keyByID(s.read(), id)
	if err != nil || k == nil {
		return Key{}, false
	}
	return *k, true
}

// KeyRef is a key as the index holds it, read in place: the decision path
// looks a secret up to its key's Version (one bucket of the secret index)
// and reads the key itself (Key, or ID, Service, Revision: each reads the
// key's page) only when it has no input built for that Version. Looking a
// KeyRef up allocates nothing beyond the index lookup. A KeyRef is the key
// as it was when it was looked up, whatever is written later.
type KeyRef struct {
	ix  *index
	txn *memdb.Txn // the read transaction it was found in
	e   *secretEnt // its entry in the secret index (committed: immutable)
	k   *Key       // a KeyRef of a plain Key (RefOf); nil otherwise
}

// RefOf returns a KeyRef of k, for a key that does not come from a Store's
// index (its Version is 0).
func RefOf(k Key) KeyRef { return KeyRef{k: &k} }

// KeyRefBySecretHash finds the key whose secret has SHA-256 h, without
// reading the key: the decision hot path.
func (s *Store) KeyRefBySecretHash(h [32]byte) (KeyRef, bool) {
	txn := s.read()
	e, err := secretEntry(txn, &h)
	if err != nil || e == nil {
		return KeyRef{}, false
	}
	return KeyRef{ix: s.index, txn: txn, e: e}, true
}

// Version identifies this state of the key in its Store: two KeyRefs with
// the same non-zero Version are the same key with the same content (every
// write and every load gives the key a new one, so it tells apart states
// that share a revision number, as a restored backup makes them). 0 for a
// KeyRef of a plain Key (RefOf): compare its Key then.
func (r KeyRef) Version() uint64 {
	if r.k != nil {
		return 0
	}
	return r.e.version
}

// Key materializes the key; its Individual map is its own, and so are its
// id and name (one small copy of both, not strings over its page's bytes:
// the decision path keeps what it builds from a key per key version, long
// after later writes replaced the page, and a string over the page would
// keep all the page's ids and names alive with it). A key the index no
// longer holds consistently (a bug) comes back as the zero Key.
func (r KeyRef) Key() Key {
	if r.k != nil {
		return *r.k
	}
	var k Key
	if p, i, err := r.ix.resolve(r.txn, r.e); err == nil {
		r.ix.fill(&k, p, &p.recs[i])
		k.ID, k.Name = copyStrings(k.ID, k.Name)
	}
	return k
}

// copyStrings returns copies of a and b sharing one new allocation.
func copyStrings(a, b string) (string, string) {
	if len(a)+len(b) == 0 {
		return a, b
	}
	buf := make([]byte, len(a)+len(b))
	copy(buf, a)
	copy(buf[len(a):], b)
	s := unsafe.String(unsafe.SliceData(buf), len(buf))
	return s[:len(a)], s[len(a):]
}
