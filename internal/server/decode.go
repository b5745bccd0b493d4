package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/strictjson"
	"github.com/keygate/keygate/internal/text"
)

// Every JSON body keygate reads goes through decodeBody: one strict decoder,
// so that no endpoint can read a body more loosely than the others. A body
// is, in this order:
//
//   - at most maxBody bytes (413, before it is read when Content-Length says
//     so);
//   - scanned once, in time and memory linear in its size, before any
//     decoding: nesting at most strictjson.MaxDepth deep, at most strictjson.MaxMembers
//     members or elements in any object or array (400 body_too_complex),
//     no member named twice in any object (400 duplicate_field), and every
//     string, member names included, valid UTF-8 without NUL (400
//     invalid_field): text a store keeps must be text it can keep;
//   - decoded with encoding/json: unknown fields and trailing data refused.
//
// encoding/json alone would keep the last of two equal members, merge two
// objects of the same name ({"default":{"get":true},"default":{"post":true}}
// grants both), match struct fields case-insensitively ("name" and "NAME"
// are one field), replace invalid UTF-8 silently and nest up to 10,000
// levels; a body that says two things, or that the store would refuse as
// "unavailable", is refused here instead.

// decodeBody reads the request body into v by the rules above. It writes
// the 4xx problem itself and reports false when the body is unacceptable.
// buf is scratch space for the body (nil is fine); the body is returned in
// it, grown as needed, for the caller to reuse.
func (s *Server) decodeBody(c *gin.Context, buf []byte, v any, rules strictjson.Rules) ([]byte, bool) {
	if !s.jsonContentType(c) {
		return buf, false
	}
	if c.Request.ContentLength > s.maxBody {
		s.decodeError(c, &http.MaxBytesError{Limit: s.maxBody})
		return buf, false
	}
	buf, err := readAll(buf, http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody))
	if err != nil {
		s.decodeError(c, err)
		return buf, false
	}
	scanner := s.scanners.Get().(*strictjson.Scanner)
	f := scanner.Scan(buf, rules)
	s.scanners.Put(scanner)
	switch f.Kind {
	case strictjson.FaultNone, strictjson.FaultSyntax:
		// A malformed body is named by the decoder below, which says
		// where and why.
	case strictjson.FaultDuplicate:
		s.problem(c, http.StatusBadRequest, "duplicate_field", "Field "+text.Bounded(f.Path, text.MaxEcho)+" appears more than once.")
		return buf, false
	case strictjson.FaultDepth:
		s.problem(c, http.StatusBadRequest, "body_too_complex", fmt.Sprintf("The request body nests deeper than %d levels.", strictjson.MaxDepth))
		return buf, false
	case strictjson.FaultMembers:
		where := "An array or object"
		if f.Path != "" {
			where = "Field " + text.Bounded(f.Path, text.MaxEcho)
		}
		s.problem(c, http.StatusBadRequest, "body_too_complex", fmt.Sprintf("%s has more than %d members.", where, strictjson.MaxMembers))
		return buf, false
	case strictjson.FaultText:
		s.problem(c, http.StatusBadRequest, "invalid_field", strictjson.TextFaultDetail(f))
		return buf, false
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil && f.Kind == strictjson.FaultSyntax {
		// The scan and the decoder disagree on what is JSON: refuse,
		// rather than accept a body the scan did not check.
		err = errors.New("the body is not one JSON value")
	}
	if err != nil {
		s.decodeError(c, err)
		return buf, false
	}
	return buf, true
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
		s.problem(c, http.StatusBadRequest, "invalid_field", fmt.Sprintf("Field %s must be %s, not %s.", text.Bounded(typeErr.Field, text.MaxEcho), typeErr.Type, typeErr.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		s.problem(c, http.StatusBadRequest, "unknown_field", "Unknown field "+text.Bounded(strings.TrimPrefix(err.Error(), "json: unknown field "), text.MaxEcho)+".")
	default:
		s.problem(c, http.StatusBadRequest, "invalid_json", "Malformed JSON: "+text.Bounded(err.Error(), text.MaxEcho))
	}
}
