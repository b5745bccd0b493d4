package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/server"
)

// The fuzz tests drive /v1/decide and /v1/forward-auth through the real
// handler (the real policies, a key store on a copy of data/ with the keys
// below) and check invariants computed here, independently of the
// policies:
//
//   - an allow names a key of the service the request is for;
//   - an allow has the permission the method needs on the endpoint (content
//     API) or the management permission it names;
//   - no answer is a 5xx, and no decision is a policy error;
//   - answers are bounded in size, and the live heap stays bounded.
//
// `go test` runs the seed corpus (the f.Add seeds and testdata/fuzz/); CI
// fuzzes each target for a short fixed time.

// fuzzKey is a key of the fuzz fixture with its permissions, as the oracle
// reads them.
type fuzzKey struct {
	ID         string `json:"id"`
	Service    string `json:"service"`
	Name       string `json:"name"`
	Secret     string `json:"secret"`
	ContentAPI struct {
		Default    map[string]bool            `json:"default"`
		Individual map[string]map[string]bool `json:"individual"`
	} `json:"contentApi"`
	ManagementAPI map[string]bool `json:"managementApi"`
}

// fuzzKeysJSON are the fixture's keys (keys.json); secret index len(keys)
// is no key and len+1 an unknown one.
const fuzzKeysJSON = `[
 {"id":"team-demo-read","service":"team-demo","name":"read","secret":"team-demo-read-key",
  "contentApi":{"default":{"get":true},"individual":{}},"managementApi":{}},
 {"id":"fz-team-writer","service":"team-demo","name":"writer","secret":"fz-team-writer-key",
  "contentApi":{"default":{"get":true,"post":true,"patch":true},"individual":{"contact":{"post":true}}},"managementApi":{}},
 {"id":"fz-business-mixed","service":"business-demo","name":"mixed","secret":"fz-business-mixed-key",
  "contentApi":{"default":{},"individual":{"blogs":{"get":true,"getAllDrafts":true},"news":{"put":true,"delete":true}}},
  "managementApi":{"getMedia":true,"getContents":true}},
 {"id":"fz-hobby-all","service":"hobby-demo","name":"all","secret":"fz-hobby-all-key",
  "contentApi":{"default":{"get":true,"getAllDrafts":true,"getAllClosed":true,"post":true,"put":true,"patch":true,"delete":true},"individual":{}},
  "managementApi":{"getMembers":true,"getService":true,"patchContentStatus":true}}
]`

type fuzzFixture struct {
	h    http.Handler
	keys []fuzzKey
	// runs counts executions in this process, for the periodic heap check.
	runs int
	// contentPath is the content API path grammar of SPEC rule 2.
	contentPath *regexp.Regexp
	// methodPermission is the permission each content method needs.
	methodPermission map[string]string
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	f.Helper()
	var keys []fuzzKey
	if err := json.Unmarshal([]byte(fuzzKeysJSON), &keys); err != nil {
		f.Fatal(err)
	}
	dataDir := f.TempDir()
	for _, name := range []string{"services.json", "members.json"} {
		raw, err := os.ReadFile(filepath.Join("../../data", name))
		if err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataDir, name), raw, 0o600); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dataDir, "keys.json"), []byte(fuzzKeysJSON), 0o600); err != nil {
		f.Fatal(err)
	}
	eng, store := openDeps(f, "../../policies", dataDir)
	h := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
	return &fuzzFixture{h: h, keys: keys,
		contentPath:      regexp.MustCompile(`^/api/v1/([A-Za-z0-9_-]+)(?:/([A-Za-z0-9_-]+))?$`),
		methodPermission: map[string]string{"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"},
	}
}

// secret is the secret of key index i: a fixture key, none, or an unknown
// one.
func (fx *fuzzFixture) secret(i uint8) string {
	n := int(i) % (len(fx.keys) + 2)
	switch {
	case n < len(fx.keys):
		return fx.keys[n].Secret
	case n == len(fx.keys):
		return ""
	}
	return "fz-unknown-key"
}

// maxFuzzHeap bounds the live heap of a fuzzing process: the server's
// caches are bounded in entries and entry size, so however many inputs it
// has seen, the heap stays far below this.
const maxFuzzHeap = 1 << 30

// checkHeap measures the live heap every 10,000 executions.
func (fx *fuzzFixture) checkHeap(t *testing.T) {
	t.Helper()
	fx.runs++
	if fx.runs%10_000 != 0 {
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > maxFuzzHeap {
		t.Fatalf("live heap %d MiB after %d executions", ms.HeapAlloc>>20, fx.runs)
	}
}

func (fx *fuzzFixture) keyBySecret(s string) (fuzzKey, bool) {
	for _, k := range fx.keys {
		if s != "" && k.Secret == s {
			return k, true
		}
	}
	return fuzzKey{}, false
}

// checkAllow reports why an allow for this request is wrong, or "" when
// the key may do it. uri is the path and query as the client sent them
// (decoded here once, as the server must); management is the API.
func (fx *fuzzFixture) checkAllow(secret, service string, management bool, method, uri, permission string, drafts, closed bool) string {
	k, ok := fx.keyBySecret(secret)
	switch {
	case !ok:
		return "allowed without a known key"
	case k.Service != service:
		return "allowed a key of " + k.Service + " on " + service
	case management:
		if permission == "" || !k.ManagementAPI[permission] {
			return "allowed management permission " + permission + " the key lacks"
		}
		return ""
	}
	p, _, _ := strings.Cut(uri, "?")
	p, err := url.PathUnescape(p)
	if err != nil {
		return "allowed an undecodable path"
	}
	m := fx.contentPath.FindStringSubmatch(p)
	if m == nil {
		return "allowed a path that is not /api/v1/{endpoint}[/{id}]: " + p
	}
	need, ok := fx.methodPermission[method]
	if !ok {
		return "allowed method " + method
	}
	// The effective set: the endpoint's individual entry replaces the
	// default. Endpoint case is read both ways (exactly, and matching an
	// entry case-insensitively); an allow must be granted by one of them.
	grants := func(perms map[string]bool) bool {
		return perms[need] && (!drafts || perms["getAllDrafts"]) && (!closed || perms["getAllClosed"])
	}
	exact, ok := k.ContentAPI.Individual[m[1]]
	if !ok {
		exact = k.ContentAPI.Default
	}
	folded := k.ContentAPI.Default
	for ep, perms := range k.ContentAPI.Individual {
		if strings.EqualFold(ep, m[1]) {
			folded = perms
		}
	}
	if !grants(exact) && !grants(folded) {
		return "allowed " + method + " on " + m[1] + " without " + need
	}
	return ""
}

type fuzzDecideBody struct {
	Service string            `json:"service"`
	API     string            `json:"api"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   map[string]string `json:"query"`
	APIKey  *string           `json:"apiKey"`
	Headers map[string]string `json:"headers"`
}

const maxAnswerBytes = 20 << 10

func FuzzDecide(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add("team-demo", "", "GET", "/api/v1/blogs", uint8(0), false, []byte(nil))
	f.Add("team-demo", "", "POST", "/api/v1/contact?status=draft", uint8(1), true, []byte(nil))
	f.Add("business-demo", "management", "GET", "/api/v2/media", uint8(2), false, []byte(nil))
	f.Add("hobby-demo", "content", "DELETE", "/api/v1/Blogs/x", uint8(3), false, []byte(nil))
	f.Add("team-demo", "", "GET", "/api/v1/%2562logs", uint8(0), false, []byte(nil))
	f.Add("hobby-demo", "", "GET", "/api/v1/blogs", uint8(0), false, []byte(nil))
	f.Add("", "", "", "", uint8(0), false, []byte(`{"service":"team-demo","method":"GET","path":"/api/v1/blogs","headers":{"X-MICROCMS-API-KEY":"x","X-MICROCMS-API-KEY":"team-demo-read-key"}}`))
	f.Add("", "", "", "", uint8(0), false, []byte(`{"service":"hobby-demo","method":"GET","path":"/api/v1/blogs","apiKey":"fz-hobby-all-key","SERVICE":"team-demo"}`))
	f.Fuzz(func(t *testing.T, service, api, method, path string, keyIdx uint8, viaHeader bool, raw []byte) {
		body := raw
		if len(body) == 0 {
			b := map[string]any{"service": service, "method": method, "path": path}
			if api != "" {
				b["api"] = api
			}
			if s := fx.secret(keyIdx); s != "" {
				if viaHeader {
					b["headers"] = map[string]string{"X-MICROCMS-API-KEY": s}
				} else {
					b["apiKey"] = s
				}
			}
			var err error
			if body, err = json.Marshal(b); err != nil {
				t.Skip()
			}
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/decide", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		fx.checkHeap(t)
		if rec.Code >= 500 {
			t.Fatalf("HTTP %d for %s: %s", rec.Code, body, rec.Body)
		}
		if rec.Body.Len() > maxAnswerBytes {
			t.Fatalf("answer of %d bytes", rec.Body.Len())
		}
		if rec.Code != http.StatusOK {
			return
		}
		if dup := duplicateMember(body); dup != "" {
			t.Fatalf("answered a body that names %s twice: %s", dup, body)
		}
		var d decision.Decision
		if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
			t.Fatalf("decision %s: %v", rec.Body, err)
		}
		if d.Code == "policy_error" || d.Status >= 500 {
			t.Fatalf("policy error for %s: %s", body, rec.Body)
		}
		if !d.Allow {
			return
		}
		// The server accepted the body, so it names each field once and
		// encoding/json reads it as the server did.
		var in fuzzDecideBody
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted body does not decode: %v", err)
		}
		secret := ""
		if in.APIKey != nil {
			secret = *in.APIKey
		}
		for k, v := range in.Headers {
			if strings.EqualFold(k, "X-MICROCMS-API-KEY") {
				secret = v
			}
		}
		if why := fx.checkAllow(secret, in.Service, in.API == "management", in.Method, in.Path, d.Permission, d.Visibility.Drafts, d.Visibility.Closed); why != "" {
			t.Fatalf("%s: %s -> %s", why, body, rec.Body)
		}
	})
}

// duplicateMember finds, independently of the server's scanner, a member the
// body names twice as the README counts it: top-level members and header
// names case-insensitively, query parameters exactly. "" when there is none
// or the body is not a JSON object.
func duplicateMember(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	var seen []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		name, _ := tok.(string)
		if dupOf(seen, name, true) {
			return name
		}
		seen = append(seen, name)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return ""
		}
		fold := strings.EqualFold(name, "headers")
		if !fold && !strings.EqualFold(name, "query") {
			continue
		}
		inner := json.NewDecoder(bytes.NewReader(raw))
		if tok, err := inner.Token(); err != nil || tok != json.Delim('{') {
			continue
		}
		var names []string
		for inner.More() {
			tok, err := inner.Token()
			if err != nil {
				break
			}
			k, _ := tok.(string)
			if dupOf(names, k, fold) {
				return name + "." + k
			}
			names = append(names, k)
			var v json.RawMessage
			if err := inner.Decode(&v); err != nil {
				break
			}
		}
	}
	return ""
}

// dupOf reports whether name is in seen: Unicode-case-insensitively (as
// encoding/json matches fields: "ſervice" is "service") when fold.
func dupOf(seen []string, name string, fold bool) bool {
	for _, s := range seen {
		if s == name || fold && strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

// validHeaderValue is what net/http would let through as a header value.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func FuzzForwardAuth(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(uint8(0), "GET", "/api/v1/members", "team-demo.microcms-management.io.", "", "", uint8(0), false)
	f.Add(uint8(0), "GET", "/api/v1/members", "team-demo.microcms-management.io, x", "", "", uint8(0), false)
	f.Add(uint8(1), "GET", "/api/v1/blogs", "TEAM-DEMO.microcms.io:443", "", "", uint8(0), false)
	f.Add(uint8(2), "GET", "/api/v1/%2562logs", "team-demo.microcms.io", "", "", uint8(0), false)
	f.Add(uint8(2), "DELETE", "/api/v1/news/a", "business-demo.microcms.io", "", "", uint8(2), false)
	f.Add(uint8(0), "GET", "/api/v1/media", "cms.internal", "business-demo", "management", uint8(2), false)
	f.Add(uint8(1), "POST", "/api/v1/contact", "team-demo.microcms.io", "", "", uint8(1), true)
	f.Add(uint8(0), "GET", "/api/v1/blogs", "127.0.0.1", "", "", uint8(0), false)
	f.Fuzz(func(t *testing.T, conv uint8, method, uri, host, svcHeader, apiHeader string, keyIdx uint8, dupKey bool) {
		for _, v := range []string{method, uri, host, svcHeader, apiHeader} {
			if !validHeaderValue(v) {
				t.Skip()
			}
		}
		secret := fx.secret(keyIdx)
		reqMethod, target := http.MethodGet, "/v1/forward-auth"
		envoy := conv%3 == 2
		if envoy {
			if !strings.HasPrefix(uri, "/") {
				t.Skip()
			}
			reqMethod, target = method, target+uri
			if reqMethod == "" {
				// net/http: an empty Method means GET, and that is what
				// the server sees.
				reqMethod = http.MethodGet
			}
		}
		req, err := http.NewRequest(reqMethod, "http://keygate.internal"+target, nil)
		if err != nil || req.URL.Path == "" || req.URL.Host != "keygate.internal" || req.URL.Fragment != "" {
			t.Skip()
		}
		switch conv % 3 {
		case 0:
			req.Header.Set("X-Original-Method", method)
			req.Header.Set("X-Original-URI", uri)
			req.Header.Set("X-Forwarded-Host", host)
		case 1:
			req.Header.Set("X-Forwarded-Method", method)
			req.Header.Set("X-Forwarded-Uri", uri)
			req.Header.Set("X-Forwarded-Host", host)
		case 2:
			req.Host = host
		}
		if svcHeader != "" {
			req.Header.Set("X-Keygate-Service", svcHeader)
		}
		if apiHeader != "" {
			req.Header.Set("X-Keygate-Api", apiHeader)
		}
		if secret != "" {
			req.Header.Set("X-MICROCMS-API-KEY", secret)
		}
		if dupKey {
			req.Header.Add("X-MICROCMS-API-KEY", "fz-unknown-key")
		}
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		fx.checkHeap(t)
		switch rec.Code {
		case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden:
		default:
			t.Fatalf("forward-auth answered %d", rec.Code)
		}
		if rec.Body.Len() > 1<<10 {
			t.Fatalf("forward-auth body of %d bytes", rec.Body.Len())
		}
		for name, v := range rec.Header() {
			if n := len(strings.Join(v, "")); n > 9<<10 {
				t.Fatalf("header %s of %d bytes", name, n)
			}
		}
		if rec.Header().Get("X-Keygate-Code") == "policy_error" {
			t.Fatalf("policy error: %v", rec.Header())
		}
		if rec.Code != http.StatusOK {
			return
		}
		if dupKey {
			t.Fatal("allowed with two key headers")
		}
		// Which service and API, read independently: the service header,
		// else the host with its port and one trailing dot removed.
		name := strings.ToLower(host)
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			name = name[:i]
		}
		name = strings.TrimSuffix(name, ".")
		service := svcHeader
		management := strings.EqualFold(apiHeader, "management") || strings.HasSuffix(name, ".microcms-management.io")
		if service == "" {
			label, domain, _ := strings.Cut(name, ".")
			if domain != "microcms.io" && domain != "microcms-management.io" {
				t.Fatalf("allowed on host %q without a service header", host)
			}
			service = label
		}
		effMethod := method
		if envoy || method == "" {
			// The request's own method: http.NewRequest reads "" as GET.
			effMethod = req.Method
		}
		if why := fx.checkAllow(secret, service, management, effMethod, uri, rec.Header().Get("X-Keygate-Permission"),
			rec.Header().Get("X-Keygate-Drafts") == "true", rec.Header().Get("X-Keygate-Closed") == "true"); why != "" {
			t.Fatalf("%s: conv %d %s %q host %q service %q api %q", why, conv%3, method, uri, host, svcHeader, apiHeader)
		}
	})
}
