package keystore

import (
	"fmt"
	"maps"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"
)

// index is the Store's in-memory view: services, members and keys in
// go-memdb (schema.go), the IP restriction settings, and the generation
// that moves with any of them. Lookups read it without a lock; a Backend
// changes it inside its write transaction (local) or through Load and
// Apply (a change feed).
type index struct {
	db  *memdb.MemDB
	gen atomic.Uint64
	ip  *ipStore
}

var _ Index = (*index)(nil)

func newIndex() (*index, error) {
	db, err := memdb.NewMemDB(newSchema())
	if err != nil {
		return nil, fmt.Errorf("keystore: schema: %w", err)
	}
	ix := &index{db: db, ip: &ipStore{}}
	ix.ip.cur.Store(&ipState{rev: 1, services: map[string]*IPRestrictions{}})
	ix.gen.Store(1)
	return ix, nil
}

// Load implements Index.
func (ix *index) Load(dir *Directory, keys []*Key, ip map[string]*IPRestrictions) error {
	txn := ix.db.Txn(true)
	defer txn.Abort()
	for _, t := range []string{tableKeys, tableMembers, tableServices} {
		if _, err := txn.DeleteAll(t, indexID); err != nil {
			return fmt.Errorf("clear %s: %w", t, err)
		}
	}
	if err := insertDirectory(txn, dir); err != nil {
		return err
	}
	for _, k := range keys {
		if err := txn.Insert(tableKeys, k); err != nil {
			return fmt.Errorf("insert key %s: %w", k.ID, err)
		}
	}
	if err := uniqueSecrets(txn, keys); err != nil {
		return err
	}
	txn.Commit()
	if ip == nil {
		ip = map[string]*IPRestrictions{}
	}
	ix.ip.cur.Store(&ipState{rev: ix.ip.cur.Load().rev + 1, services: ip})
	ix.gen.Add(1)
	return nil
}

// Apply implements Index. IP restriction settings of the batch are swapped
// in together, before the generation moves.
func (ix *index) Apply(changes []Change) error {
	txn := ix.db.Txn(true)
	defer txn.Abort()
	var ip *ipState
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
		case ChangePut:
			if err := txn.Insert(tableKeys, c.Key); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
		case ChangeDelete:
			raw, err := txn.First(tableKeys, indexID, c.KeyID)
			if err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			if raw != nil {
				if err := txn.Delete(tableKeys, raw); err != nil {
					return fmt.Errorf("change %d: %w", i, err)
				}
			}
		default:
			return fmt.Errorf("change %d: unknown op %q", i, c.Op)
		}
	}
	txn.Commit()
	if ip != nil {
		ix.ip.cur.Store(ip)
	}
	ix.gen.Add(1)
	return nil
}

// uniqueSecrets fails when two of keys share a secret hash (the secret index
// would keep one of them silently).
func uniqueSecrets(txn *memdb.Txn, keys []*Key) error {
	for _, k := range keys {
		raw, err := txn.First(tableKeys, indexSecret, &k.secretHash)
		if err != nil {
			return err
		}
		if other := raw.(*Key); other.ID != k.ID {
			return fmt.Errorf("keys %q and %q share a secret hash", other.ID, k.ID)
		}
	}
	return nil
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
	txn.Commit()
	ix.gen.Add(1)
	return nil
}

// Keys implements Index.
func (ix *index) Keys() []*Key {
	var keys []*Key
	it, err := ix.db.Txn(false).Get(tableKeys, indexID)
	if err != nil {
		return nil
	}
	for o := it.Next(); o != nil; o = it.Next() {
		keys = append(keys, o.(*Key))
	}
	return keys
}

// IPRestrictions implements Index.
func (ix *index) IPRestrictions() map[string]*IPRestrictions { return ix.ip.cur.Load().services }

// Write implements Index.
func (ix *index) Write() IndexTxn { return &indexTxn{ix: ix, txn: ix.db.Txn(true)} }

// indexTxn is a memdb write transaction on the index.
type indexTxn struct {
	ix  *index
	txn *memdb.Txn
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
	n, err := countKeys(t.txn, id)
	if err != nil {
		return nil, 0, err
	}
	return raw.(*Service), n, nil
}

func (t *indexTxn) Key(id string) (*Key, error) {
	raw, err := t.txn.First(tableKeys, indexID, id)
	if err != nil || raw == nil {
		return nil, err
	}
	return raw.(*Key), nil
}

func (t *indexTxn) KeyBySecret(h [32]byte) (*Key, error) {
	raw, err := t.txn.First(tableKeys, indexSecret, &h)
	if err != nil || raw == nil {
		return nil, err
	}
	return raw.(*Key), nil
}

func (t *indexTxn) Put(k *Key) error    { return t.txn.Insert(tableKeys, k) }
func (t *indexTxn) Delete(k *Key) error { return t.txn.Delete(tableKeys, k) }

func (t *indexTxn) Commit() {
	t.txn.Commit()
	t.ix.gen.Add(1)
}

func (t *indexTxn) Abort() { t.txn.Abort() }
