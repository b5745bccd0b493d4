package keystore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/text"
	"net/http"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// grant is what a successful authorization yields.
type grant struct {
	member   *Member
	service  *Service
	warnings []Warning
	// revision is the policy revision that decided.
	revision string
}

// authorize resolves the token and the service in txn, asks the Authorizer,
// and only then reports an unknown service, so that nobody but an allowed
// member learns which services or keys exist.
func (s *Store) authorize(ctx context.Context, txn *memdb.Txn, action, token, service string, spec *KeySpec) (*grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, internal("request canceled", err)
	}
	g := &grant{}
	req := KeyRequest{Action: action, Service: ServiceInput{ID: service}, Key: spec}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		if raw, err := txn.First(tableMembers, indexToken, &h); err != nil {
			return nil, internal("look up member", err)
		} else if raw != nil {
			g.member = raw.(*Member)
			req.Member = g.member
		}
	}
	if raw, err := txn.First(tableServices, indexID, service); err != nil {
		return nil, internal("look up service", err)
	} else if raw != nil {
		g.service = raw.(*Service)
		req.Service.Plan, req.Service.APIs = g.service.Plan, g.service.APIs
		n, err := countKeys(txn, service)
		if err != nil {
			return nil, internal("count keys", err)
		}
		req.Service.KeyCount = n
	}
	return s.decideKeys(ctx, req, g)
}

// decideKeys asks the Authorizer about req and turns a deny into an *Error.
// g holds the member and service found (nil when unknown); only then is an
// unknown service reported, so that nobody but an allowed member learns
// which services or keys exist. g is returned with the policy revision even
// with an error (for the audit trail), and must not be used as a grant then.
func (s *Store) decideKeys(ctx context.Context, req KeyRequest, g *grant) (*grant, error) {
	action, service := req.Action, req.Service.ID
	dec, err := s.authz.AuthorizeKeys(ctx, req)
	g.revision = dec.PolicyRevision
	if err != nil {
		s.log.Error("key authorization failed; denying", "action", action, "service", service, "err", err)
		return g, &Error{Status: http.StatusInternalServerError, Code: CodeAuthorizerFailed, Message: "authorization failed", Err: fmt.Errorf("authorize %s: %w", action, err)}
	}
	if dec.Allow && dec.Status != 0 && dec.Status != http.StatusOK {
		// An allow with an error status contradicts itself: the policy is
		// broken, and a broken policy allows nothing.
		s.log.Error("keys policy answered allow with an error status; denying", "action", action, "service", service, "status", dec.Status)
		return g, &Error{Status: http.StatusInternalServerError, Code: CodeAuthorizerFailed, Message: "authorization failed",
			Err: fmt.Errorf("authorize %s: allow with status %d", action, dec.Status)}
	}
	if !dec.Allow {
		return g, s.denied(action, service, &dec)
	}
	if g.member == nil { // an allow without a member is a policy bug: fail closed
		return g, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unknown member token"}
	}
	if g.service == nil {
		return g, notFound(CodeServiceNotFound, fmt.Sprintf("service %q not found", service))
	}
	g.warnings = dec.Warnings
	if g.warnings == nil {
		g.warnings = []Warning{}
	}
	return g, nil
}

// denied turns a deny of the keys policy into the error the client sees,
// failing closed on a malformed one: a status outside 400–599 becomes 403
// forbidden (a deny must never look like success), a missing or unusable
// code becomes forbidden, and the message is bounded.
func (s *Store) denied(action, service string, dec *KeyDecision) *Error {
	e := &Error{Status: dec.Status, Code: dec.Code, Message: text.Bounded(dec.Message, text.MaxMessageBytes)}
	if e.Status < 400 || e.Status > 599 {
		e.Status, e.Code, e.Message = http.StatusForbidden, CodeForbidden, http.StatusText(http.StatusForbidden)
	}
	// The policy computes violations whatever the verdict; only a 422
	// (an admin's invalid configuration) may show them. A caller refused
	// with 401 or 403 learns nothing about the evaluation.
	if e.Status == http.StatusUnprocessableEntity {
		e.Violations = dec.Violations
	}
	if e.Status == http.StatusConflict {
		e.Limit = dec.Limit
	}
	if !text.IsCode(e.Code) {
		e.Code = CodeForbidden
	}
	if e.Message == "" {
		e.Message = http.StatusText(e.Status)
	}
	s.log.Debug("key request denied", "action", action, "service", service, "status", e.Status, "code", e.Code)
	return e
}

// countKeys returns the number of keys of service (kept per service: one
// lookup).
func countKeys(txn *memdb.Txn, service string) (int, error) { return keyCount(txn, service) }

// findKey returns the key id of service, or 404.
func (ix *index) findKey(txn *memdb.Txn, service, id string) (*Key, error) {
	k, err := ix.keyByID(txn, id)
	if err != nil {
		return nil, internal("look up key", err)
	}
	if k == nil || k.Service != service {
		return nil, notFound(CodeKeyNotFound, fmt.Sprintf("key %q not found", id))
	}
	return k, nil
}

// normalizeSpec copies spec so the store never shares the caller's map.
func normalizeSpec(spec KeySpec) KeySpec {
	spec.ContentAPI = spec.ContentAPI.Clone()
	return spec
}

// GetKey returns one key's metadata (action "read", admin-only by policy).
func (s *Store) GetKey(ctx context.Context, token, service, id string) (Key, error) {
	if err := s.notLoaded(); err != nil {
		return Key{}, err
	}
	txn := s.db.Txn(false)
	if _, err := s.authorize(ctx, txn, ActionRead, token, service, nil); err != nil {
		return Key{}, err
	}
	k, err := s.findKey(txn, service, id)
	if err != nil {
		return Key{}, err
	}
	return *k, nil
}

// ListKeys returns a service's keys, oldest first (action "list").
func (s *Store) ListKeys(ctx context.Context, token, service string) ([]Key, error) {
	if err := s.notLoaded(); err != nil {
		return nil, err
	}
	txn := s.db.Txn(false)
	if _, err := s.authorize(ctx, txn, ActionList, token, service, nil); err != nil {
		return nil, err
	}
	all, err := s.serviceKeys(txn, service)
	if err != nil {
		return nil, internal("list keys", err)
	}
	keys := make([]Key, 0, len(all))
	for _, k := range all {
		keys = append(keys, *k)
	}
	slices.SortFunc(keys, func(a, b Key) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return keys, nil
}

// notLoaded is a 503 while a shared store has not loaded its index yet: an
// empty index would answer 401 or 404 for what it does not know yet.
func (s *Store) notLoaded() error {
	if s.Status().Ready {
		return nil
	}
	return UnavailableError(errors.New("the key store index is not loaded yet"))
}

// CreateKey creates a key. The policy decides (admin of the service, plan
// limit, config validity) inside the write path, so concurrent creates never
// overshoot the limit. The secret is in the result and nowhere else.
func (s *Store) CreateKey(ctx context.Context, token, service string, spec KeySpec) (Created, error) {
	spec = normalizeSpec(spec)
	var out Created
	err := s.write(ctx, &keyWrite{action: ActionCreate, token: token, service: service, spec: &spec,
		next: func(_ *Key, g *grant) (*Key, error) {
			id, err := newKeyID()
			if err != nil {
				return nil, internal("generate key id", err)
			}
			secret, h, err := newSecret()
			if err != nil {
				return nil, internal("generate secret", err)
			}
			now := s.stamp()
			k := &Key{
				ID: id, Service: service, Name: spec.Name, ContentAPI: spec.ContentAPI, ManagementAPI: spec.ManagementAPI,
				CreatedBy: g.member.ID, CreatedAt: now, UpdatedAt: now, Revision: 1, secretHash: h,
			}
			out = Created{Key: k.clone(), Secret: secret, Warnings: g.warnings}
			return k, nil
		},
		replay: func(cur *Key) { out = replayed(cur) }})
	if err != nil {
		return Created{}, err
	}
	if out.Replayed {
		return out, nil
	}
	s.log.Info("key created", "key", out.ID, "service", service, "member", out.CreatedBy)
	return out, nil
}

// UpdateKey replaces a key's name and permissions (PUT semantics).
func (s *Store) UpdateKey(ctx context.Context, token, service, id string, spec KeySpec) (Updated, error) {
	spec = normalizeSpec(spec)
	var out Updated
	var member string
	err := s.write(ctx, &keyWrite{action: ActionUpdate, token: token, service: service, id: id, spec: &spec,
		next: func(old *Key, g *grant) (*Key, error) {
			k := *old
			k.Name, k.ContentAPI, k.ManagementAPI = spec.Name, spec.ContentAPI, spec.ManagementAPI
			k.UpdatedAt = s.stamp()
			k.Revision++
			out, member = Updated{Key: k.clone(), Warnings: g.warnings}, g.member.ID
			return &k, nil
		},
		replay: func(cur *Key) { c := replayed(cur); out = Updated{Key: c.Key, Warnings: c.Warnings, Replayed: true} }})
	if err != nil {
		return Updated{}, err
	}
	if out.Replayed {
		return out, nil
	}
	s.log.Info("key updated", "key", id, "service", service, "member", member, "revision", out.Revision)
	return out, nil
}

// RotateKey gives a key a new secret; the old one stops working at once.
func (s *Store) RotateKey(ctx context.Context, token, service, id string) (Created, error) {
	var out Created
	var member string
	err := s.write(ctx, &keyWrite{action: ActionRotate, token: token, service: service, id: id,
		next: func(old *Key, g *grant) (*Key, error) {
			secret, h, err := newSecret()
			if err != nil {
				return nil, internal("generate secret", err)
			}
			k := *old
			k.secretHash = h
			k.UpdatedAt = s.stamp()
			k.Revision++
			out, member = Created{Key: k.clone(), Secret: secret, Warnings: g.warnings}, g.member.ID
			return &k, nil
		},
		replay: func(cur *Key) { out = replayed(cur) }})
	if err != nil {
		return Created{}, err
	}
	if out.Replayed {
		return out, nil
	}
	s.log.Info("key rotated", "key", id, "service", service, "member", member, "revision", out.Revision)
	return out, nil
}

// DeleteKey deletes a key; its secret stops working at once.
func (s *Store) DeleteKey(ctx context.Context, token, service, id string) error {
	var member string
	var again bool
	err := s.write(ctx, &keyWrite{action: ActionDelete, token: token, service: service, id: id,
		next: func(_ *Key, g *grant) (*Key, error) {
			member = g.member.ID
			return nil, nil
		},
		replay: func(*Key) { again = true }})
	if err != nil || again {
		return err
	}
	s.log.Info("key deleted", "key", id, "service", service, "member", member)
	return nil
}

// replayed is the answer of a create or rotation replayed by idempotency
// key: the key as it is now, without a secret (shown once, in the first answer).
func replayed(cur *Key) Created {
	c := Created{Warnings: []Warning{}, Replayed: true}
	if cur != nil {
		c.Key = cur.clone()
	}
	return c
}

// stamp is the time of a write, in UTC. On PostgreSQL it is cut to the
// microsecond, which is what PostgreSQL keeps, so that every replica and a
// fresh load agree on it. keeps, so that every replica and a fresh load agree on it.
// The local store keeps what the clock says.
func (s *Store) stamp() time.Time { return s.now().UTC().Truncate(s.precision) }
