package route

import (
	"regexp"
	"slices"
	"testing"
)

// refused are content paths with a segment outside the allow-list (the table of the former
// policies/content/segments_test.rego): dot segments, empty segments, percent signs left by
// the one decoding step, backslashes, ";", ":", spaces, braces, non-ASCII, trailing slashes.
var refused = []string{
	"", "/", "/api/v1", "/api/v1/", "/api/v2/blogs", "api/v1/blogs", "/API/V1/blogs", "/api//v1/blogs",
	"/api/v1/%252e", "/api/v1/%2e", "/api/v1/%2e%2e/contact", "/api/v1/.", "/api/v1/.%2e/contact",
	"/api/v1/..", "/api/v1/../abc", "/api/v1/../contact", "/api/v1/..;", "/api/v1/..;/contact",
	"/api/v1/..x", "/api/v1/./", "/api/v1/./abc", "/api/v1/./contact", "/api/v1/.well-known",
	"/api/v1//", "/api/v1//blogs/abc", "/api/v1//contact", "/api/v1/\u212aelvin", "/api/v1/a..b/c..",
	"/api/v1/a.b", `/api/v1/a\b`, "/api/v1/blogs%2Fcontact", "/api/v1/blogs./a.b", "/api/v1/blogs/%2e%2e",
	"/api/v1/blogs/.", "/api/v1/blogs/..", "/api/v1/blogs/../contact", "/api/v1/blogs/..;",
	`/api/v1/blogs/..\abc`, "/api/v1/blogs/.abc", "/api/v1/blogs//", "/api/v1/blogs//abc",
	"/api/v1/blogs/a b", "/api/v1/blogs/a%2Fb", "/api/v1/blogs/a.b", "/api/v1/blogs/a:b",
	"/api/v1/blogs/abc/", "/api/v1/blogs/abc\n", "/api/v1/blogs/x.html", "/api/v1/blogs/{id}",
	"/api/v1/blogs/é", "/api/v1/blogs;x", `/api/v1/blogs\..\contact`, "/api/v1/contact/.",
	"/api/v1/contact/..", "/api/v1/x.html", "/api/v1/{id}", "/api/v1/ブログ", "/api/v1/blogs/abc/extra",
	// Endpoints are lower-case (microCMS): an upper-case spelling names no endpoint, so it is
	// never judged on the default while an origin matching case-insensitively serves contact.
	"/api/v1/Contact", "/api/v1/CONTACT/abc", "/api/v1/Blogs_1/Ab-9",
}

func TestContent(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Route
	}{
		{"/api/v1/blogs", Route{Endpoint: "blogs", Kind: KindList}},
		{"/api/v1/blogs/abc", Route{Endpoint: "blogs", Kind: KindSingle, ContentID: "abc"}},
		{"/api/v1/contact", Route{Endpoint: "contact", Kind: KindList}},
		{"/api/v1/blogs_2-x/AbC-09_z", Route{Endpoint: "blogs_2-x", Kind: KindSingle, ContentID: "AbC-09_z"}},
		{"/api/v1/-/_", Route{Endpoint: "-", Kind: KindSingle, ContentID: "_"}},
		{"/api/v1/0", Route{Endpoint: "0", Kind: KindList}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, ok := Content(tc.path)
			if !ok || got != tc.want {
				t.Errorf("Content(%q) = %+v, %v; want %+v, true", tc.path, got, ok, tc.want)
			}
		})
	}
	for _, path := range refused {
		t.Run("refused "+path, func(t *testing.T) {
			if got, ok := Content(path); ok {
				t.Errorf("Content(%q) = %+v, want no route", path, got)
			}
		})
	}
}

// TestContentMatchesGrammar checks the parser against the grammar written as one regular
// expression, on every path of the tables.
func TestContentMatchesGrammar(t *testing.T) {
	grammar := regexp.MustCompile(`^/api/v1/([a-z0-9_-]+)(?:/([A-Za-z0-9_-]+))?$`)
	paths := append(slices.Clone(refused), "/api/v1/blogs", "/api/v1/blogs/abc", "/api/v1/-/_")
	for _, path := range paths {
		m := grammar.FindStringSubmatch(path)
		got, ok := Content(path)
		if ok != (m != nil) || ok && (got.Endpoint != m[1] || got.ContentID != m[2]) {
			t.Errorf("Content(%q) = %+v, %v; the grammar says %q", path, got, ok, m)
		}
	}
}

func TestManagement(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Route
	}{
		{"/api/v1/contents/blogs", Route{Pattern: "/api/v1/contents/{endpoint}", Endpoint: "blogs"}},
		{"/api/v1/contents/blogs/abc", Route{Pattern: "/api/v1/contents/{endpoint}/{id}", Endpoint: "blogs", ContentID: "abc"}},
		{"/api/v1/contents/blogs/abc/status", Route{Pattern: "/api/v1/contents/{endpoint}/{id}/status", Endpoint: "blogs", ContentID: "abc"}},
		{"/api/v1/contents/blogs/abc/createdBy", Route{Pattern: "/api/v1/contents/{endpoint}/{id}/createdBy", Endpoint: "blogs", ContentID: "abc"}},
		// A second segment named like an action is a content id (as the former regex read it).
		{"/api/v1/contents/blogs/status", Route{Pattern: "/api/v1/contents/{endpoint}/{id}", Endpoint: "blogs", ContentID: "status"}},
		{"/api/v1/contents/blogs_2-x/AbC-09_z", Route{Pattern: "/api/v1/contents/{endpoint}/{id}", Endpoint: "blogs_2-x", ContentID: "AbC-09_z"}},
		{"/api/v1/media", Route{Pattern: "/api/v1/media"}},
		{"/api/v2/media", Route{Pattern: "/api/v2/media"}},
		{"/api/v1/members", Route{Pattern: "/api/v1/members"}},
		{"/api/v1/members/Mem_1-a", Route{Pattern: "/api/v1/members/{id}"}},
		{"/api/v1/apis/blogs", Route{Pattern: "/api/v1/apis/{endpoint}", Endpoint: "blogs"}},
		{"/api/v1/service", Route{Pattern: "/api/v1/service"}},
		// Shapes the policy's table does not know still parse; the policy refuses them.
		{"/api/v1/media/x", Route{Pattern: "/api/v1/media/{endpoint}", Endpoint: "x"}},
		{"/api/v2/members", Route{Pattern: "/api/v2/members"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, ok := Management(tc.path)
			if !ok || got != tc.want {
				t.Errorf("Management(%q) = %+v, %v; want %+v, true", tc.path, got, ok, tc.want)
			}
		})
	}
	for _, path := range []string{
		"", "/", "/api/v3/media", "/api/v1", "/api/v1/", "/api//v1/service", "/api/v1//media", "/api/v1/media/",
		"/api/v1/service/", "/api/v1/Media", "/api/v1/contents/blogs/abc/other", "/api/v1/contents/blogs/abc/status/x",
		"/api/v1/apis/.", "/api/v1/apis/..", "/api/v1/apis/..;", "/api/v1/apis/.well-known", "/api/v1/apis//blogs",
		"/api/v1/apis/\u212aelvin", "/api/v1/apis/a b", "/api/v1/apis/a.b", "/api/v1/apis/blogs;x",
		"/api/v1/apis/{endpoint}", "/api/v1/contents/%252e", "/api/v1/contents/%2e", "/api/v1/contents/%2e%2e/media",
		"/api/v1/contents/.", "/api/v1/contents/..", "/api/v1/contents/../blogs/status", "/api/v1/contents/../media",
		"/api/v1/contents/../members", "/api/v1/contents/./abc/status", "/api/v1/contents/./blogs",
		"/api/v1/contents//abc/status", "/api/v1/contents//blogs", "/api/v1/contents/a.b", "/api/v1/contents/a.b/c..",
		`/api/v1/contents/a\b`, "/api/v1/contents/blogs%2F..%2Fmedia", "/api/v1/contents/blogs/",
		"/api/v1/contents/blogs/.", "/api/v1/contents/blogs/..", "/api/v1/contents/blogs/../status",
		`/api/v1/contents/blogs/..\abc/status`, "/api/v1/contents/blogs/./createdBy", "/api/v1/contents/blogs/.abc",
		"/api/v1/contents/blogs//abc", "/api/v1/contents/blogs//status", "/api/v1/contents/blogs/a%2Fb",
		"/api/v1/contents/blogs/a%2Fb/createdBy", "/api/v1/contents/blogs/x.html", "/api/v1/contents/blogs/{id}",
		"/api/v1/contents/blogs/é", `/api/v1/contents/blogs\..\..\media`, "/api/v1/contents/{endpoint}",
		"/api/v1/contents/{endpoint}/{id}", "/api/v1/contents/ブログ", "/api/v1/members/%2e%2e", "/api/v1/members/.",
		"/api/v1/members/..", "/api/v1/members//m1", `/api/v1/members/a\b`, "/api/v1/members/m.1",
		"/api/v1/members/{id}",
		// Endpoints are lower-case, as in content paths.
		"/api/v1/contents/Blogs", "/api/v1/contents/BLOGS/abc/status", "/api/v1/apis/Blogs",
	} {
		t.Run("refused "+path, func(t *testing.T) {
			if got, ok := Management(path); ok {
				t.Errorf("Management(%q) = %+v, want no route", path, got)
			}
		})
	}
}

func TestParameters(t *testing.T) {
	for _, tc := range []struct {
		note  string
		query [][2]string
		want  []string
	}{
		{"none", nil, nil},
		{"sorted, without repeats", [][2]string{{"limit", "10"}, {"draftKey", "a"}, {"limit", "20"}}, []string{"draftKey", "limit"}},
		{"semicolon in a value", [][2]string{{"x", "1;status=draft"}}, []string{"status", "x"}},
		{"semicolon in a name", [][2]string{{"x;status", ""}}, []string{"status", "x"}},
		{"names as decoded", [][2]string{{"Status", "draft"}, {" status", "d"}, {"status[]", "d"}}, []string{" status", "Status", "status[]"}},
		{"empty value", [][2]string{{"status", ""}}, []string{"status"}},
		{"equals sign in a name", [][2]string{{"x=y", "1"}}, []string{"x"}},
		{"semicolons on both sides", [][2]string{{"a;b", "c;d=e;f"}}, []string{"a", "b", "d", "f"}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			if got := Parameters(tc.query); !slices.Equal(got, tc.want) {
				t.Errorf("Parameters(%q) = %q, want %q", tc.query, got, tc.want)
			}
		})
	}
}
