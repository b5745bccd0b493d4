package keystore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"

	memdb "github.com/hashicorp/go-memdb"
)

// Codes of a legacy import refusal the store itself produces.
const (
	CodeInvalidLegacyKey = "invalid_legacy_key"
	CodeLegacyKeyInUse   = "legacy_key_in_use"
)

// Bounds of an old microCMS key value (they were UUIDs, 36 characters): it
// becomes a secret that the decision path hashes, so it is bounded and made
// of visible ASCII only.
const (
	minLegacySecret = 16
	maxLegacySecret = 256
)

func validLegacySecret(v string) bool {
	if len(v) < minLegacySecret || len(v) > maxLegacySecret {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// ImportKey creates a key whose secret is an old microCMS key value
// (X-API-KEY, X-WRITE-API-KEY, X-GLOBAL-DRAFT-KEY), with the configuration
// spec the legacy policy mapped it to. It is a create like any other — the
// keys policy decides it inside the serialized write path (admin of the
// service, the plan's key limit, the configuration), and it is logged and
// journaled — except that the secret is the old value instead of a new one.
//
// It is idempotent: when a key of this service already has the value, nothing
// is written and existed is true (the plan limit is not asked, so a re-run at
// the limit reports the existing keys rather than 409). Whether a value
// exists is only told to an admin of the service: the keys policy's "list"
// decision is asked first. A value that is another service's key is 409.
func (s *Store) ImportKey(ctx context.Context, token, service string, spec KeySpec, secret string) (key Key, existed bool, err error) {
	if !validLegacySecret(secret) {
		return Key{}, false, &Error{Status: http.StatusBadRequest, Code: CodeInvalidLegacyKey,
			Message: fmt.Sprintf("an old key value is %d-%d visible ASCII characters", minLegacySecret, maxLegacySecret)}
	}
	h := sha256.Sum256([]byte(secret))
	txn := s.db.Txn(false)
	if _, err := s.authorize(ctx, txn, ActionList, token, service, nil); err != nil {
		return Key{}, false, err
	}
	if k, err := s.keyByHash(txn, h); err != nil {
		return Key{}, false, err
	} else if k != nil {
		if k.Service != service {
			return Key{}, false, &Error{Status: http.StatusConflict, Code: CodeLegacyKeyInUse, Message: "this value is already a key of another service"}
		}
		return k.clone(), true, nil
	}
	spec = normalizeSpec(spec)
	err = s.write(ctx, &keyWrite{action: ActionCreate, token: token, service: service, spec: &spec,
		next: func(_ *Key, g *grant) (*Key, error) {
			id, err := newKeyID()
			if err != nil {
				return nil, internal("generate key id", err)
			}
			now := s.stamp()
			k := &Key{
				ID: id, Service: service, Name: spec.Name, ContentAPI: spec.ContentAPI, ManagementAPI: spec.ManagementAPI,
				CreatedBy: g.member.ID, CreatedAt: now, UpdatedAt: now, Revision: 1, secretHash: h,
			}
			key = k.clone()
			return k, nil
		}})
	if err != nil {
		// Imported concurrently (by another request or replica): the
		// backend found the value taken. A re-run's answer.
		if k, lerr := s.keyByHash(s.db.Txn(false), h); lerr == nil && k != nil {
			if k.Service != service {
				return Key{}, false, &Error{Status: http.StatusConflict, Code: CodeLegacyKeyInUse, Message: "this value is already a key of another service"}
			}
			return k.clone(), true, nil
		}
		return Key{}, false, err
	}
	s.log.Info("legacy key imported", "key", key.ID, "service", service, "member", key.CreatedBy)
	return key, false, nil
}

func (ix *index) keyByHash(txn *memdb.Txn, h [32]byte) (*Key, error) {
	k, err := ix.keyBySecret(txn, h)
	if err != nil {
		return nil, internal("look up secret", err)
	}
	return k, nil
}
