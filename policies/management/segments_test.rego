package management_test

import data.management

# Routes. keygate's server parses the path (internal/route, whose tests hold the grammar and
# every odd spelling): a path outside the grammar reaches the policy without
# input.request.route, an unknown route (403). Helpers are management_test.rego's.

test_without_route_forbidden if {
	every path in [
		"/api/v1/contents/../media",
		"/api/v1/contents/./blogs",
		"/api/v1/contents//blogs",
		"/api/v1/members/m.1",
		"/api/v1/media/",
		"/api/v1/contents/Blogs",
	] {
		d := management.decision with input as on(key_with(all_flags), "GET", path)
		d.allow == false
		d.status == 403
		d.permission == ""
		d.endpoint == ""
	}
}

# A route the server did not build, or a pattern the routes table does not know, is unknown.
test_malformed_route_forbidden if {
	every route in [{}, {"endpoint": "blogs"}, {"pattern": "/api/v1/contents/{id}"}, {"pattern": 7}, "/api/v1/media"] {
		req := object.union(object.remove(request("GET", "/api/v1/media"), ["route"]), {"route": route})
		d := management.decision with input as {"service": service, "key": key_with(all_flags), "request": req}
		d.status == 403
		d.permission == ""
	}
}

test_allowed_segment_characters_allowed if {
	d := management.decision with input as on(key_with(all_flags), "GET", "/api/v1/contents/blogs_2-x/AbC-09_z")
	d.allow == true
	d.endpoint == "blogs_2-x"
	m := management.decision with input as on(key_with(all_flags), "GET", "/api/v1/members/Mem_1-a")
	m.allow == true
	m.endpoint == ""
}
