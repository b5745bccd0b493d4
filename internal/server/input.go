package server

import (
	"sync"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The policy input is built as ast values directly: no JSON encoding and
// parsing on the decision path.

// keyInputs caches each key's input object by key id and revision, so a
// key's permission maps are converted once per change, not once per
// request. A new revision of a key replaces its entry.
type keyInputs struct {
	mu sync.RWMutex
	m  map[string]cachedKey
}

type cachedKey struct {
	revision uint64
	service  string
	value    ast.Value
}

func newKeyInputs() *keyInputs { return &keyInputs{m: make(map[string]cachedKey)} }

func (c *keyInputs) get(k *keystore.Key) ast.Value {
	c.mu.RLock()
	e, ok := c.m[k.ID]
	c.mu.RUnlock()
	if ok && e.revision == k.Revision && e.service == k.Service {
		return e.value
	}
	v := keyValue(k)
	c.mu.Lock()
	c.m[k.ID] = cachedKey{revision: k.Revision, service: k.Service, value: v}
	c.mu.Unlock()
	return v
}

// forget drops a key's cached input (after a delete).
func (c *keyInputs) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

func str(s string) *ast.Term { return ast.StringTerm(s) }

func boolean(b bool) *ast.Term { return ast.InternedTerm(b) }

func contentPerms(p keystore.ContentPerms) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(str("get"), boolean(p.Get)),
		ast.Item(str("getAllDrafts"), boolean(p.GetAllDrafts)),
		ast.Item(str("getAllClosed"), boolean(p.GetAllClosed)),
		ast.Item(str("post"), boolean(p.Post)),
		ast.Item(str("put"), boolean(p.Put)),
		ast.Item(str("patch"), boolean(p.Patch)),
		ast.Item(str("delete"), boolean(p.Delete)),
	)
}

func managementPerms(p keystore.ManagementPerms) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(str("getContents"), boolean(p.GetContents)),
		ast.Item(str("patchContentCreatedBy"), boolean(p.PatchContentCreatedBy)),
		ast.Item(str("patchContentStatus"), boolean(p.PatchContentStatus)),
		ast.Item(str("getMedia"), boolean(p.GetMedia)),
		ast.Item(str("postMedia"), boolean(p.PostMedia)),
		ast.Item(str("deleteMedia"), boolean(p.DeleteMedia)),
		ast.Item(str("getMembers"), boolean(p.GetMembers)),
		ast.Item(str("getApis"), boolean(p.GetApis)),
		ast.Item(str("getService"), boolean(p.GetService)),
	)
}

// keyValue is a key as the policies see it: metadata and permissions, never
// a secret.
func keyValue(k *keystore.Key) ast.Value {
	individual := ast.NewObject()
	for ep, p := range k.ContentAPI.Individual {
		individual.Insert(str(ep), contentPerms(p))
	}
	return ast.NewObject(
		ast.Item(str("id"), str(k.ID)),
		ast.Item(str("service"), str(k.Service)),
		ast.Item(str("name"), str(k.Name)),
		ast.Item(str("contentApi"), ast.ObjectTerm(
			ast.Item(str("default"), contentPerms(k.ContentAPI.Default)),
			ast.Item(str("individual"), ast.NewTerm(individual)),
		)),
		ast.Item(str("managementApi"), managementPerms(k.ManagementAPI)),
	)
}

// requestInput is the input of the content and management decisions; see
// policies/README.md. key and service may be nil (unknown).
func requestInput(service *keystore.Service, key ast.Value, method, path string, query [][2]string) ast.Value {
	q := ast.NewObject()
	for _, kv := range query {
		// The first value of a parameter wins, as in the contract.
		if q.Get(str(kv[0])) == nil {
			q.Insert(str(kv[0]), str(kv[1]))
		}
	}
	in := ast.NewObject(
		ast.Item(str("request"), ast.ObjectTerm(
			ast.Item(str("method"), str(method)),
			ast.Item(str("path"), str(path)),
			ast.Item(str("query"), ast.NewTerm(q)),
		)),
	)
	if service != nil {
		in.Insert(str("service"), ast.ObjectTerm(
			ast.Item(str("id"), str(service.ID)),
			ast.Item(str("plan"), str(service.Plan)),
		))
	}
	if key != nil {
		in.Insert(str("key"), ast.NewTerm(key))
	}
	return in
}
