package server

import (
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

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
