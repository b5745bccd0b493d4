package keystore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	memdb "github.com/hashicorp/go-memdb"
)

// The compact key layout (see index for the whole picture). A key is one
// keyRec in a keyPage; a page holds up to pageCap keys of one service and is
// one memdb object. Two bucket tables find a key's page and slot (its
// locator) by secret hash and by id, and a per-service object counts the
// service's keys and names its newest page.

// pageCap is the number of key slots of a page: a write copies one page,
// so it bounds a write's copying whatever the size of the service.
const pageCap = 64

// pageKey names a page in memdb: its service's number and its chunk
// number, big-endian, so that a service's pages share a 4-byte prefix.
type pageKey [8]byte

func newPageKey(svc, chunk uint32) pageKey {
	var k pageKey
	binary.BigEndian.PutUint32(k[:4], svc)
	binary.BigEndian.PutUint32(k[4:], chunk)
	return k
}

func (k pageKey) svc() uint32   { return binary.BigEndian.Uint32(k[:4]) }
func (k pageKey) chunk() uint32 { return binary.BigEndian.Uint32(k[4:]) }

// locator is where a key is: its page and its slot in the page. A key
// never moves while it exists: a write replaces its record in place.
type locator struct {
	page pageKey
	slot uint16
}

// indivEnt is one individual permission entry of a key: the interned
// endpoint name in the upper 24 bits, the content permission bits below.
type indivEnt uint32

func newIndivEnt(ep uint32, perms uint8) indivEnt { return indivEnt(ep<<8 | uint32(perms)) }
func (e indivEnt) endpoint() uint32               { return uint32(e) >> 8 }
func (e indivEnt) perms() uint8                   { return uint8(e) }

// maxInterned bounds the interned endpoint names and creators (24 bits of
// an indivEnt).
const maxInterned = 1 << 24

// Record flags.
const (
	// recIndivMap: the key's Individual map is an empty map, not nil
	// (with entries it is always a map).
	recIndivMap = 1 << iota
)

// maxRecString bounds a key's id and its name (16 bits of a keyRec; the
// key spec allows far shorter ones).
const maxRecString = 1<<16 - 1

// keyRec is one key, without pointers (so that an array of them is memory
// the collector does not scan): the id and the name as a range of the
// page's strs, the id first; times as seconds and nanoseconds with an
// interned location; permissions as bits; the creator interned; individual
// entries as a range of the page's indiv array. A free slot has an empty
// id.
type keyRec struct {
	hash       [32]byte
	createdSec int64
	updatedSec int64
	revision   uint64
	createdNs  uint32
	updatedNs  uint32
	createdBy  uint32
	indivOff   uint32
	strOff     uint32
	idLen      uint16
	nameLen    uint16
	indivN     uint16
	perms      uint16 // content default (7 bits) | management (9 bits) << 7
	createdLoc uint8
	updatedLoc uint8
	flags      uint8
}

func (r *keyRec) free() bool { return r.idLen == 0 }

// keyPage is up to pageCap keys of one service. It is immutable once
// committed: a write copies it (copy-on-write keeps memdb's snapshots).
//
// Its three arrays hold no pointers. The ids and names read from a page
// (materialize, findID) are strings that point into its strs, not
// copies: strs is only ever appended to, by the write transaction that
// owns the page, and never rewritten (a write copies a committed page's
// strs; compact makes new arrays), so such a string never changes. Each
// page has strs of its own, so a string kept by a caller keeps one page's
// bytes alive, not a whole Load's.
type keyPage struct {
	key     pageKey
	service string
	live    int
	recs    []keyRec   // len ≤ pageCap; trailing free slots are trimmed
	indiv   []indivEnt // the records' individual entries
	strs    []byte     // the records' ids and names
}

func (p *keyPage) loc(slot int) locator { return locator{page: p.key, slot: uint16(slot)} }

// id and name return record r's id and name: strings over p.strs (see
// keyPage for why they stay valid and unchanged).
func (p *keyPage) id(r *keyRec) string { return p.str(r.strOff, r.idLen) }

func (p *keyPage) name(r *keyRec) string { return p.str(r.strOff+uint32(r.idLen), r.nameLen) }

func (p *keyPage) str(off uint32, n uint16) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&p.strs[off], int(n))
}

// clone copies p for a write; its indiv and strs are rebuilt from the live
// records (compact).
func (p *keyPage) clone() *keyPage {
	c := &keyPage{key: p.key, service: p.service, live: p.live, recs: make([]keyRec, len(p.recs), min(len(p.recs)+1, pageCap)),
		indiv: p.indiv, strs: p.strs}
	copy(c.recs, p.recs)
	c.compact()
	return c
}

// liveSizes returns the number of individual entries and of id and name
// bytes of p's records.
func (p *keyPage) liveSizes() (indiv, strs int) {
	for i := range p.recs {
		indiv += int(p.recs[i].indivN)
		strs += int(p.recs[i].idLen) + int(p.recs[i].nameLen)
	}
	return indiv, strs
}

// strsHeadroom is the room a page's copy leaves in its strs for the key
// the write puts: most ids and names fit, and the write appends them
// without another allocation.
const strsHeadroom = 64

// compact replaces p's indiv and strs with new arrays holding only its
// records' entries, ids and names (a replaced or deleted record's are left
// behind), and strsHeadroom spare bytes. The old arrays are not changed:
// strings read from them stay as they are.
func (p *keyPage) compact() {
	nIndiv, nStrs := p.liveSizes()
	var indiv []indivEnt
	if nIndiv > 0 {
		indiv = make([]indivEnt, 0, nIndiv)
	}
	strs := make([]byte, 0, nStrs+strsHeadroom)
	for i := range p.recs {
		r := &p.recs[i]
		if r.indivN == 0 {
			r.indivOff = 0
		} else {
			off := len(indiv)
			indiv = append(indiv, p.indiv[r.indivOff:r.indivOff+uint32(r.indivN)]...)
			r.indivOff = uint32(off)
		}
		n := uint32(r.idLen) + uint32(r.nameLen)
		if n == 0 {
			r.strOff = 0
		} else {
			off := len(strs)
			strs = append(strs, p.strs[r.strOff:r.strOff+n]...)
			r.strOff = uint32(off)
		}
	}
	p.indiv, p.strs = indiv, strs
}

// compactIfSparse compacts p when most of its indiv or strs belongs to no
// record: a transaction that rewrites one key many times (a batch of
// updates) keeps the page's arrays bounded by its live records.
func (p *keyPage) compactIfSparse() {
	nIndiv, nStrs := p.liveSizes()
	if len(p.indiv) > 2*nIndiv+64 || len(p.strs) > 2*nStrs+512 {
		p.compact()
	}
}

// svcKeys is a service's key count and its newest page's chunk number.
type svcKeys struct {
	service string
	svc     uint32
	n       int
	last    uint32
}

// secretEnt and idEnt are bucket entries; a bucket holds the entries
// whose key (hash, id hash) starts with its 2-byte prefix, sorted.
//
// A secret entry also carries the key's version: a number unique per key
// state written into this index (every write and every load gives the key
// a new one), so that the decision path can tell whether it has the key's
// input already without reading the page.
type secretEnt struct {
	hash    [32]byte
	version uint64
	loc     locator
}

type idEnt struct {
	h   uint64
	loc locator
}

type secretBucket struct {
	prefix [2]byte
	ents   []secretEnt
}

type idBucket struct {
	prefix [2]byte
	ents   []idEnt
}

func idPrefix(h uint64) [2]byte { return [2]byte{byte(h >> 56), byte(h >> 48)} }

// search returns the first entry index not less than h.
func (b *secretBucket) search(h *[32]byte) int {
	return sort.Search(len(b.ents), func(i int) bool { return bytes.Compare(b.ents[i].hash[:], h[:]) >= 0 })
}

func (b *idBucket) search(h uint64) int {
	return sort.Search(len(b.ents), func(i int) bool { return b.ents[i].h >= h })
}

// interner maps strings to dense numbers and back. It only grows; readers
// look numbers up without a lock (the list is replaced atomically and an
// append never writes below the length a reader holds).
type interner struct {
	mu   sync.Mutex
	ids  map[string]uint32
	list atomic.Pointer[[]string]
}

func newInterner() *interner {
	in := &interner{ids: map[string]uint32{}}
	in.list.Store(&[]string{})
	return in
}

func (in *interner) id(s string) (uint32, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if id, ok := in.ids[s]; ok {
		return id, nil
	}
	l := *in.list.Load()
	if len(l) >= maxInterned {
		return 0, fmt.Errorf("more than %d distinct endpoint and member names", maxInterned)
	}
	id := uint32(len(l))
	l = append(l, s)
	in.ids[s] = id
	in.list.Store(&l)
	return id, nil
}

func (in *interner) str(id uint32) string { return (*in.list.Load())[id] }

// locations interns the time zones of key times (in practice UTC and
// Local). Number 0 is UTC.
type locations struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*time.Location]
}

func newLocations() *locations {
	l := &locations{}
	l.list.Store(&[]*time.Location{nil})
	return l
}

func (l *locations) id(loc *time.Location) uint8 {
	if loc == time.UTC {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	list := *l.list.Load()
	for i, x := range list {
		if x == loc {
			return uint8(i)
		}
	}
	if len(list) > 255 {
		// More zones than a byte numbers: times in further zones are
		// kept in UTC (the same instant).
		return 0
	}
	list = append(list, loc)
	l.list.Store(&list)
	return uint8(len(list) - 1)
}

func (l *locations) at(id uint8, sec int64, ns uint32) time.Time {
	t := time.Unix(sec, int64(ns))
	if id == 0 {
		return t.UTC()
	}
	return t.In((*l.list.Load())[id])
}

// Permission bits.

func contentBits(p ContentPerms) uint8 {
	return b2u(p.Get, 0) | b2u(p.GetAllDrafts, 1) | b2u(p.GetAllClosed, 2) | b2u(p.Post, 3) |
		b2u(p.Put, 4) | b2u(p.Patch, 5) | b2u(p.Delete, 6)
}

func contentPerms(b uint8) ContentPerms {
	return ContentPerms{Get: b&1 != 0, GetAllDrafts: b&2 != 0, GetAllClosed: b&4 != 0, Post: b&8 != 0,
		Put: b&16 != 0, Patch: b&32 != 0, Delete: b&64 != 0}
}

func managementBits(p ManagementPerms) uint16 {
	return uint16(b2u(p.GetContents, 0)|b2u(p.PatchContentCreatedBy, 1)|b2u(p.PatchContentStatus, 2)|
		b2u(p.GetMedia, 3)|b2u(p.PostMedia, 4)|b2u(p.DeleteMedia, 5)|b2u(p.GetMembers, 6)|b2u(p.GetApis, 7)) |
		uint16(b2u(p.GetService, 0))<<8
}

func managementPerms(b uint16) ManagementPerms {
	return ManagementPerms{GetContents: b&1 != 0, PatchContentCreatedBy: b&2 != 0, PatchContentStatus: b&4 != 0,
		GetMedia: b&8 != 0, PostMedia: b&16 != 0, DeleteMedia: b&32 != 0, GetMembers: b&64 != 0, GetApis: b&128 != 0,
		GetService: b&256 != 0}
}

func b2u(b bool, i uint) uint8 {
	if b {
		return 1 << i
	}
	return 0
}

// encode makes k's record, appending its individual entries to *indiv and
// its id and name to *strs.
func (ix *index) encode(k *Key, indiv *[]indivEnt, strs *[]byte) (keyRec, error) {
	if len(k.ID) > maxRecString || len(k.Name) > maxRecString {
		return keyRec{}, fmt.Errorf("key %.64s: id or name longer than %d bytes", k.ID, maxRecString)
	}
	r := keyRec{
		hash: k.secretHash, revision: k.Revision,
		createdSec: k.CreatedAt.Unix(), createdNs: uint32(k.CreatedAt.Nanosecond()), createdLoc: ix.locs.id(k.CreatedAt.Location()),
		updatedSec: k.UpdatedAt.Unix(), updatedNs: uint32(k.UpdatedAt.Nanosecond()), updatedLoc: ix.locs.id(k.UpdatedAt.Location()),
		perms: uint16(contentBits(k.ContentAPI.Default)) | managementBits(k.ManagementAPI)<<7,
	}
	var err error
	if r.createdBy, err = ix.names.id(k.CreatedBy); err != nil {
		return keyRec{}, err
	}
	if k.ContentAPI.Individual != nil && len(k.ContentAPI.Individual) == 0 {
		r.flags |= recIndivMap
	}
	r.strOff, r.idLen, r.nameLen = uint32(len(*strs)), uint16(len(k.ID)), uint16(len(k.Name))
	*strs = append(*strs, k.ID...)
	*strs = append(*strs, k.Name...)
	if n := len(k.ContentAPI.Individual); n > 0 {
		if n > 1<<16-1 {
			return keyRec{}, fmt.Errorf("key %s: %d individual entries", k.ID, n)
		}
		r.indivOff, r.indivN = uint32(len(*indiv)), uint16(n)
		for ep, p := range k.ContentAPI.Individual {
			id, err := ix.names.id(ep)
			if err != nil {
				return keyRec{}, err
			}
			*indiv = append(*indiv, newIndivEnt(id, contentBits(p)))
		}
	}
	return r, nil
}

// materialize returns the key of record r of page p, with an Individual
// map of its own.
func (ix *index) materialize(p *keyPage, r *keyRec) *Key {
	k := &Key{}
	ix.fill(k, p, r)
	return k
}

func (ix *index) fill(k *Key, p *keyPage, r *keyRec) {
	*k = Key{
		ID: p.id(r), Service: p.service, Name: p.name(r), CreatedBy: ix.names.str(r.createdBy), Revision: r.revision,
		CreatedAt:     ix.locs.at(r.createdLoc, r.createdSec, r.createdNs),
		UpdatedAt:     ix.locs.at(r.updatedLoc, r.updatedSec, r.updatedNs),
		ManagementAPI: managementPerms(r.perms >> 7),
		secretHash:    r.hash,
	}
	k.ContentAPI.Default = contentPerms(uint8(r.perms & 0x7f))
	if r.indivN > 0 {
		k.ContentAPI.Individual = make(map[string]ContentPerms, r.indivN)
		for _, e := range p.indiv[r.indivOff : r.indivOff+uint32(r.indivN)] {
			k.ContentAPI.Individual[ix.names.str(e.endpoint())] = contentPerms(e.perms())
		}
	} else if r.flags&recIndivMap != 0 {
		k.ContentAPI.Individual = map[string]ContentPerms{}
	}
}

// Reads, in any memdb transaction (a write transaction sees its own writes).

func (ix *index) page(txn *memdb.Txn, k *pageKey) (*keyPage, error) {
	raw, err := txn.First(tableKeyPages, indexID, k)
	if err != nil || raw == nil {
		return nil, err
	}
	return raw.(*keyPage), nil
}

// secretEntry returns the secret index's entry of h; nil when no key has
// that secret. The entry belongs to a committed bucket when txn is a read
// transaction: it does not change.
func secretEntry(txn *memdb.Txn, h *[32]byte) (*secretEnt, error) {
	raw, err := txn.First(tableKeySecrets, indexID, h)
	if err != nil || raw == nil {
		return nil, err
	}
	b := raw.(*secretBucket)
	i := b.search(h)
	if i == len(b.ents) || b.ents[i].hash != *h {
		return nil, nil
	}
	return &b.ents[i], nil
}

// findSecret returns the page and slot of the key whose secret has SHA-256
// h; nil when there is none.
func (ix *index) findSecret(txn *memdb.Txn, h *[32]byte) (*keyPage, int, error) {
	e, err := secretEntry(txn, h)
	if err != nil || e == nil {
		return nil, 0, err
	}
	return ix.resolve(txn, e)
}

// resolve returns the page and slot of the key of secret entry e.
func (ix *index) resolve(txn *memdb.Txn, e *secretEnt) (*keyPage, int, error) {
	h := &e.hash
	p, err := ix.page(txn, &e.loc.page)
	if err != nil {
		return nil, 0, err
	}
	if p == nil || int(e.loc.slot) >= len(p.recs) || p.recs[e.loc.slot].hash != *h || p.recs[e.loc.slot].free() {
		return nil, 0, fmt.Errorf("secret index names a missing key")
	}
	return p, int(e.loc.slot), nil
}

// findID returns the page and slot of key id; nil when there is none.
func (ix *index) findID(txn *memdb.Txn, id string) (*keyPage, int, error) {
	h := ix.idHash(id)
	raw, err := txn.First(tableKeyIDs, indexID, idPrefix(h))
	if err != nil || raw == nil {
		return nil, 0, err
	}
	b := raw.(*idBucket)
	for i := b.search(h); i < len(b.ents) && b.ents[i].h == h; i++ {
		e := &b.ents[i]
		p, err := ix.page(txn, &e.loc.page)
		if err != nil {
			return nil, 0, err
		}
		if p == nil || int(e.loc.slot) >= len(p.recs) {
			return nil, 0, fmt.Errorf("id index names a missing key")
		}
		if p.id(&p.recs[e.loc.slot]) == id {
			return p, int(e.loc.slot), nil
		}
	}
	return nil, 0, nil
}

func (ix *index) keyByID(txn *memdb.Txn, id string) (*Key, error) {
	p, i, err := ix.findID(txn, id)
	if err != nil || p == nil {
		return nil, err
	}
	return ix.materialize(p, &p.recs[i]), nil
}

func (ix *index) keyBySecret(txn *memdb.Txn, h [32]byte) (*Key, error) {
	p, i, err := ix.findSecret(txn, &h)
	if err != nil || p == nil {
		return nil, err
	}
	return ix.materialize(p, &p.recs[i]), nil
}

func svcKeysOf(txn *memdb.Txn, service string) (*svcKeys, error) {
	raw, err := txn.First(tableKeyServices, indexID, service)
	if err != nil || raw == nil {
		return nil, err
	}
	return raw.(*svcKeys), nil
}

// keyCount returns the number of keys of service: one lookup.
func keyCount(txn *memdb.Txn, service string) (int, error) {
	sk, err := svcKeysOf(txn, service)
	if err != nil || sk == nil {
		return 0, err
	}
	return sk.n, nil
}

// serviceKeys returns the keys of service (unsorted).
func (ix *index) serviceKeys(txn *memdb.Txn, service string) ([]*Key, error) {
	sk, err := svcKeysOf(txn, service)
	if err != nil || sk == nil {
		return nil, err
	}
	it, err := txn.Get(tableKeyPages, indexID+"_prefix", svcPrefix(sk.svc))
	if err != nil {
		return nil, err
	}
	keys := make([]*Key, 0, sk.n)
	for o := it.Next(); o != nil; o = it.Next() {
		p := o.(*keyPage)
		for i := range p.recs {
			if !p.recs[i].free() {
				keys = append(keys, ix.materialize(p, &p.recs[i]))
			}
		}
	}
	return keys, nil
}

// eachKey calls fn with every key of txn's snapshot until it returns false.
func (ix *index) eachKey(txn *memdb.Txn, fn func(*Key) bool) error {
	it, err := txn.Get(tableKeyPages, indexID)
	if err != nil {
		return err
	}
	for o := it.Next(); o != nil; o = it.Next() {
		p := o.(*keyPage)
		for i := range p.recs {
			if !p.recs[i].free() && !fn(ix.materialize(p, &p.recs[i])) {
				return nil
			}
		}
	}
	return nil
}

// keyWriter changes the keys in a memdb write transaction, copying each
// page, bucket and service record it changes once per transaction (owned:
// the copies the transaction made, not yet seen by any reader, which it may
// change in place).
type keyWriter struct {
	ix    *index
	txn   *memdb.Txn
	owned map[any]struct{}
}

func newKeyWriter(ix *index, txn *memdb.Txn) *keyWriter {
	return &keyWriter{ix: ix, txn: txn, owned: map[any]struct{}{}}
}

func (w *keyWriter) own(o any) { w.owned[o] = struct{}{} }

func (w *keyWriter) isOwned(o any) bool { _, ok := w.owned[o]; return ok }

func (w *keyWriter) ownPage(p *keyPage) *keyPage {
	if w.isOwned(p) {
		return p
	}
	c := p.clone()
	w.own(c)
	return c
}

// put inserts or replaces k. It returns the secret hash of the key it
// replaced (nil for a new key). A secret hash another key has fails it.
func (w *keyWriter) put(k *Key) (*[32]byte, error) {
	p, slot, err := w.ix.findID(w.txn, k.ID)
	if err != nil {
		return nil, err
	}
	if p != nil && p.service != k.Service {
		// A key does not change service; if a change says so, it is a
		// delete and an insert.
		old := p.recs[slot].hash
		if _, _, err := w.del(k.ID); err != nil {
			return nil, err
		}
		if _, err := w.insert(k); err != nil {
			return nil, err
		}
		return &old, nil
	}
	if p == nil {
		_, err := w.insert(k)
		return nil, err
	}
	old := p.recs[slot].hash
	if old != k.secretHash {
		if q, err := secretEntry(w.txn, &k.secretHash); err != nil {
			return nil, err
		} else if q != nil {
			return nil, fmt.Errorf("key %s: secret hash in use by another key", k.ID)
		}
	}
	c := w.ownPage(p)
	if err := w.setRec(c, slot, k); err != nil {
		return nil, err
	}
	if err := w.txn.Insert(tableKeyPages, c); err != nil {
		return nil, err
	}
	if err := w.removeSecret(&old, c.loc(slot)); err != nil {
		return nil, err
	}
	if err := w.addSecret(&k.secretHash, c.loc(slot)); err != nil {
		return nil, err
	}
	return &old, nil
}

func (w *keyWriter) setRec(c *keyPage, slot int, k *Key) error {
	r, err := w.ix.encode(k, &c.indiv, &c.strs)
	if err != nil {
		return err
	}
	c.recs[slot] = r
	c.compactIfSparse()
	return nil
}

// insert adds new key k to its service's newest page, or to a new page.
func (w *keyWriter) insert(k *Key) (locator, error) {
	if q, err := secretEntry(w.txn, &k.secretHash); err != nil {
		return locator{}, err
	} else if q != nil {
		return locator{}, fmt.Errorf("key %s: secret hash in use by another key", k.ID)
	}
	sk, err := w.ownService(k.Service)
	if err != nil {
		return locator{}, err
	}
	var c *keyPage
	if sk.n > 0 {
		pk := newPageKey(sk.svc, sk.last)
		p, err := w.ix.page(w.txn, &pk)
		if err != nil {
			return locator{}, err
		}
		if p != nil && p.live < pageCap {
			c = w.ownPage(p)
		}
	}
	if c == nil {
		if sk.n > 0 || sk.last > 0 {
			sk.last++
		}
		c = &keyPage{key: newPageKey(sk.svc, sk.last), service: sk.service}
		w.own(c)
	}
	slot := slices.IndexFunc(c.recs, func(r keyRec) bool { return r.free() })
	if slot < 0 {
		slot = len(c.recs)
		c.recs = append(c.recs, keyRec{})
	}
	if err := w.setRec(c, slot, k); err != nil {
		return locator{}, err
	}
	c.live++
	sk.n++
	loc := c.loc(slot)
	if err := w.txn.Insert(tableKeyPages, c); err != nil {
		return locator{}, err
	}
	if err := w.txn.Insert(tableKeyServices, sk); err != nil {
		return locator{}, err
	}
	if err := w.addID(w.ix.idHash(k.ID), loc); err != nil {
		return locator{}, err
	}
	return loc, w.addSecret(&k.secretHash, loc)
}

// ownService returns the transaction's copy of service's record, a new one
// (with a new service number) for a service without one.
func (w *keyWriter) ownService(service string) (*svcKeys, error) {
	sk, err := svcKeysOf(w.txn, service)
	if err != nil {
		return nil, err
	}
	if sk == nil {
		sk = &svcKeys{service: service, svc: w.ix.nextSvc}
		w.ix.nextSvc++
		w.own(sk)
		return sk, nil
	}
	if w.isOwned(sk) {
		return sk, nil
	}
	c := *sk
	w.own(&c)
	return &c, nil
}

// del deletes key id; it returns its secret hash, and whether it existed.
func (w *keyWriter) del(id string) ([32]byte, bool, error) {
	p, slot, err := w.ix.findID(w.txn, id)
	if err != nil || p == nil {
		return [32]byte{}, false, err
	}
	h := p.recs[slot].hash
	loc := p.loc(slot)
	c := w.ownPage(p)
	c.recs[slot] = keyRec{}
	c.live--
	for len(c.recs) > 0 && c.recs[len(c.recs)-1].free() {
		c.recs = c.recs[:len(c.recs)-1]
	}
	if c.live == 0 {
		if err := w.txn.Delete(tableKeyPages, c); err != nil {
			return h, true, err
		}
	} else if err := w.txn.Insert(tableKeyPages, c); err != nil {
		return h, true, err
	}
	sk, err := w.ownService(c.service)
	if err != nil {
		return h, true, err
	}
	sk.n--
	if err := w.txn.Insert(tableKeyServices, sk); err != nil {
		return h, true, err
	}
	if err := w.removeID(w.ix.idHash(id), loc); err != nil {
		return h, true, err
	}
	return h, true, w.removeSecret(&h, loc)
}

func (w *keyWriter) secretBucket(h *[32]byte) (*secretBucket, error) {
	raw, err := w.txn.First(tableKeySecrets, indexID, h)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		b := &secretBucket{prefix: [2]byte{h[0], h[1]}}
		w.own(b)
		return b, nil
	}
	b := raw.(*secretBucket)
	if w.isOwned(b) {
		return b, nil
	}
	c := &secretBucket{prefix: b.prefix, ents: make([]secretEnt, len(b.ents), len(b.ents)+1)}
	copy(c.ents, b.ents)
	w.own(c)
	return c, nil
}

func (w *keyWriter) addSecret(h *[32]byte, loc locator) error {
	b, err := w.secretBucket(h)
	if err != nil {
		return err
	}
	i := b.search(h)
	if i < len(b.ents) && b.ents[i].hash == *h {
		return fmt.Errorf("secret hash in use by another key")
	}
	b.ents = slices.Insert(b.ents, i, secretEnt{hash: *h, version: w.ix.version.Add(1), loc: loc})
	return w.txn.Insert(tableKeySecrets, b)
}

func (w *keyWriter) removeSecret(h *[32]byte, loc locator) error {
	b, err := w.secretBucket(h)
	if err != nil {
		return err
	}
	i := b.search(h)
	if i == len(b.ents) || b.ents[i].hash != *h || b.ents[i].loc != loc {
		return fmt.Errorf("secret index: no entry for the key at %v", loc)
	}
	b.ents = slices.Delete(b.ents, i, i+1)
	if len(b.ents) == 0 {
		return w.txn.Delete(tableKeySecrets, b)
	}
	return w.txn.Insert(tableKeySecrets, b)
}

func (w *keyWriter) idBucket(h uint64) (*idBucket, error) {
	raw, err := w.txn.First(tableKeyIDs, indexID, idPrefix(h))
	if err != nil {
		return nil, err
	}
	if raw == nil {
		b := &idBucket{prefix: idPrefix(h)}
		w.own(b)
		return b, nil
	}
	b := raw.(*idBucket)
	if w.isOwned(b) {
		return b, nil
	}
	c := &idBucket{prefix: b.prefix, ents: make([]idEnt, len(b.ents), len(b.ents)+1)}
	copy(c.ents, b.ents)
	w.own(c)
	return c, nil
}

func (w *keyWriter) addID(h uint64, loc locator) error {
	b, err := w.idBucket(h)
	if err != nil {
		return err
	}
	i := b.search(h)
	b.ents = slices.Insert(b.ents, i, idEnt{h: h, loc: loc})
	return w.txn.Insert(tableKeyIDs, b)
}

func (w *keyWriter) removeID(h uint64, loc locator) error {
	b, err := w.idBucket(h)
	if err != nil {
		return err
	}
	for i := b.search(h); i < len(b.ents) && b.ents[i].h == h; i++ {
		if b.ents[i].loc == loc {
			b.ents = slices.Delete(b.ents, i, i+1)
			if len(b.ents) == 0 {
				return w.txn.Delete(tableKeyIDs, b)
			}
			return w.txn.Insert(tableKeyIDs, b)
		}
	}
	return fmt.Errorf("id index: no entry for the key at %v", loc)
}
