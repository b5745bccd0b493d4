package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/keystore"
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

// decodeJSON reads a JSON body strictly: bounded size, no unknown fields,
// exactly one value. It writes the 400/413 problem itself and reports false
// when the body is unacceptable.
func (s *Server) decodeJSON(c *gin.Context, v any) bool {
	if !s.jsonContentType(c) {
		return false
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody)
	dec := json.NewDecoder(body)
	return s.decodeWith(c, dec, v)
}

// decodeJSONOnce is decodeJSON for a body in which a member named twice is
// a malformed request (the decision request): the body is read into buf
// (grown as needed and returned for reuse) and scanned for duplicate keys
// before it is decoded.
func (s *Server) decodeJSONOnce(c *gin.Context, buf []byte, v any) ([]byte, bool) {
	if !s.jsonContentType(c) {
		return buf, false
	}
	buf, err := readAll(buf, http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody))
	if err != nil {
		s.decodeError(c, err)
		return buf, false
	}
	if dup, found := duplicateKey(buf); found {
		s.problem(c, http.StatusBadRequest, "duplicate_field", "Field "+clip(dup)+" appears more than once.")
		return buf, false
	}
	return buf, s.decodeWith(c, json.NewDecoder(bytes.NewReader(buf)), v)
}

// decodeJSONUnique is decodeJSON for a body in which a member named twice
// in any object is a malformed request (a key write): 400 duplicate_field.
func (s *Server) decodeJSONUnique(c *gin.Context, v any) bool {
	if !s.jsonContentType(c) {
		return false
	}
	buf, err := readAll(nil, http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody))
	if err != nil {
		s.decodeError(c, err)
		return false
	}
	if dup := duplicateMemberDeep(buf); dup != "" {
		s.problem(c, http.StatusBadRequest, "duplicate_field", "Field "+clip(dup)+" appears more than once.")
		return false
	}
	return s.decodeWith(c, json.NewDecoder(bytes.NewReader(buf)), v)
}

// clip bounds a name taken from the request before it is echoed in an
// answer: a body of up to 1 MiB may name a field of almost that length.
func clip(name string) string {
	const maxEcho = 100
	if len(name) <= maxEcho {
		return name
	}
	return strings.ToValidUTF8(name[:maxEcho], "") + "…"
}

// readAll appends everything r yields to buf.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (s *Server) jsonContentType(c *gin.Context) bool {
	if ct := c.ContentType(); ct != "" && ct != "application/json" {
		s.problem(c, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return false
	}
	return true
}

func (s *Server) decodeWith(c *gin.Context, dec *json.Decoder, v any) bool {
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	s.decodeError(c, err)
	return false
}

// decodeError writes the problem for a body that could not be read or
// decoded.
func (s *Server) decodeError(c *gin.Context, err error) {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		s.problem(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("The request body is larger than %d bytes.", tooBig.Limit))
	case errors.Is(err, io.EOF):
		s.problem(c, http.StatusBadRequest, "invalid_json", "The request body is empty; a JSON object is required.")
	case errors.As(err, &syntax):
		s.problem(c, http.StatusBadRequest, "invalid_json", fmt.Sprintf("Malformed JSON at byte %d: %v", syntax.Offset, syntax))
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			// The body itself has the wrong type; its Go type name means
			// nothing to a client.
			s.problem(c, http.StatusBadRequest, "invalid_field", fmt.Sprintf("The request body must be a JSON object, not %s.", typeErr.Value))
			break
		}
		s.problem(c, http.StatusBadRequest, "invalid_field", fmt.Sprintf("Field %s must be %s, not %s.", typeErr.Field, typeErr.Type, typeErr.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		s.problem(c, http.StatusBadRequest, "unknown_field", "Unknown field "+clip(strings.TrimPrefix(err.Error(), "json: unknown field "))+".")
	default:
		s.problem(c, http.StatusBadRequest, "invalid_json", "Malformed JSON: "+err.Error())
	}
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
	s.log.LogAttrs(c.Request.Context(), level, "request",
		slog.String("method", c.Request.Method), slog.String("path", path),
		slog.Int("status", c.Writer.Status()), slog.Float64("took_ms", millis(time.Since(start))),
		slog.String("remote", c.Request.RemoteAddr))
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
