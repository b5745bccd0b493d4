// Package route parses a content or management API path into the route the
// policies judge. Parsing a path is structural, not policy: the server does
// it once, after its one decoding step, and presents the result as
// input.request.route (policies/README.md). A path that is not exactly in
// the grammar has no route, and the policies refuse it.
//
// The grammar is an allow-list. An {endpoint} is one or more of [a-z0-9_-]
// (microCMS endpoints are lower-case: an upper-case spelling such as
// /api/v1/Contact names no endpoint, so it can never be judged as another
// endpoint than an origin matching case-insensitively would serve); a
// content or member {id} is one or more of [A-Za-z0-9_-]. Any other segment
// — empty, "." or "..", %, \, ";", non-ASCII — is no segment of a route.
package route

import (
	"slices"
	"strings"
)

// Kinds of content route.
const (
	KindList   = "list"
	KindSingle = "single"
)

// Route is a parsed API path.
type Route struct {
	// Endpoint is the API endpoint the path names, "" where it names none
	// (management routes such as /api/v1/media).
	Endpoint string
	// Kind is KindList or KindSingle for a content route, "" for a
	// management route.
	Kind string
	// Pattern is a management route's path with its variable segments
	// named as the policy's table names them, such as
	// "/api/v1/contents/{endpoint}/{id}/status"; "" for a content route.
	Pattern string
	// ContentID is the content id the path names, "" where it names none
	// (a member id is not a content id).
	ContentID string
}

// Content parses a content API path, /api/v1/{endpoint} or
// /api/v1/{endpoint}/{id}; ok is false for any other path.
func Content(path string) (r Route, ok bool) {
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		return Route{}, false
	}
	endpoint, id, single := strings.Cut(rest, "/")
	if !IsEndpoint(endpoint) || single && !IsID(id) {
		return Route{}, false
	}
	if single {
		return Route{Endpoint: endpoint, Kind: KindSingle, ContentID: id}, true
	}
	return Route{Endpoint: endpoint, Kind: KindList}, true
}

// Management parses a management API path: a collection
// /api/v1|v2/{name}, up to two segments after it and an action (/createdBy
// or /status). Whether the pattern is a route of the management API is the
// policy's table's business; ok is false for a path outside this shape.
// Under /api/v1/members the one segment is a member {id}; elsewhere the
// first segment is an {endpoint} and the second a content {id}.
func Management(path string) (r Route, ok bool) {
	rest, ok := strings.CutPrefix(path, "/api/v")
	if !ok || len(rest) < 3 || (rest[0] != '1' && rest[0] != '2') || rest[1] != '/' {
		return Route{}, false
	}
	name, rest, _ := strings.Cut(rest[2:], "/")
	if !isLower(name) {
		return Route{}, false
	}
	collection := path[:len("/api/v1/")+len(name)]
	var segs []string
	if len(path) > len(collection) {
		if rest == "" {
			return Route{}, false // a trailing slash is an empty segment
		}
		segs = strings.Split(rest, "/")
	}
	action := ""
	if len(segs) == 3 {
		if segs[2] != "createdBy" && segs[2] != "status" {
			return Route{}, false
		}
		action, segs = "/"+segs[2], segs[:2]
	}
	if len(segs) > 2 {
		return Route{}, false
	}
	r.Pattern = collection
	for i, s := range segs {
		switch {
		case i == 0 && collection == "/api/v1/members":
			if !IsID(s) {
				return Route{}, false
			}
			r.Pattern += "/{id}"
		case i == 0:
			if !IsEndpoint(s) {
				return Route{}, false
			}
			r.Endpoint, r.Pattern = s, r.Pattern+"/{endpoint}"
		default:
			if !IsID(s) {
				return Route{}, false
			}
			r.ContentID, r.Pattern = s, r.Pattern+"/{id}"
		}
	}
	r.Pattern += action
	return r, true
}

// IsEndpoint reports whether s is an endpoint: one or more of [a-z0-9_-].
func IsEndpoint(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// IsID reports whether s is a content or member id: one or more of
// [A-Za-z0-9_-].
func IsID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isLower(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return true
}

// Parameters lists the names of a request's query parameters, sorted and
// without repeats, for the policy to check whatever an origin might read
// as a parameter it refuses (the paid-plan status parameter). Besides "&",
// ";" separates parameters here (some query parsers split on it), so
// "x=1;status=draft" names x and status. The names are as decoded, not
// normalised: case, spaces and array brackets are the policy's business.
func Parameters(query [][2]string) []string {
	if len(query) == 0 {
		return nil
	}
	names := make([]string, 0, len(query))
	for _, kv := range query {
		// As if splitting name=value on ";": every part of the name, and
		// every part of the value after its first ";", names a parameter
		// (up to its "=").
		for part := range strings.SplitSeq(kv[0], ";") {
			name, _, _ := strings.Cut(part, "=")
			names = append(names, name)
		}
		if _, rest, ok := strings.Cut(kv[1], ";"); ok {
			for part := range strings.SplitSeq(rest, ";") {
				name, _, _ := strings.Cut(part, "=")
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
