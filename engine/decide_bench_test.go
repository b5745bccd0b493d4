package engine_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/route"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The inputs below copy the shape internal/decision/input.go builds (ast
// values, never JSON); see policies/README.md for the contract. They are
// copied rather than imported so that the engine's benchmark does not depend
// on the server package.

func benchStr(s string) *ast.Term { return ast.StringTerm(s) }

func benchBool(b bool) *ast.Term { return ast.InternedTerm(b) }

// benchContentPerms is a content permission set: get, getAllDrafts,
// getAllClosed, post, put, patch, delete.
func benchContentPerms(f [7]bool) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(benchStr("get"), benchBool(f[0])),
		ast.Item(benchStr("getAllDrafts"), benchBool(f[1])),
		ast.Item(benchStr("getAllClosed"), benchBool(f[2])),
		ast.Item(benchStr("post"), benchBool(f[3])),
		ast.Item(benchStr("put"), benchBool(f[4])),
		ast.Item(benchStr("patch"), benchBool(f[5])),
		ast.Item(benchStr("delete"), benchBool(f[6])),
	)
}

// benchManagementPerms is a management permission set in contract order.
func benchManagementPerms(f [9]bool) *ast.Term {
	names := [9]string{"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia",
		"postMedia", "deleteMedia", "getMembers", "getApis", "getService"}
	items := make([][2]*ast.Term, len(names))
	for i, n := range names {
		items[i] = ast.Item(benchStr(n), benchBool(f[i]))
	}
	return ast.ObjectTerm(items...)
}

// quiet discards the engine's "policy loaded" lines in benchmark output.
var quiet = slog.New(slog.DiscardHandler)

var (
	getOnly  = [7]bool{true}
	noAccess = [7]bool{}
	readPost = [7]bool{true, false, false, true}
)

// benchKey is a key as the server puts it in input: default permissions and
// nIndividual individual entries (ep0 … ep<n-1>, alternating GET+POST and
// nothing), so a request for "blogs" falls through to the default.
func benchKey(id string, def [7]bool, nIndividual int, mgmt [9]bool) ast.Value {
	individual := ast.NewObject()
	for i := range nIndividual {
		p := readPost
		if i%2 == 1 {
			p = noAccess
		}
		individual.Insert(benchStr("ep"+strconv.Itoa(i)), benchContentPerms(p))
	}
	return ast.NewObject(
		ast.Item(benchStr("id"), benchStr(id)),
		ast.Item(benchStr("service"), benchStr("team-demo")),
		ast.Item(benchStr("name"), benchStr("bench key "+id)),
		ast.Item(benchStr("contentApi"), ast.ObjectTerm(
			ast.Item(benchStr("default"), benchContentPerms(def)),
			ast.Item(benchStr("individual"), ast.NewTerm(individual)),
		)),
		ast.Item(benchStr("managementApi"), benchManagementPerms(mgmt)),
	)
}

// benchRequest is the content/management input: service, key and request.
func benchRequest(key ast.Value, method, path string, query map[string]string) ast.Value {
	q := ast.NewObject()
	var params []*ast.Term
	for k, v := range query {
		q.Insert(benchStr(k), benchStr(v))
		params = append(params, benchStr(k))
	}
	req := ast.NewObject(
		ast.Item(benchStr("method"), benchStr(method)),
		ast.Item(benchStr("path"), benchStr(path)),
		ast.Item(benchStr("query"), ast.NewTerm(q)),
		ast.Item(benchStr("parameters"), ast.ArrayTerm(params...)),
	)
	// The route as the server parses it (internal/route): a content path,
	// else a management one.
	if rt, ok := route.Content(path); ok {
		req.Insert(benchStr("route"), ast.ObjectTerm(
			ast.Item(benchStr("endpoint"), benchStr(rt.Endpoint)),
			ast.Item(benchStr("kind"), benchStr(rt.Kind)),
		))
		req.Insert(benchStr("contentId"), benchStr(rt.ContentID))
	} else if rt, ok := route.Management(path); ok {
		req.Insert(benchStr("route"), ast.ObjectTerm(
			ast.Item(benchStr("endpoint"), benchStr(rt.Endpoint)),
			ast.Item(benchStr("pattern"), benchStr(rt.Pattern)),
		))
		req.Insert(benchStr("contentId"), benchStr(rt.ContentID))
	}
	in := ast.NewObject(
		ast.Item(benchStr("request"), ast.NewTerm(req)),
		ast.Item(benchStr("service"), ast.ObjectTerm(
			ast.Item(benchStr("id"), benchStr("team-demo")),
			ast.Item(benchStr("plan"), benchStr("team")),
		)),
	)
	if key != nil {
		in.Insert(benchStr("key"), ast.NewTerm(key))
	}
	return in
}

// benchKeyCreate is the data.keys.decision input of an admin creating a key
// with GET defaults and one individual POST endpoint (the seed's use case 1).
func benchKeyCreate() ast.Value {
	individual := ast.NewObject(ast.Item(benchStr("contact"), benchContentPerms([7]bool{false, false, false, true})))
	return ast.NewObject(
		ast.Item(benchStr("action"), benchStr("create")),
		ast.Item(benchStr("service"), ast.ObjectTerm(
			ast.Item(benchStr("id"), benchStr("team-demo")),
			ast.Item(benchStr("plan"), benchStr("team")),
			ast.Item(benchStr("keyCount"), ast.IntNumberTerm(1)),
		)),
		ast.Item(benchStr("member"), ast.ObjectTerm(
			ast.Item(benchStr("id"), benchStr("team-demo-admin")),
			ast.Item(benchStr("service"), benchStr("team-demo")),
			ast.Item(benchStr("role"), benchStr("admin")),
		)),
		ast.Item(benchStr("key"), ast.ObjectTerm(
			ast.Item(benchStr("name"), benchStr("contact form")),
			ast.Item(benchStr("contentApi"), ast.ObjectTerm(
				ast.Item(benchStr("default"), benchContentPerms(getOnly)),
				ast.Item(benchStr("individual"), ast.NewTerm(individual)),
			)),
			ast.Item(benchStr("managementApi"), benchManagementPerms([9]bool{})),
		)),
	)
}

// BenchmarkDecide measures one policy evaluation through Engine.Decide with
// the real policies/ directory, per entrypoint. The input is built once
// outside the loop: this is the engine's cost alone (the HTTP handler's
// benchmark in internal/server adds decoding, lookup and encoding).
//
// Each case runs twice: timeout=0 is the engine's default (no timeout, a
// context that cannot be cancelled, so no per-evaluation goroutine);
// timeout=1s is what `keygate serve` configures (--eval-timeout), which
// costs a context.WithTimeout and OPA's cancellation goroutine per call.
func BenchmarkDecide(b *testing.B) {
	cases := []struct {
		name       string
		entrypoint string
		input      ast.Value
		allow      bool
		status     int
	}{
		{
			name:       "content-get-default",
			entrypoint: engine.Content,
			input:      benchRequest(benchKey("k-default", getOnly, 0, [9]bool{}), "GET", "/api/v1/blogs", nil),
			allow:      true, status: 200,
		},
		{
			// A key with 20 individual entries; the request hits one of them
			// (ep4: GET+POST), so the override lookup is exercised.
			name:       "content-get-individual20",
			entrypoint: engine.Content,
			input: benchRequest(benchKey("k-individual", noAccess, 20, [9]bool{}), "GET", "/api/v1/ep4/abc",
				map[string]string{"draftKey": "dk-123"}),
			allow: true, status: 200,
		},
		{
			name:       "content-post-denied",
			entrypoint: engine.Content,
			input:      benchRequest(benchKey("k-default", getOnly, 0, [9]bool{}), "POST", "/api/v1/blogs", nil),
			allow:      false, status: 400,
		},
		{
			name:       "content-unknown-key",
			entrypoint: engine.Content,
			input:      benchRequest(nil, "GET", "/api/v1/blogs", nil),
			allow:      false, status: 401,
		},
		{
			name:       "management-patch-status",
			entrypoint: engine.Management,
			input: benchRequest(benchKey("k-mgmt", getOnly, 0, [9]bool{false, false, true, true}),
				"PATCH", "/api/v1/contents/blogs/abc/status", nil),
			allow: true, status: 200,
		},
		{
			name:       "keys-create",
			entrypoint: engine.Keys,
			input:      benchKeyCreate(),
			allow:      true, status: 200,
		},
	}
	for _, timeout := range []time.Duration{0, time.Second} {
		eng, err := engine.New(context.Background(), "../policies", engine.Options{Timeout: timeout, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		for _, tc := range cases {
			b.Run(tc.name+"/timeout="+timeout.String(), func(b *testing.B) {
				ctx := context.Background()
				d, err := eng.Decide(ctx, tc.entrypoint, tc.input)
				if err != nil {
					b.Fatal(err)
				}
				if got := d.Value.Get(ast.InternedTerm("allow")); got == nil || !got.Equal(ast.InternedTerm(tc.allow)) {
					b.Fatalf("allow = %v, want %v (decision %v)", got, tc.allow, d.Value)
				}
				if got := d.Value.Get(ast.InternedTerm("status")); got == nil || !got.Equal(ast.IntNumberTerm(tc.status)) {
					b.Fatalf("status = %v, want %d (decision %v)", got, tc.status, d.Value)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := eng.Decide(ctx, tc.entrypoint, tc.input); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecideParallel is content-get-default from GOMAXPROCS goroutines:
// the engine's throughput ceiling on this machine, and a check that
// concurrent evaluations do not contend.
func BenchmarkDecideParallel(b *testing.B) {
	eng, err := engine.New(context.Background(), "../policies", engine.Options{Timeout: time.Second, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	in := benchRequest(benchKey("k-default", getOnly, 0, [9]bool{}), "GET", "/api/v1/blogs", nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := eng.Decide(ctx, engine.Content, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
