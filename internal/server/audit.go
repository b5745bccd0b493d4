package server

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/keystore"
)

// AuditStore is the audit trail of key management; *keystore.Store
// implements it. A KeyStore that is not one answers the audit route 404.
type AuditStore interface {
	Audit(ctx context.Context, token, service string, q keystore.AuditQuery) (keystore.AuditPage, error)
}

var _ AuditStore = (*keystore.Store)(nil)

// requestIDHeader carries the id of a key-management write: the audit
// trail records it, and an outcome_unknown answer names it.
const requestIDHeader = "X-Keygate-Request-Id"

// idempotencyHeader makes a key write idempotent (see keystore.Caller);
// replayedHeader marks an answer repeated from the first write.
const (
	idempotencyHeader = "Idempotency-Key"
	replayedHeader    = "Idempotent-Replayed"
	maxIdempotencyKey = 128
)

// keyContext is the request's context carrying, for the audit trail, the
// caller's address (gin's ClientIP under the server's trusted-proxy setting:
// none, so the peer address), a request id, which the answer echoes, and the
// client's Idempotency-Key. A malformed key is a 400 (ok false).
func (s *Server) keyContext(c *gin.Context) (context.Context, bool) {
	id := s.ids.Next()
	c.Header(requestIDHeader, id)
	idem := c.GetHeader(idempotencyHeader)
	if _, sent := c.Request.Header[idempotencyHeader]; sent && !validIdempotencyKey(idem) {
		s.problem(c, http.StatusBadRequest, "invalid_idempotency_key",
			"Idempotency-Key must be 1 to 128 visible ASCII characters.")
		return nil, false
	}
	return keystore.WithCaller(c.Request.Context(), keystore.Caller{Address: c.ClientIP(), RequestID: id, IdempotencyKey: idem}), true
}

func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

type auditBody struct {
	Entries []keystore.AuditEntry `json:"entries"`
	// Next is the cursor of the next (older) page; absent on the last.
	Next string `json:"next,omitempty"`
}

// The cursor is opaque to clients: "a" and the last entry's id, base64url.
func encodeCursor(id uint64) string {
	if id == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte("a" + strconv.FormatUint(id, 10)))
}

func decodeCursor(c string) (uint64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 'a' {
		return 0, false
	}
	id, err := strconv.ParseUint(string(b[1:]), 10, 64)
	return id, err == nil && id > 0
}

var auditActions = []string{keystore.ActionCreate, keystore.ActionUpdate, keystore.ActionRotate, keystore.ActionDelete}

// parseAuditQuery reads limit, cursor, key, actor, action, since and until;
// ok false when it wrote a 400.
func (s *Server) parseAuditQuery(c *gin.Context) (keystore.AuditQuery, bool) {
	q := keystore.AuditQuery{Limit: keystore.DefaultAuditLimit}
	bad := func(param, why string) (keystore.AuditQuery, bool) {
		s.problem(c, http.StatusBadRequest, "invalid_query", "Query parameter "+param+": "+why+".")
		return q, false
	}
	known := map[string]bool{"limit": true, "cursor": true, "key": true, "actor": true, "action": true, "since": true, "until": true}
	for name, v := range c.Request.URL.Query() {
		if !known[name] {
			return bad(name, "unknown parameter (limit, cursor, key, actor, action, since, until)")
		}
		if len(v) > 1 {
			return bad(name, "given more than once")
		}
	}
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > keystore.MaxAuditLimit {
			return bad("limit", "an integer 1.."+strconv.Itoa(keystore.MaxAuditLimit))
		}
		q.Limit = n
	}
	if v, ok := c.GetQuery("cursor"); ok {
		id, ok := decodeCursor(v)
		if !ok {
			return bad("cursor", "not a cursor this server gave out")
		}
		q.Before = id
	}
	q.KeyID, q.Actor = c.Query("key"), c.Query("actor")
	if v, ok := c.GetQuery("action"); ok {
		if !slices.Contains(auditActions, v) {
			return bad("action", "one of "+strings.Join(auditActions, ", "))
		}
		q.Action = v
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if v, ok := c.GetQuery(t.name); ok {
			at, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return bad(t.name, "an RFC 3339 time such as 2026-01-02T15:04:05Z")
			}
			*t.to = at.UTC()
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return bad("since", "must be before until")
	}
	return q, true
}

// handleAudit serves GET /v1/services/{service}/audit: the service's audit
// trail of key management, newest first, to admins of the service (the
// keys policy's "audit" action).
func (s *Server) handleAudit(c *gin.Context) {
	as, ok := s.keys.(AuditStore)
	if !ok {
		s.problem(c, http.StatusNotFound, "not_found", "No audit trail in this key store.")
		return
	}
	q, ok := s.parseAuditQuery(c)
	if !ok {
		return
	}
	page, err := as.Audit(c.Request.Context(), bearer(c), c.Param("service"), q)
	if err != nil {
		s.storeProblem(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, auditBody{Entries: page.Entries, Next: encodeCursor(page.Next)})
}
