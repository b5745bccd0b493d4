package keystore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/text"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The audit trail of key management: every key create,
// update, rotation and deletion, and every refused or failed attempt, with
// who asked, from where, what the key looked like before and after (never a
// secret or its hash) and the policy revision that decided. Successful writes
// are recorded by the backend together with the change (PostgreSQL: in the
// same transaction; local: in state.json.audit, fsynced before the answer);
// refusals are recorded by Store.write before the refusal is answered.

// Outcomes of an audited attempt.
const (
	// OutcomeAllowed: the change was made.
	OutcomeAllowed = "allowed"
	// OutcomeRefused: refused with a 4xx (policy deny, unknown key or
	// service, invalid request); nothing changed.
	OutcomeRefused = "refused"
	// OutcomeFailed: a 5xx of the store or the authorizer; nothing changed.
	OutcomeFailed = "failed"
)

// ActionAudit is the keys policy action that reads a service's audit trail.
const ActionAudit = "audit"

// CodeOutcomeUnknown is the code of a 503 for a PostgreSQL write whose
// COMMIT was sent but whose answer never came, when the outcome could not be
// found out either: the request id in the answer finds it in the audit trail.
const CodeOutcomeUnknown = "outcome_unknown"

// CodeStoreUnavailable is the code of a 503 for a key operation while the
// storage cannot be reached (or the index is not loaded yet).
const CodeStoreUnavailable = "store_unavailable"

// CodeStoreBusy is the code of a 503 for a PostgreSQL write that waited
// longer than the lock or statement timeout (another transaction held the
// service's row): nothing was changed.
const CodeStoreBusy = "store_busy"

// maxAuditField bounds the free-text fields taken from a request (service,
// key id) that an audit entry stores: an unknown caller must not make the
// trail store megabytes per attempt.
const maxAuditField = 128

// AuditConfig is a key's configuration as the audit trail keeps it: the
// name, the permissions and the revision; never a secret or a secret hash.
type AuditConfig struct {
	Name          string          `json:"name"`
	ContentAPI    ContentAPI      `json:"contentApi"`
	ManagementAPI ManagementPerms `json:"managementApi"`
	// Revision is the key's revision (0 for a configuration that was only
	// asked for).
	Revision uint64 `json:"revision,omitempty"`
}

// AuditConfigOf is what the audit trail records of k (nil for nil): its
// name, permissions and revision, never its secret.
func AuditConfigOf(k *Key) *AuditConfig {
	if k == nil {
		return nil
	}
	return &AuditConfig{Name: k.Name, ContentAPI: k.ContentAPI.Clone(), ManagementAPI: k.ManagementAPI, Revision: k.Revision}
}

func configOfSpec(spec *KeySpec) *AuditConfig {
	if spec == nil {
		return nil
	}
	return &AuditConfig{Name: spec.Name, ContentAPI: spec.ContentAPI.Clone(), ManagementAPI: spec.ManagementAPI}
}

// AuditEntry is one audited key-management attempt.
type AuditEntry struct {
	// ID orders the trail of a store: larger is later (local: the entry's
	// position in state.json.audit; PostgreSQL: the audit row's id).
	ID      uint64    `json:"id"`
	At      time.Time `json:"at"`
	Service string    `json:"service"`
	KeyID   string    `json:"keyId,omitempty"`
	Action  string    `json:"action"`
	// Actor is the member id; empty when the token matched no member.
	Actor   string `json:"actor,omitempty"`
	Outcome string `json:"outcome"`
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	// Before is the key's configuration before the attempt (absent for a
	// create or an unknown key); After its configuration after a change,
	// or, on a refusal, the configuration that was asked for.
	Before *AuditConfig `json:"before,omitempty"`
	After  *AuditConfig `json:"after,omitempty"`
	// PolicyRevision is the revision of the keys policy that decided (empty
	// when no decision was taken, e.g. an invalid request).
	PolicyRevision string `json:"policyRevision,omitempty"`
	// ClientIP is the caller's address as the server determined it.
	ClientIP string `json:"clientIp,omitempty"`
	// RequestID is the server's id of the request (X-Keygate-Request-Id).
	RequestID string `json:"requestId,omitempty"`
	// IdempotencyKey is the client's Idempotency-Key of the request.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// StoreRevision is the change's position in the store (local: the
	// state log's seq; PostgreSQL: the change revision), allowed only.
	StoreRevision uint64 `json:"storeRevision,omitempty"`
	// Recovered marks an entry written at start-up for a change found in
	// the state without its audit entry (a crash between the two).
	Recovered bool `json:"recovered,omitempty"`
}

// AuditQuery selects entries of one service's trail, newest first.
type AuditQuery struct {
	KeyID, Actor, Action string
	// Since and Until bound At: Since ≤ At < Until; zero means unbounded.
	Since, Until time.Time
	// Before is a cursor: only entries with an ID below it (0: from the newest).
	Before uint64
	// Limit is the page size, 1..MaxAuditLimit.
	Limit int
}

// Audit page sizes.
const (
	DefaultAuditLimit = 50
	MaxAuditLimit     = 100
)

// AuditPage is one page of a trail. Next is the cursor of the next (older)
// page; 0 when this is the last.
type AuditPage struct {
	Entries []AuditEntry
	Next    uint64
}

// Matches reports whether e, an entry of service's trail, passes q's filters
// (a driver that filters in memory uses it).
func (q *AuditQuery) Matches(e *AuditEntry, service string) bool {
	return e.Service == service &&
		(q.Before == 0 || e.ID < q.Before) &&
		(q.KeyID == "" || e.KeyID == q.KeyID) &&
		(q.Actor == "" || e.Actor == q.Actor) &&
		(q.Action == "" || e.Action == q.Action) &&
		(q.Since.IsZero() || !e.At.Before(q.Since)) &&
		(q.Until.IsZero() || e.At.Before(q.Until))
}

// Caller is what the server knows about who sends a key-management request
// beyond the token: the address and the request id, for the audit trail.
type Caller struct {
	Address   string
	RequestID string
	// IdempotencyKey, when set, makes a key write idempotent: a write by
	// the same member on the same service with the same key that was
	// already made is answered from the audit trail instead of made again.
	IdempotencyKey string
}

type callerKey struct{}

// WithCaller returns ctx carrying c; key writes made with it record c in
// the audit trail.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "kg-" + hex.EncodeToString(b[:])
}

// SuccessStatus is the HTTP status of a successful write of action.
func SuccessStatus(action string) int {
	switch action {
	case ActionCreate:
		return http.StatusCreated
	case ActionDelete:
		return http.StatusNoContent
	default:
		return http.StatusOK
	}
}

// Bounds of what an audit entry stores, whatever the request carried: the
// trail keeps identifiers and a sentence, never a caller's payload.
const (
	// maxAuditText bounds the message and a configuration's name.
	maxAuditText = text.MaxMessageBytes
	// maxAuditEndpoints bounds the individual entries of a recorded
	// configuration (a refused request may carry more than a key may).
	maxAuditEndpoints = maxIndividual
)

// escapeText makes s text every store keeps: a NUL byte becomes the six
// characters \u0000 and a byte that is not UTF-8 becomes U+FFFD (PostgreSQL's
// text and jsonb refuse both). Text without either is returned as it is.
func escapeText(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", `\u0000`)
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

// auditText makes s fit an audit entry: escaped (escapeText), and what
// exceeds n bytes cut on a rune boundary and marked "…".
func auditText(s string, n int) string {
	s = escapeText(s)
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// Escaped is e with every text field escaped (escapeText) and nothing cut:
// how an audit trail written before the bounds is imported.
func (e AuditEntry) Escaped() AuditEntry {
	for _, f := range []*string{&e.Service, &e.KeyID, &e.Action, &e.Actor, &e.Outcome, &e.Code, &e.Message, &e.PolicyRevision, &e.ClientIP, &e.RequestID, &e.IdempotencyKey} {
		*f = escapeText(*f)
	}
	e.Before, e.After = e.Before.limited(escapeText, escapeText, -1), e.After.limited(escapeText, escapeText, -1)
	return e
}

// bound makes every text field of e fit the trail (auditText): identifiers
// to maxAuditField bytes, the message and configuration names to
// maxAuditText. It is applied to every entry where it is written, success
// or refusal, whichever driver stores it.
func (e *AuditEntry) bound() {
	for _, f := range []*string{&e.Service, &e.KeyID, &e.Action, &e.Actor, &e.Outcome, &e.Code, &e.PolicyRevision, &e.ClientIP, &e.RequestID, &e.IdempotencyKey} {
		*f = auditText(*f, maxAuditField)
	}
	e.Message = auditText(e.Message, maxAuditText)
	name := func(s string) string { return auditText(s, maxAuditText) }
	endpoint := func(s string) string { return auditText(s, maxAuditField) }
	e.Before, e.After = e.Before.limited(name, endpoint, maxAuditEndpoints), e.After.limited(name, endpoint, maxAuditEndpoints)
}

// limited is c with name applied to its name, endpoint to its endpoint
// names, and at most max individual entries (max < 0: all); c itself when
// nothing changes.
func (c *AuditConfig) limited(name, endpoint func(string) string, max int) *AuditConfig {
	if c == nil {
		return nil
	}
	fits := name(c.Name) == c.Name && (max < 0 || len(c.ContentAPI.Individual) <= max)
	for ep := range c.ContentAPI.Individual {
		fits = fits && endpoint(ep) == ep
	}
	if fits {
		return c
	}
	out := *c
	out.Name = name(c.Name)
	out.ContentAPI.Individual = make(map[string]ContentPerms, len(c.ContentAPI.Individual))
	for _, ep := range slices.Sorted(maps.Keys(c.ContentAPI.Individual)) {
		if len(out.ContentAPI.Individual) == max {
			break
		}
		out.ContentAPI.Individual[endpoint(ep)] = c.ContentAPI.Individual[ep]
	}
	return &out
}

// newAuditEntry starts the entry of w: who, from where, on what.
func (s *Store) newAuditEntry(ctx context.Context, w *keyWrite) *AuditEntry {
	c := callerFrom(ctx)
	return &AuditEntry{
		At: s.stamp(), Service: w.service, KeyID: w.id, Action: w.action, Actor: w.actor,
		PolicyRevision: w.revision, ClientIP: c.Address, RequestID: w.requestID, IdempotencyKey: w.idemKey,
	}
}

// successEntry is the audit entry of a write that changed old into k (k nil:
// deleted), to be made durable with the change.
func (s *Store) successEntry(ctx context.Context, w *keyWrite, old, k *Key) *AuditEntry {
	e := s.newAuditEntry(ctx, w)
	e.Outcome, e.Status, e.Code = OutcomeAllowed, SuccessStatus(w.action), "allowed"
	e.Before, e.After = AuditConfigOf(old), AuditConfigOf(k)
	if k != nil {
		e.KeyID = k.ID
	}
	e.bound()
	return e
}

// auditFailure records an attempt answered with err and returns the answer:
// err itself, or, when a refusal could not be recorded, an error saying so
// (no refusal is answered without its record). A failure of the store or of
// the authorizer (5xx) is recorded when possible, but not at the price of
// another error; a database that is down is not asked at all.
func (s *Store) auditFailure(ctx context.Context, w *keyWrite, err error) error {
	var ke *Error
	if !errors.As(err, &ke) || ke.Code == CodeOutcomeUnknown || ke.Code == CodeStoreUnavailable {
		return err
	}
	txn := s.db.Txn(false)
	if w.actor == "" && w.token != "" {
		if m, ok := s.MemberByToken(w.token); ok {
			w.actor = m.ID
		}
	}
	e := s.newAuditEntry(ctx, w)
	e.Status, e.Code, e.Message = ke.Status, ke.Code, ke.Message
	e.Outcome = OutcomeRefused
	if ke.Status >= 500 {
		e.Outcome = OutcomeFailed
	}
	if w.id != "" {
		if k, err := s.findKey(txn, w.service, w.id); err == nil {
			e.Before = AuditConfigOf(k)
		}
	}
	e.After = configOfSpec(w.spec)
	e.bound()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if aerr := s.backend.Audit(actx, e); aerr != nil {
		s.log.Error("audit record of a refused key write failed", "action", w.action, "service", w.service, "status", ke.Status, "err", aerr)
		if e.Outcome == OutcomeFailed {
			return err
		}
		var ae *Error
		if errors.As(aerr, &ae) {
			return ae
		}
		return internal("audit trail write failed", aerr)
	}
	return err
}

// CodeIdempotencyKeyReused is the code of a 422 for an idempotency key
// that an earlier, different write of the same member already used.
const CodeIdempotencyKeyReused = "idempotency_key_reused"

// replayOf checks that e, an earlier allowed write with w's idempotency key,
// is the same request as w, and answers w from it: current is the key as it
// is now (nil when gone).
func (w *keyWrite) replayOf(e *AuditEntry, current *Key) error {
	same := e.Action == w.action && (w.action == ActionCreate || e.KeyID == w.id)
	if same && w.spec != nil {
		same = e.After != nil && e.After.Name == w.spec.Name && e.After.ManagementAPI == w.spec.ManagementAPI &&
			e.After.ContentAPI.Default == w.spec.ContentAPI.Default && maps.Equal(e.After.ContentAPI.Individual, w.spec.ContentAPI.Individual)
	}
	if !same {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeIdempotencyKeyReused,
			Message: fmt.Sprintf("this Idempotency-Key was used for another request (%s of key %q at %s); use a new key for a new request",
				e.Action, e.KeyID, e.At.Format(time.RFC3339))}
	}
	if current == nil && e.After != nil {
		// Gone since: answer with the key as that write left it.
		current = &Key{ID: e.KeyID, Service: e.Service, Name: e.After.Name, ContentAPI: e.After.ContentAPI.Clone(),
			ManagementAPI: e.After.ManagementAPI, Revision: e.After.Revision}
	}
	if w.replay != nil {
		w.replay(current)
	}
	return nil
}

// auditTimeout bounds recording a refusal.
const auditTimeout = 5 * time.Second

// Audit returns one page of a service's audit trail, newest first (action
// "audit": admins of the service only, by policy).
func (s *Store) Audit(ctx context.Context, token, service string, q AuditQuery) (AuditPage, error) {
	if err := s.notLoaded(); err != nil {
		return AuditPage{}, err
	}
	if q.Limit <= 0 {
		q.Limit = DefaultAuditLimit
	}
	if q.Limit > MaxAuditLimit {
		return AuditPage{}, &Error{Status: http.StatusBadRequest, Code: "invalid_query", Message: fmt.Sprintf("limit must be 1..%d", MaxAuditLimit)}
	}
	if _, err := s.authorize(ctx, s.db.Txn(false), ActionAudit, token, service, nil); err != nil {
		return AuditPage{}, err
	}
	return s.backend.AuditPage(ctx, service, q)
}
