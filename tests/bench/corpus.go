package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/internal/route"
)

// contentFlags are the 7 content permission flags in contract order.
var contentFlags = []string{"get", "getAllDrafts", "getAllClosed", "post", "put", "patch", "delete"}

// managementFlags are the 9 management permission flags in contract order.
var managementFlags = []string{"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia",
	"postMedia", "deleteMedia", "getMembers", "getApis", "getService"}

// endpoints are the content APIs requests go to.
var endpoints = []string{"blogs", "news", "categories", "authors", "pages", "products", "faq", "contact",
	"events", "jobs", "tags", "banners"}

// perms is a permission set as keygate's input carries it: every flag
// present, missing ones false.
type perms map[string]bool

func fullSet(flags []string, on ...string) perms {
	p := perms{}
	for _, f := range flags {
		p[f] = false
	}
	for _, f := range on {
		p[f] = true
	}
	return p
}

// benchKey is a generated key: what keys.json seeds and what the policy
// input carries.
type benchKey struct {
	ID, Service, Plan, Name, Secret string
	Default                         perms
	Individual                      map[string]perms
	Management                      perms
}

// service is a generated service.
type service struct{ ID, Plan string }

// dataset is the generated data dir's content.
type dataset struct {
	services []service
	keys     []*benchKey
}

// generate makes nKeys keys over enterprise and business services (20 and
// 10 keys each: the plan limits) in five shapes, plus the committed demo
// key. Key i has secret "bench-secret-<i>".
func generate(nKeys int, rng *rand.Rand) *dataset {
	ds := &dataset{services: []service{
		{"hobby-demo", "hobby"}, {"team-demo", "team"}, {"business-demo", "business"}, {"enterprise-demo", "enterprise"},
	}}
	ds.keys = append(ds.keys, &benchKey{
		ID: "team-demo-read", Service: "team-demo", Plan: "team", Name: "Demo read-only key", Secret: "team-demo-read-key",
		Default: fullSet(contentFlags, "get"), Individual: map[string]perms{}, Management: fullSet(managementFlags),
	})
	var svc service
	left := 0
	for i := range nKeys {
		if left == 0 {
			n := len(ds.services)
			svc = service{fmt.Sprintf("bench-%06d", n), "enterprise"}
			left = 20
			if n%3 == 0 {
				svc.Plan, left = "business", 10
			}
			ds.services = append(ds.services, svc)
		}
		left--
		k := &benchKey{
			ID: fmt.Sprintf("bk-%07d", i), Service: svc.ID, Plan: svc.Plan, Name: fmt.Sprintf("bench key %d", i),
			Secret: fmt.Sprintf("bench-secret-%d", i), Individual: map[string]perms{}, Management: fullSet(managementFlags),
		}
		switch r := rng.IntN(10); {
		case r < 4: // the seed's recommendation: GET-only defaults
			k.Default = fullSet(contentFlags, "get")
		case r < 6: // preview: drafts and closed contents too
			k.Default = fullSet(contentFlags, "get", "getAllDrafts", "getAllClosed")
		case r < 8: // public APIs only (seed use case 2) plus a writable contact form
			k.Default = fullSet(contentFlags)
			for _, ep := range endpoints[:5] {
				k.Individual[ep] = fullSet(contentFlags, "get")
			}
			k.Individual["contact"] = fullSet(contentFlags, "post")
		case r < 9: // an integration with management permissions
			k.Default = fullSet(contentFlags, "get")
			k.Individual["contact"] = fullSet(contentFlags, "post", "put")
			k.Management = fullSet(managementFlags, "getContents", "patchContentStatus", "getMedia", "postMedia")
		default: // many individual entries
			k.Default = fullSet(contentFlags)
			for j := range 20 {
				ep := fmt.Sprintf("api%02d", j)
				if j < len(endpoints) {
					ep = endpoints[j]
				}
				switch j % 3 {
				case 0:
					k.Individual[ep] = fullSet(contentFlags, "get")
				case 1:
					k.Individual[ep] = fullSet(contentFlags, "get", "post", "put", "patch")
				default:
					k.Individual[ep] = fullSet(contentFlags, "get", "getAllDrafts")
				}
			}
		}
		ds.keys = append(ds.keys, k)
	}
	return ds
}

// writeDataDir writes services.json, members.json (an admin per service) and
// keys.json (seed keys, hashed by keygate on load) into dir.
func (ds *dataset) writeDataDir(dir string) error {
	type member struct {
		ID      string `json:"id"`
		Service string `json:"service"`
		Role    string `json:"role"`
		Token   string `json:"token"`
	}
	type contentAPI struct {
		Default    perms            `json:"default"`
		Individual map[string]perms `json:"individual"`
	}
	type seedKey struct {
		ID            string     `json:"id"`
		Service       string     `json:"service"`
		Name          string     `json:"name"`
		Secret        string     `json:"secret"`
		ContentAPI    contentAPI `json:"contentApi"`
		ManagementAPI perms      `json:"managementApi"`
	}
	type svcJSON struct {
		ID   string `json:"id"`
		Plan string `json:"plan"`
	}
	svcs := make([]svcJSON, len(ds.services))
	members := make([]member, 0, len(ds.services))
	for i, s := range ds.services {
		svcs[i] = svcJSON(s)
		members = append(members, member{s.ID + "-admin", s.ID, "admin", s.ID + "-admin-token"})
	}
	keys := make([]seedKey, len(ds.keys))
	for i, k := range ds.keys {
		keys[i] = seedKey{k.ID, k.Service, k.Name, k.Secret, contentAPI{k.Default, k.Individual}, k.Management}
	}
	for name, v := range map[string]any{"services.json": svcs, "members.json": members, "keys.json": keys} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// request is one decision question in the three forms the targets take.
type request struct {
	kind string
	// id is the content id in the path ("c" and 8 hex digits), empty when
	// the request has none; with -unique the load generator rewrites its
	// digits on every send.
	id string
	// decide is the POST /v1/decide body (keygate and the Gin baseline).
	decide []byte
	// opaPath and opaBody are OPA's REST API form: the input document
	// keygate's engine builds, under {"input": …}.
	opaPath string
	opaBody []byte
}

type decideBody struct {
	Service string            `json:"service"`
	API     string            `json:"api,omitempty"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   map[string]string `json:"query,omitempty"`
	APIKey  string            `json:"apiKey"`
}

// corpus builds n requests in a realistic mix:
// 40% GET lists, 15% GET details, 10% GET with draftKey, 10% content writes,
// 10% management calls, 10% unknown keys, 5% a key used on another service;
// or, with mix "fresh", half GET lists and half GET details (a content API
// behind a CDN: lists repeat, single contents are a long tail).
//
// distinct draws the keys without replacement while the store has keys
// left (then with), so that n requests name min(n, keys) distinct keys: the
// active set a cache must hold.
func corpus(ds *dataset, n int, rng *rand.Rand, mix string, distinct bool) ([]request, error) {
	out := make([]request, 0, n)
	svcPlan := map[string]string{}
	for _, s := range ds.services {
		svcPlan[s.ID] = s.Plan
	}
	var order []int
	if distinct {
		order = rng.Perm(len(ds.keys))
	}
	for i := range n {
		var k *benchKey
		if distinct && i < len(order) {
			k = ds.keys[order[i]]
		} else {
			k = ds.keys[rng.IntN(len(ds.keys))]
		}
		b := decideBody{Service: k.Service, Method: "GET", APIKey: k.Secret}
		ep := endpoints[rng.IntN(len(endpoints))]
		id := fmt.Sprintf("c%08x", rng.Uint32())
		var kind string
		hasID := true
		r := rng.IntN(100)
		if mix == "fresh" {
			r = 39 + 15*(r%2) // 39: a list, 54: a detail
		}
		switch {
		case r < 40:
			kind = "get-list"
			hasID = false
			b.Path = fmt.Sprintf("/api/v1/%s?limit=10&offset=%d&orders=-publishedAt", ep, 10*rng.IntN(20))
		case r < 55:
			kind = "get-detail"
			b.Path = "/api/v1/" + ep + "/" + id + "?fields=id,title,body"
		case r < 65:
			kind = "get-draftkey"
			b.Path = "/api/v1/" + ep + "/" + id
			b.Query = map[string]string{"draftKey": fmt.Sprintf("dk%06x", rng.IntN(1<<24))}
		case r < 75:
			kind = "write"
			b.Method = []string{"POST", "PUT", "PATCH", "DELETE"}[rng.IntN(4)]
			if b.Method == "POST" {
				b.Path = "/api/v1/" + ep
				hasID = false
			} else {
				b.Path = "/api/v1/" + ep + "/" + id
			}
			if rng.IntN(4) == 0 {
				b.Path += "?status=draft"
			}
		case r < 85:
			kind = "management"
			b.API = "management"
			route := [][2]string{
				{"GET", "/api/v1/contents/" + ep}, {"GET", "/api/v1/contents/" + ep + "/" + id},
				{"PATCH", "/api/v1/contents/" + ep + "/" + id + "/status"}, {"PATCH", "/api/v1/contents/" + ep + "/" + id + "/createdBy"},
				{"GET", "/api/v2/media"}, {"POST", "/api/v1/media"}, {"GET", "/api/v1/members"}, {"GET", "/api/v1/service"},
			}[rng.IntN(8)]
			b.Method, b.Path = route[0], route[1]
			hasID = strings.Contains(b.Path, id)
		case r < 95:
			kind = "unknown-key"
			b.APIKey = fmt.Sprintf("unknown-%016x", rng.Uint64())
			b.Path = "/api/v1/" + ep + "?limit=10"
			hasID = false
		default:
			kind = "other-service"
			b.Service = ds.services[rng.IntN(len(ds.services))].ID
			b.Path = "/api/v1/" + ep + "?limit=10"
			hasID = false
		}
		if !hasID {
			id = ""
		}
		decide, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		var key *benchKey
		if kind != "unknown-key" {
			key = k
		}
		opaPath, opaBody, err := opaRequest(b, key, svcPlan)
		if err != nil {
			return nil, err
		}
		out = append(out, request{kind: kind, id: id, decide: decide, opaPath: opaPath, opaBody: opaBody})
	}
	return out, nil
}

// opaRequest is the OPA REST form of a decide body: the input document as
// internal/decision/input.go builds it (service {id, plan} when known, the
// key's metadata and full permission sets, the request with the unescaped
// path and the first value of each query parameter, explicit query first,
// the parameter names, and the route parsed from the path with the content
// id beside it).
func opaRequest(b decideBody, k *benchKey, svcPlan map[string]string) (string, []byte, error) {
	path, rawQuery, _ := strings.Cut(b.Path, "?")
	p, err := url.PathUnescape(path)
	if err != nil {
		return "", nil, err
	}
	query := map[string]string{}
	var pairs [][2]string
	for k, v := range b.Query {
		query[k] = v
		pairs = append(pairs, [2]string{k, v})
	}
	if rawQuery != "" {
		for part := range strings.SplitSeq(rawQuery, "&") {
			name, value, _ := strings.Cut(part, "=")
			name, _ = url.QueryUnescape(name)
			value, _ = url.QueryUnescape(value)
			pairs = append(pairs, [2]string{name, value})
			if _, seen := query[name]; !seen {
				query[name] = value
			}
		}
	}
	req := map[string]any{"method": b.Method, "path": p, "query": query, "parameters": route.Parameters(pairs)}
	if req["parameters"] == nil {
		req["parameters"] = []string{}
	}
	parse := route.Content
	if b.API == "management" {
		parse = route.Management
	}
	rt, ok := parse(p)
	if ok {
		r := map[string]string{"endpoint": rt.Endpoint}
		if rt.Kind != "" {
			r["kind"] = rt.Kind
		}
		if rt.Pattern != "" {
			r["pattern"] = rt.Pattern
		}
		req["route"] = r
	}
	req["contentId"] = rt.ContentID
	in := map[string]any{"request": req}
	if plan, ok := svcPlan[b.Service]; ok {
		in["service"] = map[string]string{"id": b.Service, "plan": plan}
	}
	if k != nil {
		in["key"] = map[string]any{
			"id": k.ID, "service": k.Service, "name": k.Name,
			"contentApi":    map[string]any{"default": k.Default, "individual": k.Individual},
			"managementApi": k.Management,
		}
	}
	body, err := json.Marshal(map[string]any{"input": in})
	if err != nil {
		return "", nil, err
	}
	entry := "/v1/data/content/decision"
	if b.API == "management" {
		entry = "/v1/data/management/decision"
	}
	return entry, body, nil
}
