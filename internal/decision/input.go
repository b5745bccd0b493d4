package decision

import (
	"encoding/binary"
	"maps"
	"sync"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/route"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The policy input is built as ast values directly: no JSON encoding and
// parsing on the decision path.

// keyInputs caches each key's input object by key id, so a key's
// permission maps are converted once per change, not once per request. An
// entry answers only for a key equal in everything the input shows: the
// revision alone does not tell two versions of a key apart (a shared store
// restored from an older backup writes a revision number again).
type keyInputs struct {
	mu    sync.RWMutex
	m     map[string]cachedKey
	max   int // entries at most (maxKeyInputs)
	perms *permTerms
}

// maxKeyInputs bounds the entries of keyInputs: well above the key counts
// keygate is measured with (100k). An entry is about 2 KB, as much again as
// the key in the store: the bound only stops growth with keys that no longer
// exist.
const maxKeyInputs = 1 << 18

type cachedKey struct {
	key   keystore.Key // the key value was built from
	value ast.Value
}

func newKeyInputs() *keyInputs {
	return &keyInputs{m: make(map[string]cachedKey), max: maxKeyInputs, perms: newPermTerms()}
}

func (c *keyInputs) get(k *keystore.Key) ast.Value {
	c.mu.RLock()
	e, ok := c.m[k.ID]
	c.mu.RUnlock()
	if ok && sameKeyInput(&e.key, k) {
		return e.value
	}
	v := keyValue(c.perms, k)
	c.mu.Lock()
	if _, known := c.m[k.ID]; !known && len(c.m) >= c.max {
		// Keys deleted elsewhere (another replica, a resync) are never
		// forgotten here: start again rather than grow with every key
		// that ever existed.
		c.m = make(map[string]cachedKey)
	}
	c.m[k.ID] = cachedKey{key: *k, value: v}
	c.mu.Unlock()
	return v
}

// sameKeyInput reports whether a and b give the same input (keyValue).
func sameKeyInput(a, b *keystore.Key) bool {
	return a.Revision == b.Revision && a.ID == b.ID && a.Service == b.Service && a.Name == b.Name &&
		a.ContentAPI.Default == b.ContentAPI.Default && a.ManagementAPI == b.ManagementAPI &&
		maps.Equal(a.ContentAPI.Individual, b.ContentAPI.Individual)
}

// forget drops a key's cached input (after a delete).
func (c *keyInputs) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

func str(s string) *ast.Term { return ast.StringTerm(s) }

func boolean(b bool) *ast.Term { return ast.InternedTerm(b) }

// permTerms holds every possible permission set as a shared, immutable
// term: 2^7 content sets and 2^9 management sets. A key's input then points
// at these instead of carrying objects of its own, which keeps per-key
// memory (and the garbage collector's marking work) small with many keys.
type permTerms struct {
	content    [1 << 7]*ast.Term
	management [1 << 9]*ast.Term
}

func newPermTerms() *permTerms {
	t := &permTerms{}
	contentFlags := []string{"get", "getAllDrafts", "getAllClosed", "post", "put", "patch", "delete"}
	managementFlags := []string{"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia",
		"postMedia", "deleteMedia", "getMembers", "getApis", "getService"}
	build := func(flags []string, bits int) *ast.Term {
		items := make([][2]*ast.Term, len(flags))
		for i, f := range flags {
			items[i] = ast.Item(str(f), boolean(bits&(1<<i) != 0))
		}
		return ast.ObjectTerm(items...)
	}
	for bits := range t.content {
		t.content[bits] = build(contentFlags, bits)
	}
	for bits := range t.management {
		t.management[bits] = build(managementFlags, bits)
	}
	return t
}

func bit(b bool, i uint) int {
	if b {
		return 1 << i
	}
	return 0
}

func (t *permTerms) contentSet(p keystore.ContentPerms) *ast.Term {
	return t.content[bit(p.Get, 0)|bit(p.GetAllDrafts, 1)|bit(p.GetAllClosed, 2)|bit(p.Post, 3)|
		bit(p.Put, 4)|bit(p.Patch, 5)|bit(p.Delete, 6)]
}

func (t *permTerms) managementSet(p keystore.ManagementPerms) *ast.Term {
	return t.management[bit(p.GetContents, 0)|bit(p.PatchContentCreatedBy, 1)|bit(p.PatchContentStatus, 2)|
		bit(p.GetMedia, 3)|bit(p.PostMedia, 4)|bit(p.DeleteMedia, 5)|bit(p.GetMembers, 6)|bit(p.GetApis, 7)|bit(p.GetService, 8)]
}

// keyValue is a key as the policies see it: metadata and permissions, never
// a secret.
func keyValue(t *permTerms, k *keystore.Key) ast.Value {
	individual := ast.NewObject()
	for ep, p := range k.ContentAPI.Individual {
		individual.Insert(str(ep), t.contentSet(p))
	}
	return ast.NewObject(
		ast.Item(str("id"), str(k.ID)),
		ast.Item(str("service"), str(k.Service)),
		ast.Item(str("name"), str(k.Name)),
		ast.Item(str("contentApi"), ast.ObjectTerm(
			ast.Item(str("default"), t.contentSet(k.ContentAPI.Default)),
			ast.Item(str("individual"), ast.NewTerm(individual)),
		)),
		ast.Item(str("managementApi"), t.managementSet(k.ManagementAPI)),
	)
}

// names holds the object keys of the input and the decision as terms,
// built once per server: building or interning them per request would
// allocate on every decision.
type names struct {
	request, method, path, query, service, key, id, plan *ast.Term
	route, kind, pattern, parameters                     *ast.Term
	clientIP, ipRestrictions, ipDefault, ipAPIs          *ast.Term
	// decision fields
	allow, status, code, message, permission, endpoint, contentID, visibility *ast.Term
	published, drafts, closed, draftKey, filterOn                             *ast.Term
}

func newNames() *names {
	return &names{
		request: str("request"), method: str("method"), path: str("path"), query: str("query"),
		service: str("service"), key: str("key"), id: str("id"), plan: str("plan"),
		route: str("route"), kind: str("kind"), pattern: str("pattern"), parameters: str("parameters"),
		clientIP: str("clientIp"), ipRestrictions: str("ipRestrictions"), ipDefault: str("default"), ipAPIs: str("apis"),
		allow: str("allow"), status: str("status"), code: str("code"), message: str("message"),
		permission: str("permission"), endpoint: str("endpoint"), contentID: str("contentId"),
		visibility: str("visibility"), published: str("published"), drafts: str("drafts"),
		closed: str("closed"), draftKey: str("draftKey"), filterOn: str("filterOn"),
	}
}

// serviceInputs caches the input object of each service by id and plan
// (its whole content), so it is built once, not per request.
type serviceInputs struct {
	mu sync.RWMutex
	m  map[string]cachedService
}

type cachedService struct {
	plan  string
	ipRev uint64 // the IP restriction revision the value was built with; 0 for none
	value *ast.Term
}

func newServiceInputs() *serviceInputs { return &serviceInputs{m: make(map[string]cachedService)} }

// get returns the service's input; ipr (nil when the service restricts no
// address) is its IP restriction setting of revision ipRev.
func (c *serviceInputs) get(n *names, svc *keystore.Service, ipr *keystore.IPRestrictions, ipRev uint64) *ast.Term {
	if ipr == nil {
		ipRev = 0
	}
	c.mu.RLock()
	e, ok := c.m[svc.ID]
	c.mu.RUnlock()
	if ok && e.plan == svc.Plan && e.ipRev == ipRev {
		return e.value
	}
	obj := ast.NewObject(ast.Item(n.id, str(svc.ID)), ast.Item(n.plan, str(svc.Plan)))
	if ipr != nil {
		obj.Insert(n.ipRestrictions, ipRestrictionsTerm(n, ipr))
	}
	v := ast.NewTerm(obj)
	c.mu.Lock()
	c.m[svc.ID] = cachedService{plan: svc.Plan, ipRev: ipRev, value: v}
	c.mu.Unlock()
	return v
}

// ipRestrictionsTerm is a setting as data.network reads it.
func ipRestrictionsTerm(n *names, r *keystore.IPRestrictions) *ast.Term {
	list := func(l []string) *ast.Term {
		ts := make([]*ast.Term, len(l))
		for i, e := range l {
			ts[i] = str(e)
		}
		return ast.ArrayTerm(ts...)
	}
	apis := ast.NewObject()
	for api, l := range r.APIs {
		apis.Insert(str(api), list(l))
	}
	return ast.ObjectTerm(ast.Item(n.ipDefault, list(r.Default)), ast.Item(n.ipAPIs, ast.NewTerm(apis)))
}

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
			return appendValue(b, nil), true
		}
		return appendOptional(b, v.clientIP), true
	case "query":
		if len(steps) == 2 {
			name, isString := steps[1].Value.(ast.String)
			if !isString {
				return appendValue(b, nil), true
			}
			for _, kv := range v.query {
				if kv[0] == string(name) {
					return appendScalar(b, kv[1], true), true
				}
			}
			return appendValue(b, nil), true
		}
		return b, false
	case "parameters":
		if leaf {
			b = binary.AppendUvarint(append(b, 5), uint64(len(v.params)))
			for _, p := range v.params {
				b = appendScalar(b, p, true)
			}
			return b, true
		}
		return b, false
	case "route":
		if !v.routed || len(steps) > 2 {
			return appendValue(b, nil), true
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
		return appendValue(b, nil)
	}
	return appendKeyPart(append(b, 4), s)
}

// appendOptional encodes s, or the absent value when s is "" (a route
// field the server leaves out).
func appendOptional(b []byte, s string) []byte {
	if s == "" {
		return appendValue(b, nil)
	}
	return appendScalar(b, s, true)
}

// requestInput is the input of the content and management decisions; see
// policies/README.md. key and service may be nil (unknown).
func requestInput(n *names, service *ast.Term, key ast.Value, request *ast.Term) ast.Value {
	in := ast.NewObject(ast.Item(n.request, request))
	if service != nil {
		in.Insert(n.service, service)
	}
	if key != nil {
		in.Insert(n.key, ast.NewTerm(key))
	}
	return in
}
