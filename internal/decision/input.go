package decision

import (
	"maps"
	"sync"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The policy input is built as ast values directly: no JSON encoding and
// parsing on the decision path.

// keyInputs caches each key's input object, so a key's permission maps
// are converted once per change, not once per request. An entry answers
// only for the same state of the key: a KeyRef from the store names its
// state by Version (a number every write and load gives anew), and its
// entries are kept by Version, so that a decision with a cached input
// never reads the key itself; a key that does not come from the store
// (Version 0: replay) is kept by id and answers only for a key equal in
// everything the input shows. The revision alone does not tell two
// versions of a key apart (a shared store restored from an older backup
// writes a revision number again).
type keyInputs struct {
	mu        sync.RWMutex
	byVersion map[uint64]keyInput
	byID      map[string]cachedKey
	max       int // entries at most, per map (maxKeyInputs)
	perms     *permTerms
}

// maxKeyInputs bounds the entries of keyInputs: well above the key counts
// keygate is measured with (100k). An entry is about 2 KB, as much again as
// the key in the store: the bound only stops growth with keys (and key
// versions) that no longer exist.
const maxKeyInputs = 1 << 18

// keyInput is a key's policy input and what a decision reports of the key.
type keyInput struct {
	value       ast.Value
	id, service string
	revision    uint64
}

type cachedKey struct {
	key keystore.Key // the key the input was built from
	in  keyInput
}

func newKeyInputs() *keyInputs {
	return &keyInputs{byVersion: make(map[uint64]keyInput), byID: make(map[string]cachedKey), max: maxKeyInputs, perms: newPermTerms()}
}

func (c *keyInputs) get(r keystore.KeyRef) keyInput {
	if version := r.Version(); version != 0 {
		c.mu.RLock()
		in, ok := c.byVersion[version]
		c.mu.RUnlock()
		if ok {
			return in
		}
		k := r.Key()
		in = keyInput{value: keyValue(c.perms, &k), id: k.ID, service: k.Service, revision: k.Revision}
		c.mu.Lock()
		if len(c.byVersion) >= c.max {
			// Versions of keys written or deleted since are never asked
			// for again: start again rather than grow with every write.
			c.byVersion = make(map[uint64]keyInput)
		}
		c.byVersion[version] = in
		c.mu.Unlock()
		return in
	}
	k := r.Key()
	c.mu.RLock()
	e, ok := c.byID[k.ID]
	c.mu.RUnlock()
	if ok && sameKeyInput(&e.key, &k) {
		return e.in
	}
	in := keyInput{value: keyValue(c.perms, &k), id: k.ID, service: k.Service, revision: k.Revision}
	c.mu.Lock()
	if _, known := c.byID[k.ID]; !known && len(c.byID) >= c.max {
		// Keys deleted elsewhere (another replica, a resync) are never
		// forgotten here: start again rather than grow with every key
		// that ever existed.
		c.byID = make(map[string]cachedKey)
	}
	c.byID[k.ID] = cachedKey{key: k, in: in}
	c.mu.Unlock()
	return in
}

// sameKeyInput reports whether a and b give the same input (keyValue).
func sameKeyInput(a, b *keystore.Key) bool {
	return a.Revision == b.Revision && a.ID == b.ID && a.Service == b.Service && a.Name == b.Name &&
		a.ContentAPI.Default == b.ContentAPI.Default && a.ManagementAPI == b.ManagementAPI &&
		maps.Equal(a.ContentAPI.Individual, b.ContentAPI.Individual)
}

// forget drops a key's cached input kept by id (after a delete); inputs
// kept by version are never asked for again once the key is deleted.
func (c *keyInputs) forget(id string) {
	c.mu.Lock()
	delete(c.byID, id)
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
