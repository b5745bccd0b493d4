package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
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
	// managementHostSuffix marks the management API's host names.
	managementHostSuffix = ".microcms-management.io"
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
			denyForward(c, "conflicting_forward_headers", "X-Original-* and X-Forwarded-* name different requests.")
			return
		}
		method = firstHeader(h, "X-Original-Method", "X-Forwarded-Method")
		uri = firstHeader(h, "X-Original-URI", "X-Forwarded-Uri")
	}
	if method == "" {
		method = c.Request.Method
	}
	if uri == "" {
		uri = c.Param("rest")
		if uri == "" {
			uri = "/"
		}
		if c.Request.URL.RawQuery != "" {
			uri += "?" + c.Request.URL.RawQuery
		}
	}
	host := firstHeader(h, "X-Forwarded-Host")
	if host == "" {
		host = c.Request.Host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.ToLower(host)

	b := decideBody{
		Service: h.Get(ServiceHeader),
		Method:  method,
		Path:    uri,
		Headers: map[string]string{APIKeyHeader: h.Get(APIKeyHeader)},
	}
	if b.Service == "" {
		b.Service, _, _ = strings.Cut(host, ".")
	}
	if strings.HasSuffix(host, managementHostSuffix) || strings.EqualFold(h.Get(APIHeader), apiManagement) {
		b.API = apiManagement
	}
	r, field, why := b.request()
	if field != "" {
		// The proxy sent something unusable: deny, never allow.
		denyForward(c, "invalid_forward_request", "Forward-auth request: "+field+" "+why)
		return
	}
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

// denyForward answers a forward-auth request keygate cannot judge: 403 for
// the proxy, 400 with code and message for the client.
func denyForward(c *gin.Context, code, message string) {
	c.Header("X-Keygate-Status", "400")
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
