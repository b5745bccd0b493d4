// Package strictjson scans a JSON body once, in time and memory linear in
// its size, for what encoding/json lets through: nesting deeper than
// MaxDepth, objects or arrays of more than MaxMembers members, a member
// named twice in one object, and strings (member names included) that are
// not valid UTF-8 or hold a NUL. The HTTP server scans every body it reads
// with it before decoding; replay scans a logged decision request the same
// way, so a line /v1/decide would refuse is refused there too.
package strictjson

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/keygate/keygate/internal/text"
)

// Structural bounds of a body. The largest legitimate bodies are far
// inside them: a key spec nests 4 deep with at most 1,000 individual
// endpoints, an IP restriction setting 3 deep with at most 1,000 APIs and
// 1,000 entries a list, a legacy import 3 deep with 100 keys, a decision
// request 2 deep with 100 parameters. The member bound sits above the
// stores' own limits so that their refusals, which name the limit, are
// the ones a client sees.
const (
	MaxDepth   = 16
	MaxMembers = 4096
)

// Rules is how one endpoint's body compares member names.
type Rules struct {
	// ExactIn names a top-level member whose object's member names are
	// compared exactly (a decision request's query parameters: draftKey
	// and draftkey are two parameters). Every other object's names are
	// compared as encoding/json matches struct fields: Unicode
	// case-insensitively, escapes decoded.
	ExactIn string
	// AllowNUL takes a NUL (\u0000) as text. A decision-log line may hold
	// one: /v1/decide decodes %00 in a path or query to it, and the log
	// writes it exactly, so replay reads it back as it was asked.
	AllowNUL bool
}

// TextFaultDetail is the problem detail of a FaultText: which field, or
// which object's member name, is not text.
func TextFaultDetail(f Fault) string {
	const rule = "must be UTF-8 text without NUL characters."
	switch {
	case !f.Name:
		return "Field " + text.Bounded(f.Path, text.MaxEcho) + " " + rule
	case f.Path == "":
		return "A member name " + rule
	default:
		return "A member name in " + text.Bounded(f.Path, text.MaxEcho) + " " + rule
	}
}

// FaultKind is what Scan found wrong with a body.
type FaultKind uint8

const (
	FaultNone      FaultKind = iota
	FaultSyntax              // not one JSON value: the decoder says why
	FaultDuplicate           // a member named twice in one object
	FaultDepth               // nested deeper than MaxDepth
	FaultMembers             // an object or array of more than MaxMembers
	FaultText                // a string that is not UTF-8, or holds a NUL
)

// Fault is the first fault of a body and where it is: the dotted path
// of the member ("contentApi.individual.blogs", "keys[0].header"); for a
// FaultText in a member name (Name true), the path of its object.
type Fault struct {
	Kind FaultKind
	Path string
	Name bool
}

// smallSet is how many member names of an object are compared one by one
// (16: a management permission set has 9, and a set costs allocations);
// a larger object's names go into a set. Either way each member costs a
// bounded amount of work, so the scan is linear in the body's size.
const smallSet = 16

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

// Scanner checks a body in one pass: a JSON syntax check that stops
// at the first fault.
type Scanner struct {
	b     []byte
	i     int
	rules Rules
	depth int
	// deepest is the most frames open at once so far.
	deepest int
	frames  [MaxDepth]scanFrame
	names   [][]byte
	fault   Fault
}

// Scan returns the first fault of body, or FaultNone.
func Scan(body []byte, rules Rules) Fault {
	return new(Scanner).Scan(body, rules)
}

// Scan returns the first fault of body, or FaultNone. A scanner is reused
// (the server pools them, so that the names' scratch space is not
// allocated per request); it holds no reference into body afterwards.
func (p *Scanner) Scan(body []byte, rules Rules) Fault {
	// The frames are clear: new, or cleared by release.
	p.b, p.i, p.rules, p.depth, p.deepest, p.fault = body, 0, rules, 0, 0, Fault{}
	defer p.release()
	p.space()
	if p.value() {
		p.space()
		if p.i != len(p.b) {
			p.fail(FaultSyntax, false)
		}
	}
	return p.fault
}

// release drops every reference into the body: the frames and the names.
func (p *Scanner) release() {
	p.b = nil
	clear(p.names[:cap(p.names)])
	p.names = p.names[:0]
	clear(p.frames[:p.deepest])
}

// fail records the fault at the current position and reports false, so
// that every caller can return at once.
func (p *Scanner) fail(kind FaultKind, name bool) bool {
	return p.failIn(kind, p.depth, name)
}

// failIn records a fault whose path runs through the innermost depth open
// containers; name says the fault is in the member name being read, which
// is then not part of the path.
func (p *Scanner) failIn(kind FaultKind, depth int, name bool) bool {
	p.fault = Fault{Kind: kind, Name: name}
	if kind == FaultSyntax {
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
	p.fault.Path = string(path)
	if kind == FaultDuplicate && p.fault.Path == "" {
		p.fault.Path = `""` // the empty name, twice at the top
	}
	return false
}

func (p *Scanner) space() {
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
func (p *Scanner) value() bool {
	if p.i >= len(p.b) {
		return p.fail(FaultSyntax, false)
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
func (p *Scanner) open(object bool) (*scanFrame, bool) {
	if p.depth == MaxDepth {
		return nil, p.failIn(FaultDepth, 0, false)
	}
	fold := true
	if object && p.depth == 1 && p.rules.ExactIn != "" && bytes.EqualFold(p.frames[0].name, []byte(p.rules.ExactIn)) {
		fold = false
	}
	p.frames[p.depth] = scanFrame{object: object, fold: fold, first: len(p.names)}
	p.depth++
	p.deepest = max(p.deepest, p.depth)
	p.i++
	return &p.frames[p.depth-1], true
}

func (p *Scanner) close() {
	p.depth--
	p.names = p.names[:p.frames[p.depth].first]
	p.frames[p.depth] = scanFrame{}
	p.i++
}

func (p *Scanner) object() bool {
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
			return p.fail(FaultSyntax, false)
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
		if f.n > MaxMembers {
			return p.failIn(FaultMembers, p.depth-1, false) // the object's path
		}
		f.name = name
		if !p.remember(f, name) {
			return p.fail(FaultDuplicate, false)
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.fail(FaultSyntax, false)
		}
		p.i++
		p.space()
		if !p.value() {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return p.fail(FaultSyntax, false)
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.close()
			return true
		default:
			return p.fail(FaultSyntax, false)
		}
	}
}

func (p *Scanner) array() bool {
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
		if f.n > MaxMembers {
			return p.failIn(FaultMembers, p.depth-1, false) // the array's path
		}
		p.space()
		if !p.value() {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return p.fail(FaultSyntax, false)
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.close()
			return true
		default:
			return p.fail(FaultSyntax, false)
		}
	}
}

// remember adds name to the object's names and reports false when the
// object already has it.
func (p *Scanner) remember(f *scanFrame, name []byte) bool {
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
func (p *Scanner) str(name bool) (raw []byte, escaped, ok bool) {
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
			return nil, false, p.fail(FaultSyntax, false)
		default:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false, p.fail(FaultText, name)
			}
			p.i += n
		}
	}
	return nil, false, p.fail(FaultSyntax, false)
}

// escape scans the escape sequence at p.i.
func (p *Scanner) escape(name bool) bool {
	if p.i+1 >= len(p.b) {
		return p.fail(FaultSyntax, false)
	}
	switch p.b[p.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		p.i += 2
		return true
	case 'u':
	default:
		return p.fail(FaultSyntax, false)
	}
	r, ok := hex4(p.b, p.i+2)
	if !ok {
		return p.fail(FaultSyntax, false)
	}
	p.i += 6
	switch {
	case r == 0:
		if p.rules.AllowNUL {
			return true
		}
		return p.fail(FaultText, name)
	case r >= 0xdc00 && r < 0xe000:
		return p.fail(FaultText, name) // a low surrogate first
	case r >= 0xd800 && r < 0xdc00:
		if p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
			return p.fail(FaultText, name)
		}
		lo, ok := hex4(p.b, p.i+2)
		if !ok {
			return p.fail(FaultSyntax, false)
		}
		if lo < 0xdc00 || lo >= 0xe000 {
			return p.fail(FaultText, name)
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

func (p *Scanner) literal(lit string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		return p.fail(FaultSyntax, false)
	}
	p.i += len(lit)
	return true
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *Scanner) number() bool {
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
		return p.fail(FaultSyntax, false)
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return p.fail(FaultSyntax, false)
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
			return p.fail(FaultSyntax, false)
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
