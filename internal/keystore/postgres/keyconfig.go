package postgres

import (
	"encoding/json"

	"github.com/keygate/keygate/internal/keystore"
)

// decodeKeyConfig decodes a configuration column into c exactly as
// json.Unmarshal would, followed by ContentAPI.Clone (an empty individual
// map becomes nil; the map is c's own).
//
// A full load decodes one configuration per key, and encoding/json's
// reflection was most of a load's decoding time, so the text PostgreSQL
// sends for a jsonb value written by keygate (objects of known keys, ASCII
// strings without escapes, true and false) is parsed by hand. Anything else
// (an unknown or differently cased key, an escape, null, a number,
// non-ASCII text, trailing bytes) falls back to encoding/json on the whole
// value, so the result never depends on which path ran.
func decodeKeyConfig(b []byte, c *keyConfig) error {
	var fast keyConfig
	if p := (configParser{b: b}); p.config(&fast) {
		*c = fast
		return nil
	}
	var slow keyConfig
	if err := json.Unmarshal(b, &slow); err != nil {
		return err
	}
	slow.ContentAPI = slow.ContentAPI.Clone()
	*c = slow
	return nil
}

// configParser parses the subset of JSON described at decodeKeyConfig; every
// method returns false as soon as the input leaves it.
type configParser struct {
	b []byte
	i int
}

func (p *configParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c after optional whitespace.
func (p *configParser) byte(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// peek reports whether the next byte after whitespace is c, without
// consuming it.
func (p *configParser) peek(c byte) bool {
	p.ws()
	return p.i < len(p.b) && p.b[p.i] == c
}

// str reads a string of printable ASCII without escapes; the bytes returned
// alias the input.
func (p *configParser) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *configParser) boolean() (v, ok bool) {
	p.ws()
	rest := p.b[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}

// object parses an object, calling member for each key (positioned before
// the value); member parses the value.
func (p *configParser) object(member func(key []byte) bool) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	for {
		k, ok := p.str()
		if !ok || !p.byte(':') || !member(k) {
			return false
		}
		if p.byte(',') {
			continue
		}
		return p.byte('}')
	}
}

func (p *configParser) config(c *keyConfig) bool {
	var individualSeen bool
	ok := p.object(func(k []byte) bool {
		switch string(k) {
		case "contentApi":
			return p.object(func(k []byte) bool {
				switch string(k) {
				case "default":
					return p.contentPerms(&c.ContentAPI.Default)
				case "individual":
					if individualSeen {
						// encoding/json would merge into the first
						// map; rare enough to leave to it.
						return false
					}
					individualSeen = true
					return p.individual(&c.ContentAPI.Individual)
				}
				return false
			})
		case "managementApi":
			return p.managementPerms(&c.ManagementAPI)
		}
		return false
	})
	if !ok {
		return false
	}
	p.ws()
	return p.i == len(p.b)
}

func (p *configParser) individual(m *map[string]keystore.ContentPerms) bool {
	if !p.peek('{') { // null: left to encoding/json
		return false
	}
	var out map[string]keystore.ContentPerms
	ok := p.object(func(k []byte) bool {
		// A repeated endpoint: the last one wins, as in encoding/json,
		// which zeroes the element before decoding each.
		var perms keystore.ContentPerms
		if !p.contentPerms(&perms) {
			return false
		}
		if out == nil {
			out = make(map[string]keystore.ContentPerms, 4)
		}
		out[string(k)] = perms
		return true
	})
	if !ok {
		return false
	}
	*m = out // nil when empty, as ContentAPI.Clone leaves it
	return true
}

// contentPerms decodes into the existing value, as encoding/json does (a
// repeated object overrides only the flags it names).
func (p *configParser) contentPerms(c *keystore.ContentPerms) bool {
	return p.object(func(k []byte) bool {
		var f *bool
		switch string(k) {
		case "get":
			f = &c.Get
		case "getAllDrafts":
			f = &c.GetAllDrafts
		case "getAllClosed":
			f = &c.GetAllClosed
		case "post":
			f = &c.Post
		case "put":
			f = &c.Put
		case "patch":
			f = &c.Patch
		case "delete":
			f = &c.Delete
		default:
			return false
		}
		v, ok := p.boolean()
		*f = v
		return ok
	})
}

func (p *configParser) managementPerms(m *keystore.ManagementPerms) bool {
	return p.object(func(k []byte) bool {
		var f *bool
		switch string(k) {
		case "getContents":
			f = &m.GetContents
		case "patchContentCreatedBy":
			f = &m.PatchContentCreatedBy
		case "patchContentStatus":
			f = &m.PatchContentStatus
		case "getMedia":
			f = &m.GetMedia
		case "postMedia":
			f = &m.PostMedia
		case "deleteMedia":
			f = &m.DeleteMedia
		case "getMembers":
			f = &m.GetMembers
		case "getApis":
			f = &m.GetApis
		case "getService":
			f = &m.GetService
		default:
			return false
		}
		v, ok := p.boolean()
		*f = v
		return ok
	})
}
