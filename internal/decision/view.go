package decision

import (
	"encoding/binary"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/route"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The request view and its cache-key encoding are one concept: a decision
// request's input.request, kept as the request's own fields (requestView)
// until something needs the ast value, and the self-delimiting encoding the
// decision cache (and replay's memo) key on. A cache hit encodes straight
// from the view (appendProjected) what the policy reads; a path the view
// cannot answer is encoded from the built value (appendValue). Both write
// the same bytes for the same value — the tags below, lengths, objects in
// key order — which TestRequestViewEncodesAsTheBuiltValue checks for every
// path the view answers.

// Type tags of the encoding: each value starts with one.
const (
	tagAbsent = 0 // no value at the path
	tagNull   = 1
	tagBool   = 2
	tagNumber = 3
	tagString = 4
	tagArray  = 5
	tagObject = 6
	tagSet    = 7
	tagOther  = 8 // any other value, by its string form
)

// requestView is a decision request's input.request before it is built as
// an ast value (value): a cache hit needs only the parts the policy reads
// (appendProjected), so it never builds the value at all.
type requestView struct {
	method, path string
	// clientIP is the client's address, "" when unknown or not asked for
	// (the service restricts no address).
	clientIP string
	query    [][2]string
	params   []string
	route    route.Route
	routed   bool
}

// newRequestView parses the request's path into its route (content or
// management) and lists its query parameter names.
func newRequestView(api, method, path, clientIP string, query [][2]string) requestView {
	v := requestView{method: method, path: path, clientIP: clientIP, query: query, params: route.Parameters(query)}
	if api == APIManagement {
		v.route, v.routed = route.Management(path)
	} else {
		v.route, v.routed = route.Content(path)
	}
	return v
}

// value is input.request of the content and management decisions
// (policies/README.md): the method as sent, the unescaped path, the first
// value of each query parameter, the names of all parameters, and the
// route the server parsed from the path (absent when the path has none)
// with the content id beside it.
func (v *requestView) value(n *names) *ast.Term {
	q := ast.NewObject()
	for _, kv := range v.query {
		// The first value of a parameter wins, as in the contract.
		k := str(kv[0])
		if q.Get(k) == nil {
			q.Insert(k, str(kv[1]))
		}
	}
	names := make([]*ast.Term, len(v.params))
	for i, p := range v.params {
		names[i] = str(p)
	}
	req := ast.NewObject(
		ast.Item(n.method, str(v.method)),
		ast.Item(n.path, str(v.path)),
		ast.Item(n.query, ast.NewTerm(q)),
		ast.Item(n.parameters, ast.ArrayTerm(names...)),
	)
	if v.routed {
		r := ast.NewObject(ast.Item(n.endpoint, str(v.route.Endpoint)))
		if v.route.Kind != "" {
			r.Insert(n.kind, str(v.route.Kind))
		}
		if v.route.Pattern != "" {
			r.Insert(n.pattern, str(v.route.Pattern))
		}
		req.Insert(n.route, ast.NewTerm(r))
	}
	req.Insert(n.contentID, str(v.route.ContentID))
	if v.clientIP != "" {
		req.Insert(n.clientIP, str(v.clientIP))
	}
	return ast.NewTerm(req)
}

// appendCacheKey writes the cache key of a decision request within its
// (revision, generation) table: the API, the service, the SHA-256 of the
// presented secret — which fix the service and key inputs within one
// generation, and the key id the answer names — and the projection of the
// request input onto the paths the entrypoint reads (engine.Project), or
// the whole request input when the analysis fell back to it. Paths under
// input.key and input.service are covered by the secret hash and the
// service id. Each part is self-delimiting, so no two different questions
// share a key, and objects are written in key order, so the same question
// always gets the same key (whatever the order of a JSON query object).
func appendCacheKey(b []byte, n *names, p *engine.Projection, r *Request, v *requestView, hasSecret bool, secretHash *[32]byte) []byte {
	b = appendKeyPart(b, r.api)
	b = appendKeyPart(b, r.service)
	if hasSecret {
		b = append(b, 1)
		b = append(b, secretHash[:]...)
	} else {
		b = append(b, 0)
	}
	var req *ast.Term // built only for a path the view cannot answer
	if p.Whole {
		return appendValue(b, v.value(n).Value)
	}
	for _, steps := range p.Steps() {
		// Paths under input.request only. (A type assertion, not
		// Term.Equal, which was 1% of the server's CPU under load; not ==
		// on the interface either, which panics on an uncomparable value.)
		if len(steps) == 0 {
			continue
		}
		if first, ok := steps[0].Value.(ast.String); !ok || first != "request" {
			continue
		}
		var ok bool
		if b, ok = v.appendProjected(b, steps[1:]); ok {
			continue
		}
		if req == nil {
			req = v.value(n)
		}
		found, err := req.Value.Find(ast.Ref(steps[1:]))
		if err != nil {
			found = nil // absent
		}
		b = appendValue(b, found)
	}
	return b
}

// appendProjected appends the encoding (appendValue's) of the value at
// steps below input.request, straight from the view, for the paths the
// shipped policies read; ok is false for any other path, which the caller
// then looks up in the built value.
func (v *requestView) appendProjected(b []byte, steps []*ast.Term) (_ []byte, ok bool) {
	if len(steps) == 0 {
		return b, false
	}
	field, isString := steps[0].Value.(ast.String)
	if !isString {
		return b, false
	}
	leaf := len(steps) == 1
	switch string(field) {
	case "method":
		return appendScalar(b, v.method, leaf), true
	case "path":
		return appendScalar(b, v.path, leaf), true
	case "contentId":
		return appendScalar(b, v.route.ContentID, leaf), true
	case "clientIp":
		if !leaf {
			return append(b, tagAbsent), true
		}
		return appendOptional(b, v.clientIP), true
	case "query":
		if len(steps) == 2 {
			name, isString := steps[1].Value.(ast.String)
			if !isString {
				return append(b, tagAbsent), true
			}
			for _, kv := range v.query {
				if kv[0] == string(name) {
					return appendScalar(b, kv[1], true), true
				}
			}
			return append(b, tagAbsent), true
		}
		return b, false
	case "parameters":
		if leaf {
			b = binary.AppendUvarint(append(b, tagArray), uint64(len(v.params)))
			for _, p := range v.params {
				b = appendScalar(b, p, true)
			}
			return b, true
		}
		return b, false
	case "route":
		if !v.routed || len(steps) > 2 {
			return append(b, tagAbsent), true
		}
		if leaf {
			return b, false
		}
		switch name, _ := steps[1].Value.(ast.String); string(name) {
		case "endpoint":
			return appendScalar(b, v.route.Endpoint, true), true
		case "kind":
			return appendOptional(b, v.route.Kind), true
		case "pattern":
			return appendOptional(b, v.route.Pattern), true
		}
		// A field value() may have and this switch does not know: the
		// built value answers (never "absent" by default, which would key
		// every value of a field added to value() alike).
		return b, false
	}
	return b, false // the built value answers, as above
}

// appendScalar encodes the string s at a leaf, or the absent value below
// it (a string has no fields).
func appendScalar(b []byte, s string, leaf bool) []byte {
	if !leaf {
		return append(b, tagAbsent)
	}
	return appendKeyPart(append(b, tagString), s)
}

// appendOptional encodes s, or the absent value when s is "" (a route
// field the server leaves out).
func appendOptional(b []byte, s string) []byte {
	if s == "" {
		return append(b, tagAbsent)
	}
	return appendScalar(b, s, true)
}

// appendValue writes v self-delimited: a type tag, then its content, with
// lengths; objects and sets in sorted order. nil is an absent value.
func appendValue(b []byte, v ast.Value) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, tagAbsent)
	case ast.Null:
		return append(b, tagNull)
	case ast.Boolean:
		if v {
			return append(b, tagBool, 1)
		}
		return append(b, tagBool, 0)
	case ast.Number:
		return appendKeyPart(append(b, tagNumber), string(v))
	case ast.String:
		return appendKeyPart(append(b, tagString), string(v))
	case *ast.Array, ast.Object, ast.Set:
		return appendCollection(b, v)
	default:
		return appendKeyPart(append(b, tagOther), v.String())
	}
}

// appendCollection is appendValue of an array, object or set. It is a
// function of its own because the closures that walk a collection move its
// buffer variable to the heap: inside appendValue that cost every call, a
// scalar's too, one allocation (two per cache hit on the shipped policies).
func appendCollection(b []byte, v ast.Value) []byte {
	switch v := v.(type) {
	case *ast.Array:
		b = binary.AppendUvarint(append(b, tagArray), uint64(v.Len()))
		v.Foreach(func(t *ast.Term) { b = appendValue(b, t.Value) })
	case ast.Object:
		b = binary.AppendUvarint(append(b, tagObject), uint64(v.Len()))
		v.Foreach(func(k, t *ast.Term) {
			b = appendValue(b, k.Value)
			b = appendValue(b, t.Value)
		})
	case ast.Set:
		b = binary.AppendUvarint(append(b, tagSet), uint64(v.Len()))
		v.Foreach(func(t *ast.Term) { b = appendValue(b, t.Value) })
	}
	return b
}

// appendKeyPart writes s with its length before it, so that no part runs
// into the next.
func appendKeyPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
