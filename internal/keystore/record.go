package keystore

import (
	"errors"
	"fmt"
	"strings"
)

// The one persisted encoding of a key, shared by every driver: the local
// state's snapshot and log records (local/journal.go) hold KeyRecords, and
// a PostgreSQL change row of op "put" (changes.row) is one. Changing it
// changes both on-disk formats.

// Ops of a key change record (and of Change).
const (
	opPut    = "put"
	opDelete = "delete"
	// opIP is the change of a service's IP restriction setting: a
	// PostgreSQL change row whose row is the whole setting after the write.
	opIP = "ip"
)

// KeyRecord is a key as the state file stores it: the key plus its secret hash.
type KeyRecord struct {
	Key
	SecretHash string `json:"secretHash"`
}

func NewKeyRecord(k *Key) *KeyRecord {
	return &KeyRecord{Key: *k, SecretHash: formatHash(k.secretHash)}
}

func DecodeKeyRecord(r *KeyRecord) (*Key, error) {
	if !strings.HasPrefix(r.SecretHash, hashPrefix) {
		return nil, errors.New("secretHash must be sha256:<64 hex>")
	}
	h, err := parseHashOrPlain(r.SecretHash)
	if err != nil {
		return nil, fmt.Errorf("secretHash: %w", err)
	}
	if !idPattern.MatchString(r.ID) || r.Service == "" {
		return nil, fmt.Errorf("key %q: invalid id or service", r.ID)
	}
	k := r.Key
	k.secretHash = h
	k.ContentAPI = k.ContentAPI.Clone()
	return &k, nil
}
