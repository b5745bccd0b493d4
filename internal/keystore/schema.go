package keystore

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Table and index names.
const (
	tableServices = "services"
	tableMembers  = "members"
	tableKeys     = "keys"

	indexID      = "id"
	indexToken   = "token"
	indexSecret  = "secret"
	indexService = "service"
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

func newSchema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableServices: {Name: tableServices, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(o any) string { return o.(*Service).ID })},
		}},
		tableMembers: {Name: tableMembers, Indexes: map[string]*memdb.IndexSchema{
			indexID:    {Name: indexID, Unique: true, Indexer: stringIndex(func(o any) string { return o.(*Member).ID })},
			indexToken: {Name: indexToken, Unique: true, Indexer: hashIndex(func(o any) *[32]byte { return &o.(*Member).tokenHash })},
		}},
		tableKeys: {Name: tableKeys, Indexes: map[string]*memdb.IndexSchema{
			indexID:      {Name: indexID, Unique: true, Indexer: stringIndex(func(o any) string { return o.(*Key).ID })},
			indexSecret:  {Name: indexSecret, Unique: true, Indexer: hashIndex(func(o any) *[32]byte { return &o.(*Key).secretHash })},
			indexService: {Name: indexService, Indexer: stringIndex(func(o any) string { return o.(*Key).Service })},
		}},
	}}
}
