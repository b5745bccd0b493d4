package keystore

import (
	"context"
	"crypto/sha256"
	"fmt"
)

// The one write algorithm of the key store, whichever Backend keeps the
// keys: screen → authorize on the Tx → idempotent replay → put or delete →
// audit. Store.write runs the parts outside any lock (structural checks, a
// screening decision on a read snapshot, the audit record of a refusal);
// writeIn runs inside Backend.Update, on the authoritative state.

// keyWrite is one key write, whichever backend makes it durable: who asks
// (token), on what (service, and id unless it is a create), with which
// proposed configuration (spec, for create and update), and how the key
// after the write follows from the key before it.
type keyWrite struct {
	action, token, service string
	id                     string // the key written; "" on a create
	spec                   *KeySpec
	// next returns the key after the write, given the key before it (nil
	// for a create) and the grant; nil means delete. A backend may call it
	// more than once (a drawn id or secret already in use is drawn again),
	// so it must not have effects beyond its result and the caller's
	// output variables.
	next func(old *Key, g *grant) (*Key, error)

	// For the audit trail: the member and the policy revision of the
	// latest decision on w, and the request id.
	actor, revision, requestID string
	// idemKey is the client's idempotency key; replay, given the key as it
	// is now (nil: gone), fills the caller's output for a write already made.
	idemKey string
	replay  func(current *Key)
}

// noteGrant keeps, for the audit trail, who the latest decision on w saw
// and which policy revision took it (g may come with a deny).
func (w *keyWrite) noteGrant(g *grant) {
	if g == nil {
		return
	}
	if g.member != nil {
		w.actor = g.member.ID
	}
	w.revision = g.revision
}

// write runs w through the checks every backend shares, then through writeIn
// inside the backend's write transaction.
//
// Two checks come first, outside any lock, so that no caller can make every
// admin write wait while its request is converted and evaluated:
//   - checkSpec, the structural limits (name length, at most maxIndividual
//     entries, endpoint names). They are public and the same for everyone, so
//     a 400 before authorization reveals nothing about services, members or
//     keys; and a 20k-entry spec never reaches the policy.
//   - a screening authorization on a read snapshot. A deny there (401, 403,
//     409, 422) is returned at once: it is the policy's answer on the state of
//     a moment ago, as if the request had been serialized just before any
//     write in flight. Only an allow goes on to the backend, where the
//     decision is taken again, authoritatively, on the state the write
//     changes (so the key count it sees is the one the write changes). Key
//     writes are rare; the second evaluation of an allowed write is the price
//     of keeping unauthenticated and forbidden traffic off the write lock.
//
// Every outcome is audited: a success by the backend, with the change; a
// refusal or a failure here, before it is answered (auditFailure).
func (s *Store) write(ctx context.Context, w *keyWrite) error {
	if err := s.notLoaded(); err != nil {
		return err
	}
	w.requestID, w.idemKey = callerFrom(ctx).RequestID, callerFrom(ctx).IdempotencyKey
	if w.requestID == "" {
		w.requestID = newRequestID()
	}
	if err := s.screenedWrite(ctx, w); err != nil {
		return s.auditFailure(ctx, w, err)
	}
	return nil
}

func (s *Store) screenedWrite(ctx context.Context, w *keyWrite) error {
	if w.spec != nil {
		if field, reason, ok := checkSpec(w.spec); !ok {
			return specError(field, reason)
		}
	}
	if w.idemKey != "" {
		if _, ok := s.MemberByToken(w.token); ok {
			// A retry may meet a state its first attempt changed (the
			// plan's last key slot taken by that very create): the replay
			// check, under the write path's serialization, comes before
			// any decision, so no screening here.
			return s.update(ctx, w)
		}
	}
	g, err := s.authorize(ctx, s.db.Txn(false), w.action, w.token, w.service, w.spec)
	w.noteGrant(g)
	if err != nil {
		return err
	}
	return s.update(ctx, w)
}

// localBackend is the single-node backend: the state file's journal, written
// under the store's write lock. It is the whole write path of a keygate

// writeIn is the authoritative part of a key write, inside tx: the member
// and the service (with its key count, locked against other writes) are
// read from the transaction, an idempotent retry is answered from the
// audit trail, the policy decides on that state, the key is drawn, put or
// deleted, and the change's audit entry is recorded with it.
func (s *Store) writeIn(ctx context.Context, tx Tx, w *keyWrite) error {
	if err := ctx.Err(); err != nil {
		return internal("request canceled", err)
	}
	g := &grant{}
	req := KeyRequest{Action: w.action, Service: ServiceInput{ID: w.service}, Key: w.spec}
	if w.token != "" {
		m, err := tx.Member(ctx, sha256.Sum256([]byte(w.token)))
		if err != nil {
			return err
		}
		g.member, req.Member = m, m
	}
	svc, count, err := tx.Service(ctx, w.service)
	if err != nil {
		return err
	}
	if svc != nil {
		g.service = svc
		req.Service.Plan, req.Service.KeyCount, req.Service.APIs = svc.Plan, count, svc.APIs
	}
	if w.idemKey != "" && g.member != nil {
		// A replay shows the key as it is now: only to a member who may
		// still read the service's keys (else the write's own decision
		// below refuses). The service's keys are locked, so a first attempt
		// still in flight has ended before this looks.
		read := req
		read.Action, read.Key = ActionRead, nil
		if _, err := s.decideKeys(ctx, read, &grant{member: g.member, service: g.service}); err == nil {
			e, err := tx.AllowedByIdempotencyKey(ctx, w.service, g.member.ID, w.idemKey)
			if err != nil {
				return err
			}
			if e != nil {
				w.actor = g.member.ID
				cur, err := tx.Key(ctx, w.service, e.KeyID)
				if err != nil {
					return err
				}
				return w.replayOf(e, cur)
			}
		}
	}
	g, err = s.decideKeys(ctx, req, g)
	w.noteGrant(g)
	if err != nil {
		return err
	}
	var old *Key
	if w.action != ActionCreate {
		if old, err = tx.Key(ctx, w.service, w.id); err != nil {
			return err
		} else if old == nil {
			return notFound(CodeKeyNotFound, fmt.Sprintf("key %q not found", w.id))
		}
	}
	k, err := nextUnused(ctx, tx, w, old, g)
	if err != nil {
		return err
	}
	if k == nil {
		err = tx.DeleteKey(ctx, old)
	} else {
		err = tx.PutKey(ctx, old, k)
	}
	if err != nil {
		return err
	}
	return tx.RecordAudit(ctx, s.successEntry(ctx, w, old, k))
}

// maxDraws bounds how often a key's id or secret is drawn again when the
// one drawn is already in use. A collision of 80 random bits (ids) or 256
// (secrets) is not expected; the bound is the same on every backend.
const maxDraws = 5

// nextUnused calls w.next until the key it returns has an id (on a create)
// and a secret no other key has, as tx sees them.
func nextUnused(ctx context.Context, tx Tx, w *keyWrite, old *Key, g *grant) (*Key, error) {
	for range maxDraws {
		k, err := w.next(old, g)
		if err != nil || k == nil {
			return k, err
		}
		if old == nil {
			if used, err := tx.KeyIDInUse(ctx, k.ID); err != nil {
				return nil, err
			} else if used {
				continue
			}
		}
		if used, err := tx.SecretInUse(ctx, k.secretHash, k.ID); err != nil {
			return nil, err
		} else if used {
			continue
		}
		return k, nil
	}
	return nil, internal(w.action+" key", fmt.Errorf("no free id or secret after %d draws", maxDraws))
}

// update runs writeIn in the backend's write transaction on w's service.
func (s *Store) update(ctx context.Context, w *keyWrite) error {
	return s.backend.Update(ctx, w.service, func(tx Tx) error { return s.writeIn(ctx, tx, w) })
}
