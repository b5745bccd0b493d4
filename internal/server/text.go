package server

import (
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// Bounds on client text echoed in an answer (a field name) and written to
// the access log (a path, a method).
const (
	maxEcho    = 100
	maxLogText = 256
)

// bounded returns s when it is at most limit bytes; else its longest prefix
// that ends on a rune boundary and, with "…" appended, is at most limit
// bytes. Text from a client, cut where it is written: a log line, an
// answer, a policy message.
func bounded(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const ellipsis = "…"
	cut := max(limit-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// storableText reports whether s is text every key store keeps as it is:
// valid UTF-8 without NUL (PostgreSQL refuses both in text columns).
func storableText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// storableRequest refuses, with a 400, a request to the key-management
// routes whose path or query holds text a store could not keep: every
// path segment and query value reaches a store (a service id, a key id,
// an audit filter), and a store must never be the one to refuse it — on
// PostgreSQL that refusal would be an error of the database, answered 503
// store_unavailable and counted as an outage. Body strings are checked by
// decodeBody.
func (s *Server) storableRequest(c *gin.Context) {
	if !storableText(c.Request.URL.Path) {
		s.problem(c, http.StatusBadRequest, "invalid_path",
			"The path must be UTF-8 text without NUL characters (after percent-decoding).")
		return
	}
	if raw := c.Request.URL.RawQuery; raw != "" {
		q, err := url.ParseQuery(raw)
		if err != nil {
			s.problem(c, http.StatusBadRequest, "invalid_query", "The query string is malformed.")
			return
		}
		for name, values := range q {
			ok := storableText(name)
			for _, v := range values {
				ok = ok && storableText(v)
			}
			if !ok {
				s.problem(c, http.StatusBadRequest, "invalid_query",
					"Query parameters must be UTF-8 text without NUL characters (after percent-decoding).")
				return
			}
		}
	}
	c.Next()
}
