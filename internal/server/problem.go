package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

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
