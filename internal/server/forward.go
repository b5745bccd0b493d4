package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/decision"
)

// Forward-auth header conventions (Options.ForwardAuthHeaders). In "auto"
// keygate accepts any convention, X-Original-* first; naming the proxy in
// front makes keygate ignore the other conventions' headers, so that a
// client cannot smuggle in an X-Original-Method the proxy does not
// overwrite.
const (
	ForwardAuto    = "auto"
	ForwardNginx   = "nginx"
	ForwardTraefik = "traefik"
	ForwardEnvoy   = "envoy"
)

// Headers of the forward-auth protocol.
const (
	// ServiceHeader names the service when the host does not.
	ServiceHeader = "X-Keygate-Service"
	// APIHeader selects the management API when the host does not.
	APIHeader = "X-Keygate-Api"
	// forwardAuthPath is the forward-auth route; Envoy appends the original
	// path to it.
	forwardAuthPath = "/v1/forward-auth"
)

// handleForwardAuth answers nginx auth_request, Traefik ForwardAuth and
// Envoy ext_authz (HTTP service). Those proxies accept only a few statuses,
// so the answer is 200 (allow), 401 (microCMS's 401) or 403 (every other
// deny); the microCMS status and message travel in X-Keygate-Status and
// X-Keygate-Message for the proxy to turn into the client's answer.
//
// The original request is read from X-Original-Method/X-Original-URI
// (nginx) or X-Forwarded-Method/X-Forwarded-Uri (Traefik). Envoy sends the
// original method and appends the original path to the configured prefix,
// which the /v1/forward-auth/*rest route receives.
func (s *Server) handleForwardAuth(c *gin.Context) {
	h := c.Request.Header
	// A header of the request description sent twice names two requests.
	for _, name := range [...]string{"X-Original-Method", "X-Original-URI", "X-Forwarded-Method", "X-Forwarded-Uri"} {
		if len(h.Values(name)) > 1 {
			denyForward(c, http.StatusBadRequest, "duplicate_forward_header", name+" is sent more than once.")
			return
		}
	}
	var method, uri string
	switch s.fwdHeaders {
	case ForwardNginx:
		method, uri = h.Get("X-Original-Method"), h.Get("X-Original-URI")
	case ForwardTraefik:
		method, uri = h.Get("X-Forwarded-Method"), h.Get("X-Forwarded-Uri")
	case ForwardEnvoy:
		// Envoy sends the original method and appends the original path
		// to the configured prefix; any X-Original-* header came from
		// the client and is ignored.
	default:
		// Two conventions that disagree mean one of them came from the
		// client (a proxy that forwards client headers): deny rather than
		// pick one.
		if conflicting(h, "X-Original-Method", "X-Forwarded-Method") || conflicting(h, "X-Original-URI", "X-Forwarded-Uri") {
			denyForward(c, http.StatusBadRequest, "conflicting_forward_headers", "X-Original-* and X-Forwarded-* name different requests.")
			return
		}
		method = firstHeader(h, "X-Original-Method", "X-Forwarded-Method")
		uri = firstHeader(h, "X-Original-URI", "X-Forwarded-Uri")
	}
	if method == "" {
		method = c.Request.Method
	}
	if uri == "" {
		// Envoy: the original path follows the route's prefix. It is read
		// from the raw (escaped) path, as X-Original-URI is, and decoded
		// once by request() below: the router's decoded path would be
		// decoded a second time (%2562 → %62 → b).
		raw := c.Request.URL.EscapedPath()
		rest, ok := strings.CutPrefix(raw, forwardAuthPath)
		if !ok || rest != "" && rest[0] != '/' {
			denyForward(c, http.StatusBadRequest, "invalid_forward_request", "Forward-auth request: the path does not start with "+forwardAuthPath+".")
			return
		}
		uri = rest
		if uri == "" {
			uri = "/"
		}
		if c.Request.URL.RawQuery != "" {
			uri += "?" + c.Request.URL.RawQuery
		}
	}
	service, api, code, message := s.forwardTarget(c.Request)
	if code != "" {
		denyForward(c, http.StatusForbidden, code, message)
		return
	}
	// The key is sent once. Two header lines are two keys: which one
	// counts would depend on the proxy, so neither does (microCMS's 401).
	secret, ok := singleHeader(h, decision.APIKeyHeader)
	if !ok {
		denyDuplicateKey(c)
		return
	}
	b := decision.Body{
		Service: service,
		API:     api,
		Method:  method,
		Path:    uri,
		APIKey:  &secret,
	}
	r, field, why := b.Request()
	if field != "" {
		// The proxy sent something unusable: deny, never allow.
		denyForward(c, http.StatusBadRequest, "invalid_forward_request", "Forward-auth request: "+field+" "+why)
		return
	}
	if s.legacyHeaders && r.API() == decision.APIContent {
		// --legacy-headers: microCMS's old key headers, each sent at most
		// once (two lines are two keys, as for X-MICROCMS-API-KEY).
		for _, name := range decision.LegacyHeaderNames() {
			if len(h.Values(name)) == 0 {
				continue
			}
			v, ok := singleHeader(h, name)
			if !ok {
				denyDuplicateKey(c)
				return
			}
			r.AddLegacyHeader(name, v)
		}
	}
	r.SetClientIP(s.forwardClientIP(c.Request))
	d := s.decide(c.Request.Context(), &r)
	hdr := c.Writer.Header()
	hdr.Set("X-Keygate-Decision-Id", d.DecisionID)
	hdr.Set("X-Keygate-Status", strconv.Itoa(d.Status))
	hdr.Set("X-Keygate-Code", d.Code)
	hdr.Set("X-Keygate-Message", d.Message)
	hdr.Set("X-Keygate-Key-Id", d.KeyID)
	hdr.Set("X-Keygate-Endpoint", d.Endpoint)
	hdr.Set("X-Keygate-Content-Id", d.ContentID)
	hdr.Set("X-Keygate-Permission", d.Permission)
	hdr.Set("X-Keygate-Drafts", strconv.FormatBool(d.Visibility.Drafts))
	hdr.Set("X-Keygate-Closed", strconv.FormatBool(d.Visibility.Closed))
	hdr.Set("X-Keygate-Draft-Key", strconv.FormatBool(d.Visibility.DraftKey))
	hdr.Set("X-Keygate-Filter-On", d.Visibility.FilterOn)
	hdr.Set("X-Keygate-Policy-Revision", d.PolicyRevision)
	switch {
	case d.Allow:
		c.Status(http.StatusOK)
	case d.Status == http.StatusUnauthorized:
		c.Data(http.StatusUnauthorized, "application/json; charset=utf-8", messageJSON(d.Message))
	default:
		c.Data(http.StatusForbidden, "application/json; charset=utf-8", messageJSON(d.Message))
	}
}

// invalidKeyMessage is microCMS's answer to a missing or unknown key, as the
// policies give it.
const invalidKeyMessage = "X-MICROCMS-API-KEY header is invalid."

// denyDuplicateKey answers a forward-auth request that carries the key
// header more than once: microCMS's 401, without asking the policy.
func denyDuplicateKey(c *gin.Context) {
	c.Header("X-Keygate-Status", "401")
	c.Header("X-Keygate-Code", "duplicate_api_key")
	c.Header("X-Keygate-Message", invalidKeyMessage)
	c.Data(http.StatusUnauthorized, "application/json; charset=utf-8", messageJSON(invalidKeyMessage))
}

// denyForward answers a forward-auth request keygate cannot judge: 403 for
// the proxy, status (400 for a malformed request, 403 for a host or target
// keygate does not accept) with code and message for the client.
func denyForward(c *gin.Context, status int, code, message string) {
	c.Header("X-Keygate-Status", strconv.Itoa(status))
	c.Header("X-Keygate-Code", code)
	c.Header("X-Keygate-Message", message)
	c.Data(http.StatusForbidden, "application/json; charset=utf-8", []byte(`{"message":"Forbidden"}`))
}

// conflicting reports whether both headers are present with different
// values.
func conflicting(h http.Header, a, b string) bool {
	va, vb := h.Get(a), h.Get(b)
	return va != "" && vb != "" && va != vb
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// messageJSON is microCMS's error body, {"message": "..."}.
func messageJSON(msg string) []byte {
	b, err := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	if err != nil {
		return []byte(`{"message":"Forbidden"}`)
	}
	return b
}
