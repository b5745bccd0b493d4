package keystore

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Table and index names.
const (
	tableServices = "services"
	tableMembers  = "members"
	// The keys, in the compact layout of keypage.go: pages of records,
	// buckets by secret hash and by id hash, a count per service.
	tableKeyPages    = "keypages"
	tableKeySecrets  = "keysecrets"
	tableKeyIDs      = "keyids"
	tableKeyServices = "keyservices"

	indexID    = "id"
	indexToken = "token"
)

// The indexers below read struct fields directly instead of memdb's
// reflection-based StringFieldIndex: the secret and token lookups are on the
// hot path of every decision, and a 32-byte hash needs no string round trip.

// stringIndex indexes a string field, null-terminated like memdb's own
// StringFieldIndex so that prefix scans on non-unique indexes stay exact.
type stringIndex func(obj any) string

func (f stringIndex) FromObject(obj any) (bool, []byte, error) {
	s := f(obj)
	if s == "" {
		return false, nil, nil
	}
	return true, append([]byte(s), 0), nil
}

func (f stringIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("argument must be a string: %T", args[0])
	}
	return append([]byte(s), 0), nil
}

// hashIndex indexes a SHA-256 hash field; lookups pass a *[32]byte.
type hashIndex func(obj any) *[32]byte

func (f hashIndex) FromObject(obj any) (bool, []byte, error) {
	return true, f(obj)[:], nil
}

func (f hashIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one argument, got %d", len(args))
	}
	h, ok := args[0].(*[32]byte)
	if !ok {
		return nil, fmt.Errorf("argument must be a *[32]byte: %T", args[0])
	}
	return h[:], nil
}

// pageIndex indexes pages by their pageKey (lookups pass a *pageKey, which
// points into a bucket entry on the hot path: no allocation); a prefix scan
// with a svcPrefix lists one service's pages.
type pageIndex struct{}

// svcPrefix is a service's number, the prefix of its pages' keys.
type svcPrefix uint32

func (pageIndex) FromObject(obj any) (bool, []byte, error) {
	k := obj.(*keyPage).key
	return true, k[:], nil
}

func (pageIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one argument, got %d", len(args))
	}
	k, ok := args[0].(*pageKey)
	if !ok {
		return nil, fmt.Errorf("argument must be a *pageKey: %T", args[0])
	}
	return k[:], nil
}

func (pageIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one argument, got %d", len(args))
	}
	p, ok := args[0].(svcPrefix)
	if !ok {
		return nil, fmt.Errorf("argument must be a svcPrefix: %T", args[0])
	}
	k := newPageKey(uint32(p), 0)
	return k[:4], nil
}

// bucketIndex indexes buckets by their 2-byte prefix; lookups pass the
// *[32]byte secret hash (its first two bytes) or the [2]byte prefix.
type bucketIndex func(obj any) [2]byte

func (f bucketIndex) FromObject(obj any) (bool, []byte, error) {
	p := f(obj)
	return true, p[:], nil
}

func (f bucketIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one argument, got %d", len(args))
	}
	switch a := args[0].(type) {
	case *[32]byte:
		return a[:2], nil
	case [2]byte:
		return a[:], nil
	}
	return nil, fmt.Errorf("argument must be a *[32]byte or a [2]byte: %T", args[0])
}

func newSchema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableServices: {Name: tableServices, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(o any) string { return o.(*Service).ID })},
		}},
		tableMembers: {Name: tableMembers, Indexes: map[string]*memdb.IndexSchema{
			indexID:    {Name: indexID, Unique: true, Indexer: stringIndex(func(o any) string { return o.(*Member).ID })},
			indexToken: {Name: indexToken, Unique: true, Indexer: hashIndex(func(o any) *[32]byte { return &o.(*Member).tokenHash })},
		}},
		tableKeyPages: {Name: tableKeyPages, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: pageIndex{}},
		}},
		tableKeySecrets: {Name: tableKeySecrets, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: bucketIndex(func(o any) [2]byte { return o.(*secretBucket).prefix })},
		}},
		tableKeyIDs: {Name: tableKeyIDs, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: bucketIndex(func(o any) [2]byte { return o.(*idBucket).prefix })},
		}},
		tableKeyServices: {Name: tableKeyServices, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(o any) string { return o.(*svcKeys).service })},
		}},
	}}
}
