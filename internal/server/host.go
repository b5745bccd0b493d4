package server

import (
	"net/http"
	"strings"

	"github.com/keygate/keygate/internal/decision"
)

// The forward-auth target: which service and which API a forward-auth
// request is about. It comes from the host the client addressed, or from
// the X-Keygate-Service / X-Keygate-Api headers the proxy sets. Anything
// about it that keygate does not fully understand is a deny, never a guess:
// a wrongly read host would have the content policy judge a management
// request, or one service's policy judge another's.

// Host domains of the two APIs: <service>.microcms.io and
// <service>.microcms-management.io.
const (
	contentDomain    = "microcms.io"
	managementDomain = "microcms-management.io"
)

// maxHostBytes bounds a host header: a DNS name (253), a trailing dot and a
// port.
const maxHostBytes = 253 + 1 + 6

// hostClass is what a host says about the request.
type hostClass int

const (
	// hostInvalid is not a host name at all (a list, spaces, an empty
	// label, a bad port, …), or a name under one of the API domains that is
	// not exactly <label>.<domain>: always a deny.
	hostInvalid hostClass = iota
	// hostOther is a well-formed host that names no service (an internal
	// name, an IP literal, another domain): acceptable only when the proxy
	// names the service with X-Keygate-Service.
	hostOther
	// hostContent is <service>.microcms.io.
	hostContent
	// hostManagement is <service>.microcms-management.io.
	hostManagement
)

// classifyHost reads a host header value. It accepts exactly
// <label>.microcms.io and <label>.microcms-management.io, ASCII
// case-insensitively, with one trailing dot and a port (":digits")
// allowed, and returns the label as the service. Any other well-formed
// host name or IP literal is hostOther; everything else is hostInvalid.
func classifyHost(host string) (service string, class hostClass) {
	if host == "" || len(host) > maxHostBytes {
		return "", hostInvalid
	}
	name := host
	if strings.HasPrefix(name, "[") {
		// An IPv6 literal, [addr] or [addr]:port.
		end := strings.IndexByte(name, ']')
		if end < 0 || !validPort(name[end+1:]) || !isIPv6Literal(name[1:end]) {
			return "", hostInvalid
		}
		return "", hostOther
	}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		if !validPort(name[i:]) {
			return "", hostInvalid
		}
		name = name[:i]
	}
	// One trailing dot is the absolute form of the same name; two are not.
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", hostInvalid
	}
	for label := range strings.SplitSeq(name, ".") {
		if !isHostLabel(label) {
			return "", hostInvalid
		}
	}
	name = strings.ToLower(name)
	first, rest, _ := strings.Cut(name, ".")
	class = hostOther
	switch {
	case rest == contentDomain:
		class = hostContent
	case rest == managementDomain:
		class = hostManagement
	case strings.Contains("."+name+".", "."+contentDomain+".") || strings.Contains("."+name+".", "."+managementDomain+"."):
		// An API domain, but not as <label>.<domain>: the bare domain, a
		// deeper name (a.b.microcms.io) or more after it
		// (x.microcms-management.io.example). Which service, which API?
		// Deny.
		return "", hostInvalid
	default:
		return "", hostOther
	}
	if !decision.IsServiceID(first) {
		return "", hostInvalid
	}
	return first, class
}

// isHostLabel reports whether s is one label of a host name: 1 to 63
// letters, digits, hyphens and underscores (seen in internal names), not
// starting or ending with a hyphen.
func isHostLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			continue
		}
		return false
	}
	return true
}

// validPort reports whether s is "" or ":" and 1 to 5 digits.
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isIPv6Literal is a loose check of the inside of [...]: hex digits,
// colons and dots (an embedded IPv4), at least one colon.
func isIPv6Literal(s string) bool {
	if s == "" || len(s) > 45 || !strings.Contains(s, ":") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.' {
			continue
		}
		return false
	}
	return true
}

// forwardTarget says which service and API a forward-auth request is about,
// or why it cannot tell (code and message for a 403).
//
// X-Keygate-Service and X-Keygate-Api are honoured whenever present, like
// the X-Original-* and X-Forwarded-* headers: the forward-auth request is
// the proxy's, and the proxy configurations in the README pass no client
// header but the key. They are checked as strictly as the host: the service
// must be a service id, the API "content" or "management", each given once.
// When the host is an API host too, the service header wins (a proxy may
// rewrite hosts), but the two may not disagree on the API.
//
// The host is X-Forwarded-Host, or the request's own Host when there is
// none; with --forward-auth-headers envoy only the Host (Envoy sends the
// original :authority as Host and no X-Forwarded-Host of its own).
func (s *Server) forwardTarget(r *http.Request) (service, api, code, message string) {
	h := r.Header
	svcHeader, ok := singleHeader(h, ServiceHeader)
	if !ok {
		return "", "", "invalid_service_header", ServiceHeader + " is sent more than once."
	}
	apiHeader, ok := singleHeader(h, APIHeader)
	if !ok {
		return "", "", "invalid_api_header", APIHeader + " is sent more than once."
	}
	switch {
	case apiHeader == "":
	case strings.EqualFold(apiHeader, decision.APIContent):
		apiHeader = decision.APIContent
	case strings.EqualFold(apiHeader, decision.APIManagement):
		apiHeader = decision.APIManagement
	default:
		return "", "", "invalid_api_header", APIHeader + ` must be "content" or "management".`
	}
	if svcHeader != "" && !decision.IsServiceID(svcHeader) {
		return "", "", "invalid_service_header", ServiceHeader + " must be a service id (a lower-case DNS label of at most 63 characters)."
	}

	var host string
	if s.fwdHeaders != ForwardEnvoy {
		host, ok = singleHeader(h, "X-Forwarded-Host")
		if !ok {
			return "", "", "invalid_host", "X-Forwarded-Host is sent more than once."
		}
	}
	if host == "" {
		host = r.Host
	}
	hostService, class := classifyHost(host)
	if class == hostInvalid {
		return "", "", "invalid_host", "The host is not <service>.microcms.io or <service>.microcms-management.io."
	}

	api = apiHeader
	switch class {
	case hostManagement:
		if api == decision.APIContent {
			return "", "", "conflicting_api", "The host names the management API and " + APIHeader + " the content API."
		}
		api = decision.APIManagement
	case hostContent:
		if api == decision.APIManagement {
			return "", "", "conflicting_api", "The host names the content API and " + APIHeader + " the management API."
		}
	}
	if api == "" {
		api = decision.APIContent
	}
	service = svcHeader
	if service == "" {
		if class == hostOther {
			return "", "", "unknown_host", "The host names no service and no " + ServiceHeader + " header is set."
		}
		service = hostService
	}
	return service, api, "", ""
}

// singleHeader returns the one value of a header; ok is false when it is
// sent more than once. A comma list in one line is left to the caller's
// grammar, which none of these headers allow.
func singleHeader(h http.Header, name string) (string, bool) {
	v := h.Values(name)
	switch len(v) {
	case 0:
		return "", true
	case 1:
		return v[0], true
	}
	return "", false
}
