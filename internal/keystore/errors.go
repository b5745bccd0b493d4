package keystore

import (
	"fmt"
	"net/http"
)

// Error codes the store itself produces; others come from the policy decision.
const (
	CodeKeyNotFound      = "key_not_found"
	CodeServiceNotFound  = "service_not_found"
	CodeInvalidKeySpec   = "invalid_key_spec"
	CodeAuthorizerFailed = "authorizer_failed"
	CodeForbidden        = "forbidden"
	CodeInternal         = "internal"
)

// Error is the one error type of key operations. The server maps it to an
// application/problem+json answer: Status and Code come from the policy
// decision on a deny, or are 404 key_not_found/service_not_found, 400
// invalid_key_spec, or 500 for storage and authorizer failures.
type Error struct {
	Status     int
	Code       string
	Message    string
	Violations []Violation
	// Limit is the plan's key limit, on a key_limit_exceeded refusal.
	Limit int
	// RequestID names the request on an outcome_unknown answer (the audit
	// trail finds it).
	RequestID string
	Err       error // underlying cause, if any
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("keystore: %d %s: %s: %v", e.Status, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("keystore: %d %s: %s", e.Status, e.Code, e.Message)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

func notFound(code, msg string) *Error {
	return &Error{Status: http.StatusNotFound, Code: code, Message: msg}
}

func internal(msg string, err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: msg, Err: err}
}

// DataError reports a malformed data/ or state file: which file, which field,
// and why. Open and ReloadData return it (wrapped).
type DataError struct {
	File   string
	Field  string
	Reason string
	Err    error
}

// Error implements error.
func (e *DataError) Error() string {
	s := e.File
	if e.Field != "" {
		s += ": " + e.Field
	}
	s += ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *DataError) Unwrap() error { return e.Err }

// UnavailableError is the 503 store_unavailable a driver answers while its
// storage cannot be reached (or the index is not loaded yet).
func UnavailableError(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeStoreUnavailable, Message: "the key store database is unavailable", Err: err}
}
