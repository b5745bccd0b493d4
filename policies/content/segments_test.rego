package content_test

import data.content

# Routes (check 2). keygate's server parses the path (internal/route, whose tests hold the
# grammar and every odd spelling: dot, empty, percent-encoded, backslashed and upper-case
# segments): a path outside the grammar reaches the policy without input.request.route, and
# the policy answers 404 for it. Helpers (on, key_with, request, hidden) are content_test.rego's.

# The security review's case: default get, individual contact:{post}.
seed_reader := key_with({"default": {"get": true}, "individual": {"contact": {"post": true}}})

test_without_route_not_found if {
	every path in ["/api/v1/./contact", "/api/v1/blogs/..", "/api/v1//contact", "/api/v1/a.b", "/api/v2/blogs", "/"] {
		d := content.decision with input as on(seed_reader, "GET", path)
		d.allow == false
		d.status == 404
		d.code == "not_found"
		d.message == "Not found."
		d.endpoint == ""
		d.visibility == hidden
	}
}

# A route the server did not build (no endpoint, an unknown kind, odd types) routes nothing.
test_malformed_route_not_found if {
	every route in [
		{},
		{"endpoint": "", "kind": "list"},
		{"endpoint": "blogs"},
		{"endpoint": "blogs", "kind": "other"},
		{"endpoint": 7, "kind": "list"},
		{"endpoint": ["blogs"], "kind": "single"},
		"blogs",
	] {
		req := object.union(object.remove(request("GET", "/api/v1/blogs"), ["route"]), {"route": route})
		d := content.decision with input as {"service": service, "key": seed_reader, "request": req}
		d.status == 404
		d.endpoint == ""
	}
}

# Endpoint case: microCMS endpoints are lower-case, so /api/v1/Contact has no route
# and is 404 — never judged on the default while an origin that matches endpoints
# case-insensitively would serve contact's contents. The lower-case spelling is judged on
# contact's individual entry.
test_endpoint_case_upper_not_found_lower_individual if {
	every path in ["/api/v1/Contact", "/api/v1/CONTACT", "/api/v1/Contact/abc"] {
		d := content.decision with input as on(seed_reader, "GET", path)
		d.status == 404
		d.code == "not_found"
	}
	get := content.decision with input as on(seed_reader, "GET", "/api/v1/contact")
	get.status == 400
	get.message == "GET is forbidden."
	post := content.decision with input as on(seed_reader, "POST", "/api/v1/contact")
	post.allow == true
	post.endpoint == "contact"
}

test_single_and_list_routes_allowed if {
	list := content.decision with input as on(seed_reader, "GET", "/api/v1/blogs_2-x")
	list.allow == true
	list.endpoint == "blogs_2-x"
	single := content.decision with input as on(seed_reader, "GET", "/api/v1/blogs/AbC-09_z")
	single.allow == true
	single.endpoint == "blogs"
}
