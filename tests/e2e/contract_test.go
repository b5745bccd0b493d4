package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/keygate/keygate/internal/server/openapi"
)

// The tests' HTTP exchanges with keygate are checked against keygate's
// OpenAPI document (internal/server/openapi), so that the document cannot
// drift from the server: every request a test sends to a keygate it started
// and every answer it gets go through apiContract's transport, which
// validates both with kin-openapi's openapi3filter and records what does
// not match. The test that started that keygate reports the failures when it
// ends (startConfig's cleanup).
//
// What fails:
//   - a request to a path or method the document does not list, unless the
//     answer is the router's documented 404 not_found or 405
//     method_not_allowed problem;
//   - an answer with a status the operation does not document, a body whose
//     type or content does not match (response schemas forbid undocumented
//     members), a body where none is documented, or a documented header of
//     the wrong form;
//   - a request the document refuses (a malformed body, an unknown member,
//     a bound exceeded, no bearer token) that keygate answers with anything
//     but a 4xx: the tests send such requests on purpose, and then only the
//     answer must be the documented 4xx problem. A request that is valid may
//     of course be refused (401, 403, 404, 409, 422).
//
// Not seen: what the CLI commands send (a subprocess), requests through
// nginx, the launcher's readiness probe, and the decision-log test that
// measures keygate's latency with a plain client of its own.
var apiContract = &contract{watched: map[string][]string{}, exercised: map[string]bool{}}

// anyMethodExtension marks a path item that answers every method (forward
// auth): a method OpenAPI has no field for is validated as its GET.
const anyMethodExtension = "x-keygate-any-method"

// contract is the loaded document and the failures recorded per keygate.
type contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error

	mu sync.Mutex
	// watched maps the host:port of each running keygate of the tests to
	// the failures recorded for it.
	watched map[string][]string
	// exercised holds "METHOD path status" of every exchange that matched
	// a documented answer, for the coverage report.
	exercised map[string]bool
}

func (c *contract) load() error {
	c.once.Do(func() {
		// The console's page and assets are text the document types as
		// strings; kin-openapi decodes only text/plain as such by itself.
		for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/svg+xml"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
		}
		loader := openapi3.NewLoader()
		c.doc, c.err = loader.LoadFromData(openapi.Document())
		if c.err == nil {
			// The server package's test validates the examples; here
			// the document only has to be usable.
			c.err = c.doc.Validate(loader.Context, openapi3.DisableExamplesValidation())
		}
		if c.err == nil {
			c.router, c.err = gorillamux.NewRouter(c.doc)
		}
		if c.err != nil {
			c.err = fmt.Errorf("the OpenAPI document does not load: %w", c.err)
		}
	})
	return c.err
}

// watch starts validating the exchanges with the keygate at baseURL; the
// returned function stops it and reports what failed on t.
func (c *contract) watch(t *testing.T, baseURL string) func() {
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatalf("keygate URL %q: %v", baseURL, err)
	}
	c.mu.Lock()
	c.watched[u.Host] = []string{}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		failures := c.watched[u.Host]
		delete(c.watched, u.Host)
		c.mu.Unlock()
		for _, f := range failures {
			t.Errorf("OpenAPI contract: %s", f)
		}
	}
}

func (c *contract) isWatched(host string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.watched[host]
	return ok
}

func (c *contract) record(host, failure string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.watched[host]; ok {
		c.watched[host] = append(l, failure)
	}
}

// transport wraps base with the validation.
func (c *contract) transport(base http.RoundTripper) http.RoundTripper {
	return &validatingTransport{base: base, c: c}
}

type validatingTransport struct {
	base http.RoundTripper
	c    *contract
}

func (v *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !v.c.isWatched(req.URL.Host) {
		return v.base.RoundTrip(req)
	}
	// The body is read here, once, and the request sent with a copy: the
	// validator needs it whole, and a RoundTripper must not consume the
	// caller's request.
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if failure := v.c.check(req, reqBody, resp, respBody); failure != "" {
		v.c.record(req.URL.Host, fmt.Sprintf("%s %s → %d: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, clipFailure(failure)))
	}
	return resp, nil
}

// clipFailure bounds a validator's message, which quotes schemas and values.
func clipFailure(s string) string {
	const max = 3000
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// standardMethods are the methods an OpenAPI 3.1 path item has a field for.
var standardMethods = map[string]bool{
	http.MethodGet: true, http.MethodPut: true, http.MethodPost: true, http.MethodDelete: true,
	http.MethodOptions: true, http.MethodHead: true, http.MethodPatch: true, http.MethodTrace: true,
}

// check validates one exchange and returns why it does not match the
// document ("" when it does).
func (c *contract) check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) string {
	if err := c.load(); err != nil {
		return err.Error()
	}
	ctx := context.WithoutCancel(req.Context())
	vreq := routingRequest(ctx, req, reqBody)
	route, pathParams, err := c.router.FindRoute(vreq)
	if errors.Is(err, routers.ErrMethodNotAllowed) && !standardMethods[req.Method] {
		// A method OpenAPI cannot name, on a path that answers any method.
		getReq := vreq.Clone(ctx)
		getReq.Method = http.MethodGet
		if r, p, gerr := c.router.FindRoute(getReq); gerr == nil && r.PathItem.Extensions[anyMethodExtension] == true {
			vreq, route, pathParams, err = getReq, r, p, nil
		}
	}
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return c.unrouted(resp, respBody, http.StatusNotFound, "NoRoute", "not_found", "undocumented endpoint")
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return c.unrouted(resp, respBody, http.StatusMethodNotAllowed, "MethodNotAllowed", "method_not_allowed", "undocumented method")
	case err != nil:
		return "route lookup: " + err.Error()
	}

	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		SkipSettingDefaults:   true,
		AuthenticationFunc:    presentCredentials,
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: pathParams, Route: route, Options: opts}
	if reqErr := openapi3filter.ValidateRequest(ctx, in); reqErr != nil {
		if resp.StatusCode < 400 || resp.StatusCode > 499 {
			return fmt.Sprintf("the document refuses this request, but keygate answered %d: %v", resp.StatusCode, reqErr)
		}
	}

	op := route.Operation
	documented := op.Responses.Status(resp.StatusCode)
	if documented == nil {
		documented = op.Responses.Default()
	}
	if documented == nil || documented.Value == nil {
		return fmt.Sprintf("status %d is not documented for %s %s", resp.StatusCode, route.Method, route.Path)
	}
	if len(documented.Value.Content) == 0 && len(respBody) > 0 {
		return fmt.Sprintf("status %d of %s %s is documented without a body, but the answer has one: %.200s", resp.StatusCode, route.Method, route.Path, respBody)
	}
	c.mu.Lock()
	c.exercised[fmt.Sprintf("%s %s %d", route.Method, route.Path, resp.StatusCode)] = true
	c.mu.Unlock()
	if req.Method == http.MethodHead {
		// openapi3filter does not validate answers to HEAD; the status
		// was checked above and net/http drops any body.
		return ""
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return err.Error()
	}
	return ""
}

// catchAllPrefixes are the paths whose rest, slashes included, is one path
// parameter of the document: /v1/forward-auth/{path} and /console/{path}.
var catchAllPrefixes = []string{"/v1/forward-auth/", "/console/"}

// routingRequest is the request the validator sees: req with its body, and
// a catch-all path's rest given as one segment (an OpenAPI path parameter
// never spans a slash).
func routingRequest(ctx context.Context, req *http.Request, body []byte) *http.Request {
	v := req.Clone(ctx)
	v.Body = io.NopCloser(bytes.NewReader(body))
	v.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	for _, prefix := range catchAllPrefixes {
		if rest, ok := strings.CutPrefix(req.URL.EscapedPath(), prefix); ok && rest != "" {
			u := *req.URL
			u.RawPath = prefix + strings.ReplaceAll(rest, "/", "%2F")
			if p, err := url.PathUnescape(rest); err == nil {
				u.Path = prefix + p
			}
			v.URL = &u
		}
	}
	return v
}

// presentCredentials checks that a request carries what its security
// scheme asks for (a bearer token); whether it is valid is keygate's
// business (401).
func presentCredentials(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type == "http" && strings.EqualFold(s.Scheme, "bearer") {
		h := in.RequestValidationInput.Request.Header.Get("Authorization")
		if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
			return nil
		}
		return in.NewError(errors.New("no bearer token"))
	}
	return in.NewError(fmt.Errorf("security scheme %q is not checked by the tests", in.SecuritySchemeName))
}

// unrouted checks the router's answer to a path or method the document does
// not list: only the documented problem (components.responses[name]) with
// status and code is acceptable; anything else is an undocumented endpoint.
func (c *contract) unrouted(resp *http.Response, body []byte, status int, name, code, what string) string {
	if resp.StatusCode != status {
		return fmt.Sprintf("%s (the document does not list it) answered %d", what, resp.StatusCode)
	}
	r := c.doc.Components.Responses[name]
	if r == nil || r.Value == nil {
		return "the document has no components.responses." + name
	}
	ct, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Sprintf("%d with Content-Type %q", status, resp.Header.Get("Content-Type"))
	}
	mt := r.Value.Content.Get(ct)
	if mt == nil || mt.Schema == nil {
		return fmt.Sprintf("%d with Content-Type %q, which components.responses.%s does not document", status, ct, name)
	}
	if len(body) == 0 {
		return "" // an answer to HEAD
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Sprintf("%d body is not JSON: %v", status, err)
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		return fmt.Sprintf("%d body does not match components.responses.%s: %v", status, name, err)
	}
	if m, _ := v.(map[string]any); m["code"] != code {
		return fmt.Sprintf("%d with code %v, want %s", status, m["code"], code)
	}
	return ""
}

// coverageEnv names a file to which the run writes the documented answers
// (method, path, status) that no test exchange produced.
const coverageEnv = "KEYGATE_OPENAPI_COVERAGE"

// writeCoverage writes the documented answers no exchange of this run
// produced to the file KEYGATE_OPENAPI_COVERAGE names, if it is set.
func (c *contract) writeCoverage() error {
	path := os.Getenv(coverageEnv)
	if path == "" || c.load() != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var missed []string
	total := 0
	for p, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				total++
				if k := method + " " + p + " " + status; !c.exercised[k] {
					missed = append(missed, k)
				}
			}
		}
	}
	slices.Sort(missed)
	head := fmt.Sprintf("# %d of %d documented answers (method, path, status) were not exercised\n", len(missed), total)
	return os.WriteFile(path, []byte(head+strings.Join(missed, "\n")+"\n"), 0o644)
}
