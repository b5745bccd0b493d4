// Package cachescope is the invalidation ledger between a key store and the
// decisions cached from it. A decision to a service about a presented
// secret depends on the service (its record and IP restrictions) and on the
// key that secret names, or on there being none. The store touches the
// service's slot when the service changes and the secret hash's slot when a
// key with that hash is created, changed, rotated away or deleted — after
// the change is visible to lookups and before it is answered. A cached
// decision carries the Stamp read before its lookups and is served only
// while the stamp still matches, so a write invalidates the decisions it
// can change and no others.
//
// Slots are fixed arrays indexed by a hash of the service id or the secret
// hash: two services or secrets sharing a slot only invalidate each other
// (a spurious miss, never a stale hit). Every touch writes a value from one
// counter, so a slot never returns to a value it held before.
package cachescope

import (
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"
)

// slots per scope: 2 × 64 Ki × 8 bytes = 1 MiB per ledger, whatever the
// number of keys; with tens of thousands of services few share a slot.
const slots = 1 << 16

// Ledger records, per slot, the last change that touched it. The zero
// value is not usable: call New.
type Ledger struct {
	clock    atomic.Uint64
	epoch    atomic.Uint64
	seed     maphash.Seed
	services [slots]atomic.Uint64
	secrets  [slots]atomic.Uint64
}

// Stamp is what a cached decision depends on, read before its lookups.
type Stamp struct {
	Epoch, Service, Secret uint64
}

// New returns an empty ledger.
func New() *Ledger {
	l := &Ledger{seed: maphash.MakeSeed()}
	l.epoch.Store(l.clock.Add(1))
	return l
}

func (l *Ledger) serviceSlot(id string) *atomic.Uint64 {
	return &l.services[maphash.String(l.seed, id)%slots]
}

// secretSlot indexes by the hash itself: a SHA-256 is already uniform.
func (l *Ledger) secretSlot(h *[32]byte) *atomic.Uint64 {
	return &l.secrets[binary.LittleEndian.Uint64(h[:8])%slots]
}

// Stamp returns the current stamp of a question to service with the
// secret hashing to h (nil when no secret was presented). It does not
// allocate.
func (l *Ledger) Stamp(service string, h *[32]byte) Stamp {
	st := Stamp{Epoch: l.epoch.Load(), Service: l.serviceSlot(service).Load()}
	if h != nil {
		st.Secret = l.secretSlot(h).Load()
	}
	return st
}

// TouchService invalidates the decisions to service id: call it after a
// change to the service's record or IP restrictions is visible.
func (l *Ledger) TouchService(id string) { l.serviceSlot(id).Store(l.clock.Add(1)) }

// TouchSecret invalidates the decisions about the secret hashing to h: call
// it after a key with that hash was created, changed, rotated away or
// deleted (a rotation touches the old hash and the new one).
func (l *Ledger) TouchSecret(h [32]byte) { l.secretSlot(&h).Store(l.clock.Add(1)) }

// TouchAll invalidates every decision: call it after a change not scoped to
// services or secrets (a data reload, a resync of the whole index).
func (l *Ledger) TouchAll() { l.epoch.Store(l.clock.Add(1)) }
