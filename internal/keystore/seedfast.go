package keystore

import "bytes"

// seedParser decodes the common shape of a seed key without reflection:
// an object of the seedKey members spelled exactly as their JSON names,
// strings without escapes, permission flags true or false, and no
// createdAt. It reads an element that strictjson has checked (one JSON
// value, UTF-8 text, no member named twice) and gives up on anything
// else (another spelling, an escape, null, a number, an unknown member,
// a time), which encoding/json then decodes and, where it is wrong,
// explains. Where it succeeds, the seedKey is the one encoding/json
// decodes (FuzzSeedParser holds it to that).
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
	if bytes.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	p.i = start + n + 1
	return s, true
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
	return p.members(func(name []byte) bool {
		var dst *string
		switch string(name) {
		case "id":
			dst = &sk.ID
		case "service":
			dst = &sk.Service
		case "name":
			dst = &sk.Name
		case "secret":
			dst = &sk.Secret
		case "createdBy":
			dst = &sk.CreatedBy
		case "contentApi":
			return p.contentAPI(&sk.ContentAPI)
		case "managementApi":
			return p.managementPerms(&sk.ManagementAPI)
		default:
			return false
		}
		s, ok := p.str()
		*dst = string(s)
		return ok
	})
}

func (p *seedParser) contentAPI(c *ContentAPI) bool {
	return p.members(func(name []byte) bool {
		switch string(name) {
		case "default":
			return p.contentPerms(&c.Default)
		case "individual":
			// The entries are gathered first, so that the map is made
			// once at its size rather than grown entry by entry.
			type entry struct {
				ep    string
				perms ContentPerms
			}
			var scratch [32]entry
			entries := scratch[:0]
			ok := p.members(func(ep []byte) bool {
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
			if c.Individual == nil {
				c.Individual = make(map[string]ContentPerms, len(entries))
			}
			for _, e := range entries {
				c.Individual[e.ep] = e.perms
			}
			return true
		}
		return false
	})
}

func (p *seedParser) contentPerms(c *ContentPerms) bool {
	return p.members(func(name []byte) bool {
		var dst *bool
		switch string(name) {
		case "get":
			dst = &c.Get
		case "getAllDrafts":
			dst = &c.GetAllDrafts
		case "getAllClosed":
			dst = &c.GetAllClosed
		case "post":
			dst = &c.Post
		case "put":
			dst = &c.Put
		case "patch":
			dst = &c.Patch
		case "delete":
			dst = &c.Delete
		default:
			return false
		}
		v, ok := p.boolean()
		*dst = v
		return ok
	})
}

func (p *seedParser) managementPerms(m *ManagementPerms) bool {
	return p.members(func(name []byte) bool {
		var dst *bool
		switch string(name) {
		case "getContents":
			dst = &m.GetContents
		case "patchContentCreatedBy":
			dst = &m.PatchContentCreatedBy
		case "patchContentStatus":
			dst = &m.PatchContentStatus
		case "getMedia":
			dst = &m.GetMedia
		case "postMedia":
			dst = &m.PostMedia
		case "deleteMedia":
			dst = &m.DeleteMedia
		case "getMembers":
			dst = &m.GetMembers
		case "getApis":
			dst = &m.GetApis
		case "getService":
			dst = &m.GetService
		default:
			return false
		}
		v, ok := p.boolean()
		*dst = v
		return ok
	})
}
