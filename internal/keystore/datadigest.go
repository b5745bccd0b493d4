package keystore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
)

// DataDigest is a digest of the services and members the index holds (every
// field, and the members' token hashes), not of the keys. Two digests are
// equal when a data reload changed nothing, however the files were
// formatted.
func (s *Store) DataDigest() [32]byte {
	h := sha256.New()
	field := func(v []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write(v)
	}
	object := func(kind string, o any) {
		b, _ := json.Marshal(o) // plain structs of strings: cannot fail
		field([]byte(kind))
		field(b)
	}
	txn := s.db.Txn(false)
	if it, err := txn.Get(tableServices, indexID); err == nil {
		for o := it.Next(); o != nil; o = it.Next() {
			object("service", o.(*Service))
		}
	}
	if it, err := txn.Get(tableMembers, indexID); err == nil {
		for o := it.Next(); o != nil; o = it.Next() {
			m := o.(*Member)
			object("member", m)
			field(m.tokenHash[:])
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
