package keystore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"

	memdb "github.com/hashicorp/go-memdb"
)

// grant is what a successful authorization yields.
type grant struct {
	member   *Member
	service  *Service
	warnings []Warning
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
		req.Service.Plan = g.service.Plan
		n, err := countKeys(txn, service)
		if err != nil {
			return nil, internal("count keys", err)
		}
		req.Service.KeyCount = n
	}
	dec, err := s.authz.AuthorizeKeys(ctx, req)
	if err != nil {
		s.log.Error("key authorization failed; denying", "action", action, "service", service, "err", err)
		return nil, &Error{Status: http.StatusInternalServerError, Code: CodeAuthorizerFailed, Message: "authorization failed", Err: fmt.Errorf("authorize %s: %w", action, err)}
	}
	if dec.Allow && dec.Status != 0 && dec.Status != http.StatusOK {
		// An allow with an error status contradicts itself: the policy is
		// broken, and a broken policy allows nothing.
		s.log.Error("keys policy answered allow with an error status; denying", "action", action, "service", service, "status", dec.Status)
		return nil, &Error{Status: http.StatusInternalServerError, Code: CodeAuthorizerFailed, Message: "authorization failed",
			Err: fmt.Errorf("authorize %s: allow with status %d", action, dec.Status)}
	}
	if !dec.Allow {
		return nil, s.denied(action, service, &dec)
	}
	if g.member == nil { // an allow without a member is a policy bug: fail closed
		return nil, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unknown member token"}
	}
	if g.service == nil {
		return nil, notFound(CodeServiceNotFound, fmt.Sprintf("service %q not found", service))
	}
	g.warnings = dec.Warnings
	if g.warnings == nil {
		g.warnings = []Warning{}
	}
	return g, nil
}

// Bounds on what a keys decision may put in an answer: a problem's detail
// is a sentence, its code a token.
const (
	maxMessageBytes = 512
	maxCodeBytes    = 64
)

// denied turns a deny of the keys policy into the error the client sees,
// failing closed on a malformed one: a status outside 400–599 becomes 403
// forbidden (a deny must never look like success), a missing or unusable
// code becomes forbidden, and the message is bounded.
func (s *Store) denied(action, service string, dec *KeyDecision) *Error {
	e := &Error{Status: dec.Status, Code: dec.Code, Message: boundMessage(dec.Message)}
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
	if !isCode(e.Code) {
		e.Code = CodeForbidden
	}
	if e.Message == "" {
		e.Message = http.StatusText(e.Status)
	}
	s.log.Debug("key request denied", "action", action, "service", service, "status", e.Status, "code", e.Code)
	return e
}

// isCode reports whether c is a usable code: a short token of letters,
// digits, '_', '-' and '.'.
func isCode(c string) bool {
	if c == "" || len(c) > maxCodeBytes {
		return false
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.' {
			continue
		}
		return false
	}
	return true
}

// boundMessage cuts m to at most maxMessageBytes, on a rune boundary.
func boundMessage(m string) string {
	if len(m) <= maxMessageBytes {
		return m
	}
	const ellipsis = "…"
	cut := maxMessageBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(m[cut]) {
		cut--
	}
	return m[:cut] + ellipsis
}

func countKeys(txn *memdb.Txn, service string) (int, error) {
	it, err := txn.Get(tableKeys, indexService, service)
	if err != nil {
		return 0, err
	}
	n := 0
	for o := it.Next(); o != nil; o = it.Next() {
		n++
	}
	return n, nil
}

// findKey returns the key id of service, or 404.
func findKey(txn *memdb.Txn, service, id string) (*Key, error) {
	raw, err := txn.First(tableKeys, indexID, id)
	if err != nil {
		return nil, internal("look up key", err)
	}
	if raw == nil || raw.(*Key).Service != service {
		return nil, notFound(CodeKeyNotFound, fmt.Sprintf("key %q not found", id))
	}
	return raw.(*Key), nil
}

// normalizeSpec copies spec so the store never shares the caller's map.
func normalizeSpec(spec KeySpec) KeySpec {
	spec.ContentAPI = spec.ContentAPI.clone()
	return spec
}

// GetKey returns one key's metadata (action "read", admin-only by policy).
func (s *Store) GetKey(ctx context.Context, token, service, id string) (Key, error) {
	txn := s.db.Txn(false)
	if _, err := s.authorize(ctx, txn, ActionRead, token, service, nil); err != nil {
		return Key{}, err
	}
	k, err := findKey(txn, service, id)
	if err != nil {
		return Key{}, err
	}
	return k.clone(), nil
}

// ListKeys returns a service's keys, oldest first (action "list").
func (s *Store) ListKeys(ctx context.Context, token, service string) ([]Key, error) {
	txn := s.db.Txn(false)
	if _, err := s.authorize(ctx, txn, ActionList, token, service, nil); err != nil {
		return nil, err
	}
	it, err := txn.Get(tableKeys, indexService, service)
	if err != nil {
		return nil, internal("list keys", err)
	}
	keys := []Key{}
	for o := it.Next(); o != nil; o = it.Next() {
		keys = append(keys, o.(*Key).clone())
	}
	slices.SortFunc(keys, func(a, b Key) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return keys, nil
}

// write runs fn inside the serialized write path: one lock, one memdb write
// transaction, the authorization decision, the change, the fsynced log record,
// and only then the commit. fn returns the record to log.
//
// Two checks come first, outside the lock, so that no caller can make every
// admin write wait while its request is converted and evaluated:
//   - checkSpec, the structural limits (name length, at most maxIndividual
//     entries, endpoint names). They are public and the same for everyone, so
//     a 400 before authorization reveals nothing about services, members or
//     keys; and a 20k-entry spec never reaches the policy.
//   - a screening authorization on a read snapshot. A deny there (401, 403,
//     409, 422) is returned at once: it is the policy's answer on the state of
//     a moment ago, as if the request had been serialized just before any
//     write in flight. Only an allow goes on to the lock, where the decision
//     is taken again, authoritatively, on the write transaction (so the key
//     count it sees is the one the write changes). Key writes are rare; the
//     second evaluation of an allowed write is the price of keeping
//     unauthenticated and forbidden traffic off the write lock.
func (s *Store) write(ctx context.Context, action, token, service string, spec *KeySpec,
	fn func(txn *memdb.Txn, g *grant) (*record, error)) error {
	if spec != nil {
		if field, reason, ok := checkSpec(spec); !ok {
			return specError(field, reason)
		}
	}
	if _, err := s.authorize(ctx, s.db.Txn(false), action, token, service, spec); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return internal("store is closed", errors.New("closed"))
	case s.broken != nil:
		return internal("store is read-only after a failed state write; restart keygate", s.broken)
	}
	txn := s.db.Txn(true)
	defer txn.Abort()
	g, err := s.authorize(ctx, txn, action, token, service, spec)
	if err != nil {
		return err
	}
	rec, err := fn(txn, g)
	if err != nil {
		return err
	}
	if err := s.journal.append(rec); err != nil {
		s.broken = err
		s.log.Error("state write failed; refusing further writes until restart", "err", err)
		return internal("state write failed", err)
	}
	txn.Commit()
	s.gen.Add(1)
	s.maybeCompact()
	return nil
}

func (s *Store) maybeCompact() {
	if s.journal.records < s.journal.compactAfter {
		return
	}
	var keys []*Key
	it, err := s.db.Txn(false).Get(tableKeys, indexID)
	if err != nil {
		s.log.Warn("state compaction skipped", "err", err)
		return
	}
	for o := it.Next(); o != nil; o = it.Next() {
		keys = append(keys, o.(*Key))
	}
	if err := s.journal.compact(keys); err != nil {
		// The log still holds every record; compaction is retried on the next write.
		s.log.Warn("state compaction failed", "err", err)
	}
}

func putRecord(k *Key) *record { return &record{Op: opPut, Key: toRecord(k)} }

// CreateKey creates a key. The policy decides (admin of the service, plan
// limit, config validity) inside the write path, so concurrent creates never
// overshoot the limit. The secret is in the result and nowhere else.
func (s *Store) CreateKey(ctx context.Context, token, service string, spec KeySpec) (Created, error) {
	spec = normalizeSpec(spec)
	var out Created
	err := s.write(ctx, ActionCreate, token, service, &spec, func(txn *memdb.Txn, g *grant) (*record, error) {
		id, err := unusedID(txn)
		if err != nil {
			return nil, err
		}
		secret, h, err := unusedSecret(txn)
		if err != nil {
			return nil, err
		}
		now := s.now().UTC()
		k := &Key{
			ID: id, Service: service, Name: spec.Name, ContentAPI: spec.ContentAPI, ManagementAPI: spec.ManagementAPI,
			CreatedBy: g.member.ID, CreatedAt: now, UpdatedAt: now, Revision: 1, secretHash: h,
		}
		if err := txn.Insert(tableKeys, k); err != nil {
			return nil, internal("insert key", err)
		}
		out = Created{Key: k.clone(), Secret: secret, Warnings: g.warnings}
		s.log.Info("key created", "key", id, "service", service, "member", g.member.ID)
		return putRecord(k), nil
	})
	if err != nil {
		return Created{}, err
	}
	return out, nil
}

// UpdateKey replaces a key's name and permissions (PUT semantics).
func (s *Store) UpdateKey(ctx context.Context, token, service, id string, spec KeySpec) (Updated, error) {
	spec = normalizeSpec(spec)
	var out Updated
	err := s.write(ctx, ActionUpdate, token, service, &spec, func(txn *memdb.Txn, g *grant) (*record, error) {
		old, err := findKey(txn, service, id)
		if err != nil {
			return nil, err
		}
		k := *old
		k.Name, k.ContentAPI, k.ManagementAPI = spec.Name, spec.ContentAPI, spec.ManagementAPI
		k.UpdatedAt = s.now().UTC()
		k.Revision++
		if err := txn.Insert(tableKeys, &k); err != nil {
			return nil, internal("update key", err)
		}
		out = Updated{Key: k.clone(), Warnings: g.warnings}
		s.log.Info("key updated", "key", id, "service", service, "member", g.member.ID, "revision", k.Revision)
		return putRecord(&k), nil
	})
	if err != nil {
		return Updated{}, err
	}
	return out, nil
}

// RotateKey gives a key a new secret; the old one stops working at once.
func (s *Store) RotateKey(ctx context.Context, token, service, id string) (Created, error) {
	var out Created
	err := s.write(ctx, ActionRotate, token, service, nil, func(txn *memdb.Txn, g *grant) (*record, error) {
		old, err := findKey(txn, service, id)
		if err != nil {
			return nil, err
		}
		secret, h, err := unusedSecret(txn)
		if err != nil {
			return nil, err
		}
		k := *old
		k.secretHash = h
		k.UpdatedAt = s.now().UTC()
		k.Revision++
		if err := txn.Insert(tableKeys, &k); err != nil {
			return nil, internal("rotate key", err)
		}
		out = Created{Key: k.clone(), Secret: secret, Warnings: g.warnings}
		s.log.Info("key rotated", "key", id, "service", service, "member", g.member.ID, "revision", k.Revision)
		return putRecord(&k), nil
	})
	if err != nil {
		return Created{}, err
	}
	return out, nil
}

// DeleteKey deletes a key; its secret stops working at once.
func (s *Store) DeleteKey(ctx context.Context, token, service, id string) error {
	return s.write(ctx, ActionDelete, token, service, nil, func(txn *memdb.Txn, g *grant) (*record, error) {
		k, err := findKey(txn, service, id)
		if err != nil {
			return nil, err
		}
		if err := txn.Delete(tableKeys, k); err != nil {
			return nil, internal("delete key", err)
		}
		s.log.Info("key deleted", "key", id, "service", service, "member", g.member.ID)
		return &record{Op: opDelete, ID: id}, nil
	})
}

// unusedID draws key ids until one is free (a collision of 80 random bits is
// not expected, but the id index is unique only if we check).
func unusedID(txn *memdb.Txn) (string, error) {
	for range 5 {
		id, err := newKeyID()
		if err != nil {
			return "", internal("generate key id", err)
		}
		if raw, err := txn.First(tableKeys, indexID, id); err != nil {
			return "", internal("look up key", err)
		} else if raw == nil {
			return id, nil
		}
	}
	return "", internal("generate key id", errors.New("no free id after 5 draws"))
}

// unusedSecret draws a secret whose hash no key has: memdb does not enforce
// unique indexes, so the check happens here, inside the write transaction.
func unusedSecret(txn *memdb.Txn) (string, [32]byte, error) {
	for range 5 {
		secret, h, err := newSecret()
		if err != nil {
			return "", h, internal("generate secret", err)
		}
		if raw, err := txn.First(tableKeys, indexSecret, &h); err != nil {
			return "", h, internal("look up secret", err)
		} else if raw == nil {
			return secret, h, nil
		}
	}
	return "", [32]byte{}, internal("generate secret", errors.New("no free secret after 5 draws"))
}
