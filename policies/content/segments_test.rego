package content_test

import data.content

# Path segments (check 2): {endpoint} and {id} are one segment each of [A-Za-z0-9_-]+, so
# dot, empty, percent-encoded, backslashed and any other odd segments are 404 not_found
# (policies/README.md, "Path segments"). Helpers (on, key_with, all_flags_key, hidden) are
# content_test.rego's.

# The security review's case: default get, individual contact:{post}. /api/v1/./contact must
# not be judged on the default (a normalising proxy or origin serves /api/v1/contact, where
# this key has no get): a dot segment is no endpoint, so 404.
seed_reader := key_with({"default": {"get": true}, "individual": {"contact": {"post": true}}})

test_dot_segment_endpoint_not_found if {
	every path in [
		"/api/v1/./contact",
		"/api/v1/../contact",
		"/api/v1/.",
		"/api/v1/..",
		"/api/v1/./",
		"/api/v1/contact/.",
		"/api/v1/contact/..",
	] {
		d := content.decision with input as on(seed_reader, "GET", path)
		d.allow == false
		d.status == 404
		d.code == "not_found"
		d.message == "Not found."
		d.endpoint == ""
		d.contentId == ""
		d.visibility == hidden
	}
	d := content.decision with input as on(seed_reader, "GET", "/api/v1/contact")
	d.status == 400
	d.message == "GET is forbidden."
}

test_dot_segment_id_not_found if {
	every path in ["/api/v1/blogs/.", "/api/v1/blogs/..", "/api/v1/./abc", "/api/v1/../abc", "/api/v1/blogs/../contact"] {
		every method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
			d := content.decision with input as on(all_flags_key, method, path)
			d.allow == false
			d.status == 404
			d.code == "not_found"
		}
	}
}

# microCMS endpoints are [a-z0-9_-] and content ids alphanumeric with - and _, so no real
# segment starts with ".": every segment that does (".well-known", "..x", "..;" as some
# servers read a path parameter on "..", ".%2e" left over from a double encoding) is
# refused too, rather than only "." and "..".
test_dot_segment_leading_dot_not_found if {
	every path in [
		"/api/v1/.well-known",
		"/api/v1/..x",
		"/api/v1/..;",
		"/api/v1/..;/contact",
		"/api/v1/.%2e/contact",
		"/api/v1/blogs/.abc",
		"/api/v1/blogs/..;",
	] {
		d := content.decision with input as on(all_flags_key, "GET", path)
		d.status == 404
		d.code == "not_found"
	}
}

# A segment is an allow-list, [A-Za-z0-9_-]+ (microCMS endpoints are [a-z0-9_-], content
# ids [A-Za-z0-9_-]): a dot elsewhere in a segment makes no name either, so a segment that an
# origin could read as something else is never judged as a name.
test_dot_segment_inner_dot_not_found if {
	every path in ["/api/v1/blogs./a.b", "/api/v1/x.html", "/api/v1/a..b/c..", "/api/v1/blogs/a.b"] {
		d := content.decision with input as on(all_flags_key, "GET", path)
		d.allow == false
		d.status == 404
		d.code == "not_found"
		d.endpoint == ""
		d.contentId == ""
	}
}

# Go decodes the path once: "%252e" reaches the policy as the literal "%2e", and
# "blogs\..\contact" as a name with backslashes. An origin that decodes again, or reads "\"
# as "/", could resolve either to another endpoint than the one judged, so every segment
# outside [A-Za-z0-9_-] is refused: percent signs, backslashes, braces, dots, non-ASCII
# letters (also ones that fold to ASCII), spaces, semicolons, colons.
test_percent_or_backslash_segment_not_found if {
	every path in [
		"/api/v1/%2e%2e/contact",
		"/api/v1/%2e",
		"/api/v1/blogs/%2e%2e",
		"/api/v1/blogs%2Fcontact",
		"/api/v1/blogs/a%2Fb",
		"/api/v1/%252e",
		"/api/v1/a\\b",
		"/api/v1/blogs\\..\\contact",
		"/api/v1/blogs/..\\abc",
		"/api/v1/{id}",
		"/api/v1/blogs/{id}",
		"/api/v1/a.b",
		"/api/v1/x.html",
		"/api/v1/blogs/x.html",
		"/api/v1/ブログ",
		"/api/v1/blogs/é",
		"/api/v1/\u212aelvin",
		"/api/v1/blogs/a b",
		"/api/v1/blogs;x",
		"/api/v1/blogs/a:b",
		"/api/v1/blogs/abc\n",
	] {
		every method in ["GET", "POST", "DELETE"] {
			d := content.decision with input as on(all_flags_key, method, path)
			d.allow == false
			d.status == 404
			d.code == "not_found"
			d.message == "Not found."
			d.endpoint == ""
			d.contentId == ""
			d.visibility == hidden
		}
	}
}

# Every character of the allow-list is a name: upper case (content ids), digits, - and _.
test_allowed_segment_characters_allowed if {
	every pair in [
		["/api/v1/blogs_2-x/AbC-09_z", "blogs_2-x", "AbC-09_z"],
		["/api/v1/-/_", "-", "_"],
		["/api/v1/0", "0", ""],
	] {
		d := content.decision with input as on(all_flags_key, "GET", pair[0])
		d.allow == true
		d.endpoint == pair[1]
		d.contentId == pair[2]
	}
}

test_empty_segment_not_found if {
	every path in [
		"/api/v1//contact",
		"/api/v1//",
		"/api/v1/blogs//",
		"/api/v1/blogs//abc",
		"/api/v1//blogs/abc",
		"//api/v1/blogs",
		"/api//v1/blogs",
		"/api/v1/blogs/abc/",
	] {
		d := content.decision with input as on(all_flags_key, "GET", path)
		d.allow == false
		d.status == 404
		d.code == "not_found"
	}
}
