package server

import (
	"bytes"
	"encoding/json"
	"strings"
)

// encoding/json keeps the last of two equal object keys, and matches struct
// fields case-insensitively: {"apiKey":"a","APIKEY":"b"} and
// {"headers":{"X-MICROCMS-API-KEY":"a","X-MICROCMS-API-KEY":"b"}} both
// decode without an error, the first value silently lost. A decision
// request that names a field twice asks two questions; duplicateKey finds
// such a body before it is decoded, so that it is refused rather than
// judged on whichever value came last.

// duplicateKey returns the first field named twice in a decision request
// body: a top-level member (case-insensitively, as encoding/json matches
// fields), a header name in "headers" (case-insensitively, as HTTP header
// names are), or a parameter in "query" (exactly); found is false for a
// body without duplicates and for malformed JSON, which the decoder then
// reports. (A name may be empty: "" twice is a duplicate too.)
func duplicateKey(body []byte) (name string, found bool) {
	p := dupScanner{b: body}
	p.space()
	if !p.consume('{') {
		return "", false
	}
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	for {
		p.space()
		if p.consume('}') {
			return "", false
		}
		key, ok := p.key()
		if !ok {
			return "", false
		}
		for _, k := range seen {
			if bytes.EqualFold(k, key) {
				return string(key), true
			}
		}
		seen = append(seen, key)
		p.space()
		switch {
		case bytes.EqualFold(key, []byte("headers")) && p.peek('{'):
			if dup, found := p.object(true); found {
				return "headers." + dup, true
			}
		case bytes.EqualFold(key, []byte("query")) && p.peek('{'):
			if dup, found := p.object(false); found {
				return "query." + dup, true
			}
		default:
			if !p.skipValue(0) {
				return "", false
			}
		}
		p.space()
		if !p.consume(',') {
			// The closing brace, or malformed JSON: done either way.
			return "", false
		}
	}
}

// dupScanner is a forgiving JSON scanner: it only looks for duplicate
// keys, and stops (reporting none) at anything malformed.
type dupScanner struct {
	b []byte
	i int
}

func (p *dupScanner) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *dupScanner) peek(c byte) bool { return p.i < len(p.b) && p.b[p.i] == c }

func (p *dupScanner) consume(c byte) bool {
	if p.peek(c) {
		p.i++
		return true
	}
	return false
}

// key reads an object key and the colon after it; the key is unescaped
// when it has escapes.
func (p *dupScanner) key() ([]byte, bool) {
	start := p.i
	escaped, ok := p.skipString()
	if !ok {
		return nil, false
	}
	raw := p.b[start:p.i]
	p.space()
	if !p.consume(':') {
		return nil, false
	}
	if !escaped {
		return raw[1 : len(raw)-1], true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, false
	}
	return []byte(s), true
}

// object reads a flat object of string values and returns its first
// duplicate key (fold: compared case-insensitively); found is false when
// it has none.
func (p *dupScanner) object(fold bool) (dup string, found bool) {
	p.consume('{')
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	for {
		p.space()
		if p.consume('}') {
			return "", false
		}
		key, ok := p.key()
		if !ok {
			return "", false
		}
		for _, k := range seen {
			if fold && bytes.EqualFold(k, key) || !fold && bytes.Equal(k, key) {
				return string(key), true
			}
		}
		seen = append(seen, key)
		p.space()
		if !p.skipValue(0) {
			return "", false
		}
		p.space()
		if p.consume('}') {
			// The end of the object, consumed: the caller goes on with
			// the members after it.
			return "", false
		}
		if !p.consume(',') {
			return "", false
		}
	}
}

// skipString skips a string at p.i and reports whether it has escapes.
func (p *dupScanner) skipString() (escaped, ok bool) {
	if !p.consume('"') {
		return false, false
	}
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			p.i++
			return escaped, true
		case '\\':
			escaped = true
			p.i += 2
		default:
			p.i++
		}
	}
	return false, false
}

// skipValue skips one JSON value of any kind.
func (p *dupScanner) skipValue(depth int) bool {
	if depth > 64 || p.i >= len(p.b) {
		return false
	}
	switch p.b[p.i] {
	case '"':
		_, ok := p.skipString()
		return ok
	case '{', '[':
		closing := byte('}')
		if p.b[p.i] == '[' {
			closing = ']'
		}
		p.i++
		for {
			p.space()
			if p.consume(closing) {
				return true
			}
			if closing == '}' {
				if _, ok := p.key(); !ok {
					return false
				}
				p.space()
			}
			if !p.skipValue(depth + 1) {
				return false
			}
			p.space()
			if !p.consume(',') && !p.peek(closing) {
				return false
			}
		}
	default:
		// A number or a literal: up to the next delimiter.
		start := p.i
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return p.i > start
			}
			p.i++
		}
		return p.i > start
	}
}

// duplicateMemberDeep returns the first member named twice in any object of
// body, as a dotted path ("contentApi.default"), compared as encoding/json
// matches fields (case-insensitively, escapes decoded). A key write body is
// nested: {"contentApi":{"default":{"get":true},"default":{"post":true}}}
// decodes as get and post both (encoding/json merges the second object into
// the first), which is not what either member says. It returns "" for a
// body without duplicates and for malformed JSON, which the decoder then
// reports. Key writes are rare: this reads the body token by token.
func duplicateMemberDeep(body []byte) string {
	type frame struct {
		object  bool
		wantKey bool
		path    string
		names   []string
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var stack []*frame
	// valueDone marks the member of the enclosing object complete.
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		var top *frame
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		if top != nil && top.object && top.wantKey {
			name, ok := tok.(string)
			if !ok {
				if tok == json.Delim('}') {
					stack = stack[:len(stack)-1]
					valueDone()
					if len(stack) == 0 {
						return ""
					}
				}
				continue
			}
			for _, seen := range top.names {
				if strings.EqualFold(seen, name) {
					if top.path+name == "" {
						return `""` // the empty name, twice at the top
					}
					return top.path + name
				}
			}
			top.names = append(top.names, name)
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			path := ""
			if top != nil && top.object {
				path = top.path + top.names[len(top.names)-1] + "."
			} else if top != nil {
				path = top.path
			}
			stack = append(stack, &frame{object: tok == json.Delim('{'), wantKey: true, path: path})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
			if len(stack) == 0 {
				return ""
			}
		default:
			valueDone()
			if len(stack) == 0 {
				return ""
			}
		}
	}
}
