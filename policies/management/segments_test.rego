package management_test

import data.management

# Path segments: an {endpoint} or {id} segment is one of [A-Za-z0-9_-]+ (content's rule), so
# a path with a dot, empty, percent-encoded, backslashed or any other odd segment is an
# unknown route, 403 Forbidden, with every flag (policies/README.md). Helpers (on, key_with,
# all_flags) are management_test.rego's.

# A "." or ".." segment is no endpoint, id or member id: a normalising proxy would resolve
# /api/v1/contents/../media to /api/v1/media, so getContents must not pass for it. Every
# segment starting with "." is refused (microCMS names never start with one), with every flag.
test_dot_segment_unknown_route_forbidden if {
	every route in [
		["GET", "/api/v1/contents/../media"],
		["GET", "/api/v1/contents/../members"],
		["GET", "/api/v1/contents/./blogs"],
		["GET", "/api/v1/contents/.."],
		["GET", "/api/v1/contents/."],
		["GET", "/api/v1/contents/blogs/.."],
		["GET", "/api/v1/contents/blogs/."],
		["PATCH", "/api/v1/contents/../blogs/status"],
		["PATCH", "/api/v1/contents/blogs/../status"],
		["PATCH", "/api/v1/contents/blogs/./createdBy"],
		["PATCH", "/api/v1/contents/./abc/status"],
		["GET", "/api/v1/members/.."],
		["GET", "/api/v1/members/."],
		["GET", "/api/v1/apis/.."],
		["GET", "/api/v1/apis/."],
		["GET", "/api/v1/apis/..;"],
		["GET", "/api/v1/apis/.well-known"],
		["GET", "/api/v1/contents/blogs/.abc"],
	] {
		d := management.decision with input as on(key_with(all_flags), route[0], route[1])
		d.allow == false
		d.status == 403
		d.code == "forbidden"
		d.message == "Forbidden"
		d.permission == ""
		d.endpoint == ""
		d.contentId == ""
	}
}

test_empty_segment_unknown_route_forbidden if {
	every route in [
		["GET", "/api/v1/contents//blogs"],
		["GET", "/api/v1/contents/blogs//abc"],
		["GET", "/api/v1/contents/blogs/"],
		["PATCH", "/api/v1/contents/blogs//status"],
		["PATCH", "/api/v1/contents//abc/status"],
		["GET", "/api/v1//media"],
		["GET", "/api/v1/media/"],
		["GET", "/api/v1/members//m1"],
		["GET", "/api/v1/apis//blogs"],
		["GET", "/api//v1/service"],
	] {
		d := management.decision with input as on(key_with(all_flags), route[0], route[1])
		d.status == 403
		d.permission == ""
	}
}

# An {endpoint} or {id} segment is an allow-list, [A-Za-z0-9_-]+ (content's): a dot
# elsewhere in a segment makes no name either, and a segment spelling a placeholder is no
# name at all. Both are unknown routes.
test_dot_segment_inner_dot_forbidden if {
	every path in [
		"/api/v1/contents/a.b/c..",
		"/api/v1/contents/blogs/x.html",
		"/api/v1/apis/a.b",
		"/api/v1/members/m.1",
	] {
		d := management.decision with input as on(key_with(all_flags), "GET", path)
		d.allow == false
		d.status == 403
		d.permission == ""
		d.endpoint == ""
		d.contentId == ""
	}
}

test_placeholder_spelled_in_path_forbidden if {
	every path in [
		"/api/v1/contents/{endpoint}/{id}",
		"/api/v1/contents/{endpoint}",
		"/api/v1/apis/{endpoint}",
		"/api/v1/members/{id}",
	] {
		d := management.decision with input as on(key_with(all_flags), "GET", path)
		d.allow == false
		d.status == 403
		d.permission == ""
	}
}

# Go decodes the path once: "%252e" reaches the policy as the literal "%2e", and
# "blogs\..\media" as a name with backslashes. An origin that decodes again, or reads "\"
# as "/", could resolve either to another route than the one judged, so every {endpoint} or
# {id} segment outside [A-Za-z0-9_-] is an unknown route, with every flag.
test_percent_or_backslash_segment_forbidden if {
	every route in [
		["GET", "/api/v1/contents/%2e%2e/media"],
		["GET", "/api/v1/contents/%2e"],
		["GET", "/api/v1/contents/blogs%2F..%2Fmedia"],
		["GET", "/api/v1/contents/blogs/a%2Fb"],
		["GET", "/api/v1/contents/%252e"],
		["GET", "/api/v1/contents/a\\b"],
		["GET", "/api/v1/contents/blogs\\..\\..\\media"],
		["PATCH", "/api/v1/contents/blogs/..\\abc/status"],
		["PATCH", "/api/v1/contents/blogs/a%2Fb/createdBy"],
		["GET", "/api/v1/contents/blogs/{id}"],
		["GET", "/api/v1/contents/a.b"],
		["GET", "/api/v1/contents/blogs/x.html"],
		["GET", "/api/v1/contents/ブログ"],
		["GET", "/api/v1/contents/blogs/é"],
		["GET", "/api/v1/apis/\u212aelvin"],
		["GET", "/api/v1/apis/a b"],
		["GET", "/api/v1/apis/blogs;x"],
		["GET", "/api/v1/members/%2e%2e"],
		["GET", "/api/v1/members/a\\b"],
	] {
		d := management.decision with input as on(key_with(all_flags), route[0], route[1])
		d.allow == false
		d.status == 403
		d.code == "forbidden"
		d.message == "Forbidden"
		d.permission == ""
		d.endpoint == ""
		d.contentId == ""
	}
}

# Every character of the allow-list is a name: upper case, digits, - and _.
test_allowed_segment_characters_allowed if {
	path := "/api/v1/contents/blogs_2-x/AbC-09_z"
	d := management.decision with input as on(key_with({"getContents": true}), "GET", path)
	d.allow == true
	d.endpoint == "blogs_2-x"
	d.contentId == "AbC-09_z"
	m := management.decision with input as on(key_with({"getMembers": true}), "GET", "/api/v1/members/Mem_1-a")
	m.allow == true
	m.permission == "getMembers"
}
