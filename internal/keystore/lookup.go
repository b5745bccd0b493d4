package keystore

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
// reads a key's id, service and revision from it and materializes the Key
// (Key) only when it has no input built for this version of the key. A
// KeyRef is a small value: looking one up allocates nothing beyond the
// index lookup itself. It stays valid (the key as it was when looked up)
// whatever is written later.
type KeyRef struct {
	ix   *index
	p    *keyPage
	slot int
	k    *Key // a KeyRef of a plain Key (RefOf); nil otherwise
}

// RefOf returns a KeyRef of k, for a key that does not come from a Store's
// index (its Version is 0).
func RefOf(k Key) KeyRef { return KeyRef{k: &k} }

// KeyRefBySecretHash finds the key whose secret has SHA-256 h, without
// materializing it: the decision hot path.
func (s *Store) KeyRefBySecretHash(h [32]byte) (KeyRef, bool) {
	p, i, err := s.findSecret(s.read(), &h)
	if err != nil || p == nil {
		return KeyRef{}, false
	}
	return KeyRef{ix: s.index, p: p, slot: i}, true
}

// ID returns the key's id.
func (r KeyRef) ID() string {
	if r.k != nil {
		return r.k.ID
	}
	return r.p.recs[r.slot].id
}

// Service returns the key's service.
func (r KeyRef) Service() string {
	if r.k != nil {
		return r.k.Service
	}
	return r.p.service
}

// Revision returns the key's revision.
func (r KeyRef) Revision() uint64 {
	if r.k != nil {
		return r.k.Revision
	}
	return r.p.recs[r.slot].revision
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
	return r.p.recs[r.slot].version
}

// Key materializes the key; its Individual map is its own.
func (r KeyRef) Key() Key {
	if r.k != nil {
		return *r.k
	}
	var k Key
	r.ix.fill(&k, r.p, &r.p.recs[r.slot])
	return k
}
