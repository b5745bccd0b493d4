package server

// fastDecideBody decodes the common shape of a decision request without
// reflection: one object whose members are exactly the decideBody field
// names, with plain ASCII strings (no escapes) or null as values and flat
// string objects for query and headers. It reports false for anything else —
// an escape, a non-ASCII byte, another spelling of a field name, another
// type, trailing data — and the caller then decodes the body with
// encoding/json, which answers the same as before. So the fast path never
// decides what a body means on its own: for every body it accepts,
// encoding/json (strict, as decodeWith runs it) yields the same decideBody
// (FuzzFastDecideBody checks it). The duplicate-field check runs before.
func fastDecideBody(buf []byte, b *decideBody) bool {
	p := fastParser{b: buf}
	p.space()
	if !p.consume('{') {
		return false
	}
	p.space()
	if p.consume('}') {
		return p.end()
	}
	var seen uint8
	for {
		p.space()
		key, ok := p.plainString()
		if !ok {
			return false
		}
		p.space()
		if !p.consume(':') {
			return false
		}
		p.space()
		bit, ok := b.fastField(&p, key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		p.space()
		if p.consume('}') {
			return p.end()
		}
		if !p.consume(',') {
			return false
		}
	}
}

// fastField decodes the value of member key into b; bit names the field.
func (b *decideBody) fastField(p *fastParser, key []byte) (bit uint8, ok bool) {
	switch string(key) {
	case "service":
		return 1, p.stringOrNull(&b.Service)
	case "api":
		return 2, p.stringOrNull(&b.API)
	case "method":
		return 4, p.stringOrNull(&b.Method)
	case "path":
		return 8, p.stringOrNull(&b.Path)
	case "clientIp":
		return 16, p.stringOrNull(&b.ClientIP)
	case "apiKey":
		if p.null() {
			b.APIKey = nil
			return 32, true
		}
		s, ok := p.plainString()
		if !ok {
			return 0, false
		}
		v := string(s)
		b.APIKey = &v
		return 32, true
	case "query":
		return 64, p.stringMap(&b.Query)
	case "headers":
		return 128, p.stringMap(&b.Headers)
	}
	return 0, false
}

// fastParser reads the subset of JSON fastDecideBody accepts.
type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) consume(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only whitespace follows.
func (p *fastParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

func (p *fastParser) null() bool {
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return true
	}
	return false
}

// plainString reads a string of printable ASCII without escapes.
func (p *fastParser) plainString() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// stringOrNull reads a plain string into dst; null leaves dst as it is, as
// encoding/json does.
func (p *fastParser) stringOrNull(dst *string) bool {
	if p.null() {
		return true
	}
	s, ok := p.plainString()
	if ok {
		*dst = string(s)
	}
	return ok
}

// stringMap reads null (nil map) or a flat object of plain strings.
func (p *fastParser) stringMap(dst *map[string]string) bool {
	if p.null() {
		*dst = nil
		return true
	}
	if !p.consume('{') {
		return false
	}
	m := make(map[string]string)
	p.space()
	if p.consume('}') {
		*dst = m
		return true
	}
	for {
		p.space()
		k, ok := p.plainString()
		if !ok {
			return false
		}
		p.space()
		if !p.consume(':') {
			return false
		}
		p.space()
		v, ok := p.plainString()
		if !ok {
			return false
		}
		m[string(k)] = string(v)
		p.space()
		if p.consume('}') {
			*dst = m
			return true
		}
		if !p.consume(',') {
			return false
		}
	}
}
