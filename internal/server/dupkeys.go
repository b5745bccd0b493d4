package server

import (
	"bytes"
	"encoding/json"
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
// names are), or a parameter in "query" (exactly). It returns "" for a
// body without duplicates and for malformed JSON, which the decoder then
// reports.
func duplicateKey(body []byte) string {
	p := dupScanner{b: body}
	p.space()
	if !p.consume('{') {
		return ""
	}
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	for {
		p.space()
		if p.consume('}') {
			return ""
		}
		key, ok := p.key()
		if !ok {
			return ""
		}
		for _, k := range seen {
			if bytes.EqualFold(k, key) {
				return string(key)
			}
		}
		seen = append(seen, key)
		p.space()
		switch {
		case bytes.EqualFold(key, []byte("headers")) && p.peek('{'):
			if dup := p.object(true); dup != "" {
				return "headers." + dup
			}
		case bytes.EqualFold(key, []byte("query")) && p.peek('{'):
			if dup := p.object(false); dup != "" {
				return "query." + dup
			}
		default:
			if !p.skipValue(0) {
				return ""
			}
		}
		p.space()
		if !p.consume(',') {
			// The closing brace, or malformed JSON: done either way.
			return ""
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
// duplicate key (fold: compared case-insensitively).
func (p *dupScanner) object(fold bool) string {
	p.consume('{')
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	for {
		p.space()
		if p.consume('}') {
			return ""
		}
		key, ok := p.key()
		if !ok {
			return ""
		}
		for _, k := range seen {
			if fold && bytes.EqualFold(k, key) || !fold && bytes.Equal(k, key) {
				return string(key)
			}
		}
		seen = append(seen, key)
		p.space()
		if !p.skipValue(0) {
			return ""
		}
		p.space()
		if p.consume('}') {
			// The end of the object, consumed: the caller goes on with
			// the members after it.
			return ""
		}
		if !p.consume(',') {
			return ""
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
