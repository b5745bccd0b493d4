package keystore

import (
	"bytes"
	"unicode/utf8"
)

// seedParser decodes the common shape of a seed key without reflection:
// an object of the seedKey members spelled exactly as their JSON names,
// each once; strings of UTF-8 text without escapes or control
// characters; permission flags true or false; at most 32 individual
// entries named as endpoints are ([a-z0-9_-]+), each once; no createdAt.
// It gives up on anything else (another spelling, an escape, null, a
// number, an unknown member, a time, anything strictjson or the decoder
// would refuse), which strictjson and encoding/json then check and, where
// it is wrong, explain. Where it succeeds, strictjson finds no fault and
// the seedKey is the one encoding/json decodes: FuzzSeedParser holds it
// to both.
type seedParser struct {
	b []byte
	i int
}

// parseSeedKey decodes elem into sk, which must be zero; false when the
// element is not of the common shape (sk is then partly filled).
func parseSeedKey(elem []byte, sk *seedKey) bool {
	p := seedParser{b: elem}
	if !p.seedKey(sk) {
		return false
	}
	p.space()
	return p.i == len(p.b)
}

func (p *seedParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips white space and consumes c if it comes next.
func (p *seedParser) next(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes and returns its bytes.
func (p *seedParser) str() ([]byte, bool) {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	n := bytes.IndexByte(p.b[start:], '"')
	if n < 0 {
		return nil, false
	}
	s := p.b[start : start+n]
	ascii := true
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return nil, false
	}
	p.i = start + n + 1
	return s, true
}

// endpointName reports whether s is spelled as an endpoint: two such
// names are the same under encoding/json's case folding only if they are
// equal.
func endpointName(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// once marks member bit seen in *mask; false if it was already.
func once(mask *uint16, bit uint) bool {
	if *mask&(1<<bit) != 0 {
		return false
	}
	*mask |= 1 << bit
	return true
}

func (p *seedParser) boolean() (v, ok bool) {
	p.space()
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return true, true
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return false, true
	}
	return false, false
}

// members reads an object, calling member for each name (the value
// follows); false if member or the syntax gives up.
func (p *seedParser) members(member func(name []byte) bool) bool {
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		return true
	}
	for {
		name, ok := p.str()
		if !ok || !p.next(':') || !member(name) {
			return false
		}
		if p.next(',') {
			continue
		}
		return p.next('}')
	}
}

func (p *seedParser) seedKey(sk *seedKey) bool {
	var seen uint16
	return p.members(func(name []byte) bool {
		var dst *string
		var bit uint
		switch string(name) {
		case "id":
			dst, bit = &sk.ID, 0
		case "service":
			dst, bit = &sk.Service, 1
		case "name":
			dst, bit = &sk.Name, 2
		case "secret":
			dst, bit = &sk.Secret, 3
		case "createdBy":
			dst, bit = &sk.CreatedBy, 4
		case "contentApi":
			return once(&seen, 5) && p.contentAPI(&sk.ContentAPI)
		case "managementApi":
			return once(&seen, 6) && p.managementPerms(&sk.ManagementAPI)
		default:
			return false
		}
		s, ok := p.str()
		*dst = string(s)
		return ok && once(&seen, bit)
	})
}

func (p *seedParser) contentAPI(c *ContentAPI) bool {
	var seen uint16
	return p.members(func(name []byte) bool {
		switch string(name) {
		case "default":
			return once(&seen, 0) && p.contentPerms(&c.Default)
		case "individual":
			if !once(&seen, 1) {
				return false
			}
			// The entries are gathered first, so that the map is made
			// once at its size rather than grown entry by entry.
			type entry struct {
				ep    string
				perms ContentPerms
			}
			var scratch [32]entry
			entries := scratch[:0]
			ok := p.members(func(ep []byte) bool {
				if len(entries) == len(scratch) || !endpointName(ep) {
					return false
				}
				for _, e := range entries {
					if e.ep == string(ep) {
						return false
					}
				}
				var perms ContentPerms
				if !p.contentPerms(&perms) {
					return false
				}
				entries = append(entries, entry{string(ep), perms})
				return true
			})
			if !ok {
				return false
			}
			c.Individual = make(map[string]ContentPerms, len(entries))
			for _, e := range entries {
				c.Individual[e.ep] = e.perms
			}
			return true
		}
		return false
	})
}

func (p *seedParser) contentPerms(c *ContentPerms) bool {
	var seen uint16
	return p.members(func(name []byte) bool {
		var dst *bool
		var bit uint
		switch string(name) {
		case "get":
			dst, bit = &c.Get, 0
		case "getAllDrafts":
			dst, bit = &c.GetAllDrafts, 1
		case "getAllClosed":
			dst, bit = &c.GetAllClosed, 2
		case "post":
			dst, bit = &c.Post, 3
		case "put":
			dst, bit = &c.Put, 4
		case "patch":
			dst, bit = &c.Patch, 5
		case "delete":
			dst, bit = &c.Delete, 6
		default:
			return false
		}
		v, ok := p.boolean()
		*dst = v
		return ok && once(&seen, bit)
	})
}

func (p *seedParser) managementPerms(m *ManagementPerms) bool {
	var seen uint16
	return p.members(func(name []byte) bool {
		var dst *bool
		var bit uint
		switch string(name) {
		case "getContents":
			dst, bit = &m.GetContents, 0
		case "patchContentCreatedBy":
			dst, bit = &m.PatchContentCreatedBy, 1
		case "patchContentStatus":
			dst, bit = &m.PatchContentStatus, 2
		case "getMedia":
			dst, bit = &m.GetMedia, 3
		case "postMedia":
			dst, bit = &m.PostMedia, 4
		case "deleteMedia":
			dst, bit = &m.DeleteMedia, 5
		case "getMembers":
			dst, bit = &m.GetMembers, 6
		case "getApis":
			dst, bit = &m.GetApis, 7
		case "getService":
			dst, bit = &m.GetService, 8
		default:
			return false
		}
		v, ok := p.boolean()
		*dst = v
		return ok && once(&seen, bit)
	})
}

// ParseKeyConfig decodes a key's permissions as keygate writes them,
// {"contentApi": …, "managementApi": …} (the PostgreSQL driver's
// configuration column), with the seed parser's rules: each member once,
// strings without escapes, flags true or false, at most 32 individual
// entries named as endpoints are. False when b leaves that shape: the
// caller then decodes b with encoding/json, the reference this parser
// equals wherever it succeeds. An empty individual object gives a nil map,
// as ContentAPI.Clone leaves it. c and m must be zero; on false they may
// be partly filled.
func ParseKeyConfig(b []byte, c *ContentAPI, m *ManagementPerms) bool {
	p := seedParser{b: b}
	var seen uint16
	ok := p.members(func(name []byte) bool {
		switch string(name) {
		case "contentApi":
			return once(&seen, 0) && p.contentAPI(c)
		case "managementApi":
			return once(&seen, 1) && p.managementPerms(m)
		}
		return false
	})
	if !ok {
		return false
	}
	p.space()
	if p.i != len(p.b) {
		return false
	}
	if len(c.Individual) == 0 {
		c.Individual = nil
	}
	return true
}
