package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/text"
)

// Problem is an RFC 9457 problem details object with keygate's extension
// members. It is the body of every error answer.
type Problem struct {
	Type       string               `json:"type"`
	Title      string               `json:"title"`
	Status     int                  `json:"status"`
	Detail     string               `json:"detail,omitempty"`
	Instance   string               `json:"instance,omitempty"`
	Code       string               `json:"code"`
	Violations []keystore.Violation `json:"violations,omitempty"`
	Limit      int                  `json:"limit,omitempty"`
	// RequestID names the write on an outcome_unknown answer.
	RequestID string `json:"requestId,omitempty"`
}

const problemContentType = "application/problem+json"

// problem writes a problem+json answer and stops the handler chain.
func (s *Server) problem(c *gin.Context, status int, code, detail string) {
	s.writeProblem(c, Problem{Status: status, Code: code, Detail: detail})
}

func (s *Server) writeProblem(c *gin.Context, p Problem) {
	if p.Type == "" {
		p.Type = "https://keygate.dev/problems/" + strings.ReplaceAll(p.Code, "_", "-")
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = c.Request.URL.Path
	b, err := json.Marshal(p)
	if err != nil {
		b = []byte(`{"title":"Internal Server Error","status":500,"code":"internal"}`)
		p.Status = http.StatusInternalServerError
	}
	c.Abort()
	c.Data(p.Status, problemContentType, b)
}

// storeProblem maps an error of a key operation to its answer: the one
// place where domain errors become HTTP statuses.
func (s *Server) storeProblem(c *gin.Context, err error) {
	var ke *keystore.Error
	if errors.As(err, &ke) {
		if ke.Status >= 500 {
			s.log.ErrorContext(c.Request.Context(), "key operation failed", "code", ke.Code, "error", err.Error())
		}
		p := Problem{Status: ke.Status, Code: ke.Code, Detail: ke.Message, Violations: ke.Violations, Limit: ke.Limit, RequestID: ke.RequestID}
		if ke.Status == http.StatusUnauthorized {
			c.Header("WWW-Authenticate", `Bearer realm="keygate"`)
		}
		switch {
		case ke.Code == keystore.CodeOutcomeUnknown:
			p.Detail = "The database connection failed during the commit: the write may or may not have been applied. " +
				"Look for requestId " + ke.RequestID + " in GET /v1/services/{service}/audit before retrying."
		case ke.Code == keystore.CodeStoreBusy:
			p.Detail = "Another write held this service's keys longer than the lock timeout; nothing was changed. Retry."
		case ke.Status >= 500:
			p.Detail = "The key store could not complete the operation."
		}
		s.writeProblem(c, p)
		return
	}
	s.log.ErrorContext(c.Request.Context(), "key operation failed", "error", err.Error())
	s.problem(c, http.StatusInternalServerError, "internal", "The key store could not complete the operation.")
}

// accessLog logs every request except the decision endpoints, whose
// answers the decision log records already (one line per decision, off the
// hot path).
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	path := c.Request.URL.Path
	if path == "/v1/decide" || strings.HasPrefix(path, "/v1/forward-auth") || path == "/metrics" || path == "/health" {
		return
	}
	level := slog.LevelInfo
	if c.Writer.Status() >= 500 {
		level = slog.LevelError
	}
	// Every text field is the client's: bounded here, where it is
	// written, so that a request of a long path or method cannot make
	// the line long. A cut path keeps its length beside it.
	attrs := [...]slog.Attr{
		slog.String("method", text.Bounded(c.Request.Method, maxLogText)), slog.String("path", text.Bounded(path, maxLogText)),
		slog.Int("status", c.Writer.Status()), slog.Float64("took_ms", millis(time.Since(start))),
		slog.String("remote", text.Bounded(c.Request.RemoteAddr, maxLogText)), slog.Int("pathBytes", len(path)),
	}
	n := len(attrs)
	if len(path) <= maxLogText {
		n-- // pathBytes only for a cut path
	}
	s.log.LogAttrs(c.Request.Context(), level, "request", attrs[:n]...)
}

// recovery turns a panic into a 500 problem and a log line with the stack.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.ErrorContext(c.Request.Context(), "panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if !c.Writer.Written() {
				s.problem(c, http.StatusInternalServerError, "internal", "Internal error.")
			}
		}
	}()
	c.Next()
}
