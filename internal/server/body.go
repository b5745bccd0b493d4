package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// Every JSON body keygate reads goes through decodeBody: one strict decoder,
// so that no endpoint can read a body more loosely than the others. A body
// is, in this order:
//
//   - at most maxBody bytes (413, before it is read when Content-Length says
//     so);
//   - scanned once, in time and memory linear in its size, before any
//     decoding: nesting at most maxBodyDepth deep, at most maxBodyMembers
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

// Structural bounds of a body. The largest legitimate bodies are far
// inside them: a key spec nests 4 deep with at most 1,000 individual
// endpoints, an IP restriction setting 3 deep with at most 1,000 APIs and
// 1,000 entries a list, a legacy import 3 deep with 100 keys, a decision
// request 2 deep with 100 parameters. The member bound sits above the
// stores' own limits so that their refusals, which name the limit, are
// the ones a client sees.
const (
	maxBodyDepth   = 16
	maxBodyMembers = 4096
)

// bodyRules is how one endpoint's body compares member names.
type bodyRules struct {
	// exactIn names a top-level member whose object's member names are
	// compared exactly (a decision request's query parameters: draftKey
	// and draftkey are two parameters). Every other object's names are
	// compared as encoding/json matches struct fields: Unicode
	// case-insensitively, escapes decoded.
	exactIn string
}

// decodeBody reads the request body into v by the rules above. It writes
// the 4xx problem itself and reports false when the body is unacceptable.
// buf is scratch space for the body (nil is fine); the body is returned in
// it, grown as needed, for the caller to reuse.
func (s *Server) decodeBody(c *gin.Context, buf []byte, v any, rules bodyRules) ([]byte, bool) {
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
	scanner := s.scanners.Get().(*bodyScanner)
	f := scanner.scan(buf, rules)
	s.scanners.Put(scanner)
	switch f.kind {
	case faultNone, faultSyntax:
		// A malformed body is named by the decoder below, which says
		// where and why.
	case faultDuplicate:
		s.problem(c, http.StatusBadRequest, "duplicate_field", "Field "+bounded(f.path, maxEcho)+" appears more than once.")
		return buf, false
	case faultDepth:
		s.problem(c, http.StatusBadRequest, "body_too_complex", fmt.Sprintf("The request body nests deeper than %d levels.", maxBodyDepth))
		return buf, false
	case faultMembers:
		where := "An array or object"
		if f.path != "" {
			where = "Field " + bounded(f.path, maxEcho)
		}
		s.problem(c, http.StatusBadRequest, "body_too_complex", fmt.Sprintf("%s has more than %d members.", where, maxBodyMembers))
		return buf, false
	case faultText:
		s.problem(c, http.StatusBadRequest, "invalid_field", textFaultDetail(f))
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
	if err == nil && f.kind == faultSyntax {
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

func textFaultDetail(f bodyFault) string {
	const rule = "must be UTF-8 text without NUL characters."
	switch {
	case !f.name:
		return "Field " + bounded(f.path, maxEcho) + " " + rule
	case f.path == "":
		return "A member name " + rule
	default:
		return "A member name in " + bounded(f.path, maxEcho) + " " + rule
	}
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
		s.problem(c, http.StatusBadRequest, "invalid_field", fmt.Sprintf("Field %s must be %s, not %s.", bounded(typeErr.Field, maxEcho), typeErr.Type, typeErr.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		s.problem(c, http.StatusBadRequest, "unknown_field", "Unknown field "+bounded(strings.TrimPrefix(err.Error(), "json: unknown field "), maxEcho)+".")
	default:
		s.problem(c, http.StatusBadRequest, "invalid_json", "Malformed JSON: "+bounded(err.Error(), maxEcho))
	}
}

// faultKind is what scanBody found wrong with a body.
type faultKind uint8

const (
	faultNone      faultKind = iota
	faultSyntax              // not one JSON value: the decoder says why
	faultDuplicate           // a member named twice in one object
	faultDepth               // nested deeper than maxBodyDepth
	faultMembers             // an object or array of more than maxBodyMembers
	faultText                // a string that is not UTF-8, or holds a NUL
)

// bodyFault is the first fault of a body and where it is: the dotted path
// of the member ("contentApi.individual.blogs", "keys[0].header"); for a
// faultText in a member name (name true), the path of its object.
type bodyFault struct {
	kind faultKind
	path string
	name bool
}

// smallSet is how many member names of an object are compared one by one;
// a larger object's names go into a set. Either way each member costs a
// bounded amount of work, so the scan is linear in the body's size.
const smallSet = 8

// scanFrame is one open object or array.
type scanFrame struct {
	object bool
	fold   bool
	// n counts the members or elements so far.
	n int
	// name is the current member's name (objects).
	name []byte
	// names[first:] of the scanner are this object's first names, until
	// set takes over.
	first int
	set   map[string]struct{}
}

// bodyScanner checks a body in one pass: a JSON syntax check that stops
// at the first fault.
type bodyScanner struct {
	b     []byte
	i     int
	rules bodyRules
	depth int
	// deepest is the most frames open at once so far.
	deepest int
	frames  [maxBodyDepth]scanFrame
	names   [][]byte
	fault   bodyFault
}

// scanBody returns the first fault of body, or faultNone.
func scanBody(body []byte, rules bodyRules) bodyFault {
	return new(bodyScanner).scan(body, rules)
}

// scan returns the first fault of body, or faultNone. A scanner is reused
// (the server pools them, so that the names' scratch space is not
// allocated per request); it holds no reference into body afterwards.
func (p *bodyScanner) scan(body []byte, rules bodyRules) bodyFault {
	// The frames are clear: new, or cleared by release.
	p.b, p.i, p.rules, p.depth, p.deepest, p.fault = body, 0, rules, 0, 0, bodyFault{}
	defer p.release()
	p.space()
	if p.value() {
		p.space()
		if p.i != len(p.b) {
			p.fail(faultSyntax, false)
		}
	}
	return p.fault
}

// release drops every reference into the body: the frames and the names.
func (p *bodyScanner) release() {
	p.b = nil
	clear(p.names[:cap(p.names)])
	p.names = p.names[:0]
	clear(p.frames[:p.deepest])
}

// fail records the fault at the current position and reports false, so
// that every caller can return at once.
func (p *bodyScanner) fail(kind faultKind, name bool) bool {
	return p.failIn(kind, p.depth, name)
}

// failIn records a fault whose path runs through the innermost depth open
// containers; name says the fault is in the member name being read, which
// is then not part of the path.
func (p *bodyScanner) failIn(kind faultKind, depth int, name bool) bool {
	p.fault = bodyFault{kind: kind, name: name}
	if kind == faultSyntax {
		return false
	}
	var path []byte
	for d := range depth {
		f := &p.frames[d]
		switch {
		case !f.object:
			path = append(path, '[')
			path = strconv.AppendInt(path, int64(max(f.n-1, 0)), 10)
			path = append(path, ']')
		case name && d == depth-1:
		default:
			if len(path) > 0 {
				path = append(path, '.')
			}
			path = append(path, f.name...)
		}
	}
	p.fault.path = string(path)
	if kind == faultDuplicate && p.fault.path == "" {
		p.fault.path = `""` // the empty name, twice at the top
	}
	return false
}

func (p *bodyScanner) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value scans one JSON value at p.i.
func (p *bodyScanner) value() bool {
	if p.i >= len(p.b) {
		return p.fail(faultSyntax, false)
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		_, _, ok := p.str(false)
		return ok
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	default:
		return p.number()
	}
}

// open pushes a frame for the object or array at p.i.
func (p *bodyScanner) open(object bool) (*scanFrame, bool) {
	if p.depth == maxBodyDepth {
		return nil, p.failIn(faultDepth, 0, false)
	}
	fold := true
	if object && p.depth == 1 && p.rules.exactIn != "" && bytes.EqualFold(p.frames[0].name, []byte(p.rules.exactIn)) {
		fold = false
	}
	p.frames[p.depth] = scanFrame{object: object, fold: fold, first: len(p.names)}
	p.depth++
	p.deepest = max(p.deepest, p.depth)
	p.i++
	return &p.frames[p.depth-1], true
}

func (p *bodyScanner) close() {
	p.depth--
	p.names = p.names[:p.frames[p.depth].first]
	p.frames[p.depth] = scanFrame{}
	p.i++
}

func (p *bodyScanner) object() bool {
	f, ok := p.open(true)
	if !ok {
		return false
	}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.close()
		return true
	}
	for {
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return p.fail(faultSyntax, false)
		}
		raw, escaped, ok := p.str(true)
		if !ok {
			return false
		}
		name := raw
		if escaped {
			name = unescape(raw)
		}
		f.n++
		if f.n > maxBodyMembers {
			return p.failIn(faultMembers, p.depth-1, false) // the object's path
		}
		f.name = name
		if !p.remember(f, name) {
			return p.fail(faultDuplicate, false)
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.fail(faultSyntax, false)
		}
		p.i++
		p.space()
		if !p.value() {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return p.fail(faultSyntax, false)
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.close()
			return true
		default:
			return p.fail(faultSyntax, false)
		}
	}
}

func (p *bodyScanner) array() bool {
	f, ok := p.open(false)
	if !ok {
		return false
	}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.close()
		return true
	}
	for {
		f.n++
		if f.n > maxBodyMembers {
			return p.failIn(faultMembers, p.depth-1, false) // the array's path
		}
		p.space()
		if !p.value() {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return p.fail(faultSyntax, false)
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.close()
			return true
		default:
			return p.fail(faultSyntax, false)
		}
	}
}

// remember adds name to the object's names and reports false when the
// object already has it.
func (p *bodyScanner) remember(f *scanFrame, name []byte) bool {
	if f.set == nil {
		for _, seen := range p.names[f.first:] {
			if f.fold && bytes.EqualFold(seen, name) || !f.fold && bytes.Equal(seen, name) {
				return false
			}
		}
		if len(p.names)-f.first < smallSet {
			p.names = append(p.names, name)
			return true
		}
		// The object outgrew one-by-one comparison: its names so far
		// move into a set, and the next ones are looked up there.
		f.set = make(map[string]struct{}, 2*smallSet)
		for _, seen := range p.names[f.first:] {
			f.set[f.setKey(seen)] = struct{}{}
		}
		p.names = p.names[:f.first]
	}
	k := f.setKey(name)
	if _, dup := f.set[k]; dup {
		return false
	}
	f.set[k] = struct{}{}
	return true
}

// setKey is name as the object's set holds it: folded as encoding/json
// folds field names when the object compares names case-insensitively,
// so that two names share a key exactly when bytes.EqualFold says they
// are equal.
func (f *scanFrame) setKey(name []byte) string {
	if !f.fold {
		return string(name)
	}
	var out strings.Builder
	out.Grow(len(name))
	for i := 0; i < len(name); {
		if c := name[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(name[i:])
		out.WriteRune(foldRune(r))
		i += n
	}
	return out.String()
}

// foldRune returns the smallest rune of r's case-folding orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// str scans the string at p.i and returns its raw content (between the
// quotes) and whether it has escapes. Text that is not UTF-8, a NUL
// (escaped: a raw one is a control character, a syntax error) and a lone
// UTF-16 surrogate escape are text faults.
func (p *bodyScanner) str(name bool) (raw []byte, escaped, ok bool) {
	p.i++ // the opening quote
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' {
			p.i++
			continue
		}
		switch {
		case c == '"':
			raw = p.b[start:p.i]
			p.i++
			return raw, escaped, true
		case c == '\\':
			escaped = true
			if !p.escape(name) {
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, p.fail(faultSyntax, false)
		default:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false, p.fail(faultText, name)
			}
			p.i += n
		}
	}
	return nil, false, p.fail(faultSyntax, false)
}

// escape scans the escape sequence at p.i.
func (p *bodyScanner) escape(name bool) bool {
	if p.i+1 >= len(p.b) {
		return p.fail(faultSyntax, false)
	}
	switch p.b[p.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		p.i += 2
		return true
	case 'u':
	default:
		return p.fail(faultSyntax, false)
	}
	r, ok := hex4(p.b, p.i+2)
	if !ok {
		return p.fail(faultSyntax, false)
	}
	p.i += 6
	switch {
	case r == 0:
		return p.fail(faultText, name)
	case r >= 0xdc00 && r < 0xe000:
		return p.fail(faultText, name) // a low surrogate first
	case r >= 0xd800 && r < 0xdc00:
		if p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
			return p.fail(faultText, name)
		}
		lo, ok := hex4(p.b, p.i+2)
		if !ok {
			return p.fail(faultSyntax, false)
		}
		if lo < 0xdc00 || lo >= 0xe000 {
			return p.fail(faultText, name)
		}
		p.i += 6
	}
	return true
}

// hex4 reads the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape decodes the escapes of raw, a string's content that str
// checked.
func unescape(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw, i+1)
			i += 4
			if utf16.IsSurrogate(r) {
				lo, _ := hex4(raw, i+3)
				r = utf16.DecodeRune(r, lo)
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, raw[i])
		}
	}
	return out
}

func (p *bodyScanner) literal(lit string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		return p.fail(faultSyntax, false)
	}
	p.i += len(lit)
	return true
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *bodyScanner) number() bool {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return p.fail(faultSyntax, false)
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return p.fail(faultSyntax, false)
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return p.fail(faultSyntax, false)
		}
		i = j
	}
	p.i = i
	return true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
