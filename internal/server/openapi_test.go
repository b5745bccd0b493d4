package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/console"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/server/openapi"
)

// anyMethod marks a path item whose path answers every method, including
// ones OpenAPI has no field for (forward-auth): its methods are not listed
// one by one against the router.
const anyMethod = "x-keygate-any-method"

func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Document())
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	return doc
}

// TestOpenAPIDocumentValidates: the embedded document loads as OpenAPI 3.1
// and validates, examples included (kin-openapi checks each example
// against its schema).
func TestOpenAPIDocumentValidates(t *testing.T) {
	doc := loadDocument(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(t.Context(), openapi3.EnableExamplesValidation(), openapi3.EnableSchemaPatternValidation()); err != nil {
		t.Fatalf("the OpenAPI document does not validate: %v", err)
	}
}

// openAPIPath turns a gin route path into its OpenAPI template: ":name"
// becomes "{name}", and forward-auth's catch-all "*rest" the "{path}" the
// document names it.
func openAPIPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		switch {
		case strings.HasPrefix(s, ":"):
			parts[i] = "{" + s[1:] + "}"
		case strings.HasPrefix(s, "*"):
			parts[i] = "{path}"
		}
	}
	return strings.Join(parts, "/")
}

// TestOpenAPIDocumentsEveryRoute: every route of the router is documented
// (path and method), and every documented operation is routed, with the
// console mounted as keygate serve mounts it by default (its page and
// assets are documented too, under the console tag).
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadDocument(t)
	c, err := console.New()
	if err != nil {
		t.Fatal(err)
	}
	engine, ok := newFixture(t, server.Options{Console: c}).(*gin.Engine)
	if !ok {
		t.Fatal("the server's handler is not the gin router")
	}
	routed := map[string]bool{}
	for _, r := range engine.Routes() {
		path := openAPIPath(r.Path)
		routed[r.Method+" "+path] = true
		if prefix, _, ok := strings.Cut(r.Path, "*"); ok {
			// A catch-all serves its prefix too (an empty rest), which
			// the document may list as a path of its own (/console/).
			routed[r.Method+" "+prefix] = true
		}
		item := doc.Paths.Value(path)
		if item == nil {
			t.Errorf("route %s %s (%s) is not in the OpenAPI document", r.Method, r.Path, path)
			continue
		}
		if item.Extensions[anyMethod] == true {
			continue
		}
		if item.GetOperation(r.Method) == nil {
			t.Errorf("route %s %s is not documented: the document's %s has no %s operation", r.Method, r.Path, path, strings.ToLower(r.Method))
		}
	}
	for path, item := range doc.Paths.Map() {
		anyM := item.Extensions[anyMethod] == true
		for method := range item.Operations() {
			op := method + " " + path
			switch {
			case anyM && routed["GET "+path]:
				// Routed for any method (gin's Any): every documented one is.
			case !routed[op]:
				t.Errorf("the document describes %s, which no route serves", op)
			}
		}
		if anyM && !routed["GET "+path] {
			t.Errorf("the document says %s answers any method, but it is not routed", path)
		}
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers the embedded document as
// JSON, and HEAD the same status and type without a body.
func TestOpenAPIServed(t *testing.T) {
	h := newFixture(t, server.Options{})
	for _, tc := range []struct {
		method   string
		wantBody []byte
	}{
		{http.MethodGet, openapi.Document()},
		{http.MethodHead, nil},
	} {
		t.Run(tc.method, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+"/v1/openapi.json", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got bytes.Buffer
			if _, err := got.ReadFrom(resp.Body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s /v1/openapi.json: %d %q", tc.method, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if !bytes.Equal(got.Bytes(), tc.wantBody) {
				t.Fatalf("%s /v1/openapi.json: body of %d bytes, want %d", tc.method, got.Len(), len(tc.wantBody))
			}
		})
	}
}
