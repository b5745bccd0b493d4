package content_test

import data.content

service := {"id": "team-demo", "plan": "team"}

hobby := {"id": "hobby-demo", "plan": "hobby"}

key_with(content_api) := {"id": "key_1", "service": "team-demo", "name": "web", "contentApi": content_api}

read_only := key_with({"default": {"get": true}})

all_writes := key_with({"default": {"post": true, "put": true, "patch": true, "delete": true}})

hidden := {"published": false, "drafts": false, "closed": false, "draftKey": false, "filterOn": "published"}

# A request as keygate's server presents it: the path parsed into its route (absent for a path
# outside the grammar, internal/route) with the content id beside it, the first value of each
# query parameter and the names of all parameters.
request(method, path) := request_with_query(method, path, {})

on(key, method, path) := {"service": service, "key": key, "request": request(method, path)}

request_with_query(method, path, query) := object.union(
	{"method": method, "path": path, "query": query, "parameters": [name | some name, _ in query]},
	server_route(path),
)

# internal/route's grammar for content paths, so that tests can be written with paths.
server_route(path) := {"route": {"endpoint": endpoint, "kind": kind}, "contentId": id} if {
	[[_, endpoint, id]] := regex.find_all_string_submatch_n(`^/api/v1/([a-z0-9_-]+)(?:/([A-Za-z0-9_-]+))?$`, path, 1)
	kind := object.get({"": "list"}, id, "single")
} else := {"contentId": ""}

# --- authentication (check 1) ---

test_missing_key_invalid_api_key if {
	d := content.decision with input as {"service": service, "request": request("GET", "/api/v1/blogs")}
	d.allow == false
	d.status == 401
	d.code == "invalid_api_key"
	d.message == "X-MICROCMS-API-KEY header is invalid."
	d.visibility == hidden
}

test_key_of_other_service_invalid_api_key if {
	other := object.union(read_only, {"service": "hobby-demo"})
	d := content.decision with input as on(other, "GET", "/api/v1/blogs")
	d.status == 401
	d.code == "invalid_api_key"
}

test_unknown_service_invalid_api_key if {
	d := content.decision with input as {"key": read_only, "request": request("GET", "/api/v1/blogs")}
	d.status == 401
}

test_empty_input_denied if {
	d := content.decision with input as {}
	d.allow == false
	d.status == 401
	d.visibility == hidden
}

# Check 1 reads input with builtins under `not` (no helper rule): every way of not being a
# key of a known service with a non-empty string id is a 401, whatever the other checks say.
test_odd_service_or_key_invalid_api_key if {
	all_flags := {"get": true, "post": true, "put": true, "patch": true, "delete": true}
	every pair in [
		[{"id": 1, "plan": "team"}, 1],
		[{"id": null, "plan": "team"}, null],
		[{"id": "", "plan": "team"}, ""],
		[{"id": ["team-demo"], "plan": "team"}, ["team-demo"]],
		[{"id": {"a": 1}, "plan": "team"}, {"a": 1}],
		[{"plan": "team"}, "team-demo"],
		["team-demo", "team-demo"],
	] {
		k := object.union(key_with({"default": all_flags}), {"service": pair[1]})
		d := content.decision with input as {"service": pair[0], "key": k, "request": request("POST", "/api/x")}
		d.status == 401
		d.code == "invalid_api_key"
		d.visibility == hidden
	}
	every k in ["text", ["team-demo"], {"contentApi": {"default": all_flags}}, {"service": null}] {
		d := content.decision with input as {"service": service, "key": k, "request": request("GET", "/api/v1/blogs")}
		d.status == 401
		d.code == "invalid_api_key"
	}
}

# --- routes (check 2) ---

test_list_path_allowed if {
	d := content.decision with input as on(read_only, "GET", "/api/v1/blogs")
	d.allow == true
	d.status == 200
	d.code == "allowed"
	d.message == ""
	d.permission == "get"
	d.endpoint == "blogs"
}

test_detail_path_names_content_allowed if {
	d := content.decision with input as on(read_only, "GET", "/api/v1/blogs/abc")
	d.allow == true
	d.endpoint == "blogs"
}

test_unknown_paths_not_found if {
	every path in [
		"/",
		"",
		"/api/v1",
		"/api/v1/",
		"/api/v1/blogs/",
		"/api/v2/blogs",
		"/v1/blogs",
		"api/v1/blogs",
		"/api/v1/blogs/abc/extra",
		"/api/v1//abc",
	] {
		d := content.decision with input as on(read_only, "GET", path)
		d.allow == false
		d.status == 404
		d.code == "not_found"
		d.message == "Not found."
	}
}

test_missing_request_not_found if {
	d := content.decision with input as {"service": service, "key": read_only}
	d.allow == false
	d.status == 404
}

# --- methods (checks 3 and 4) ---

test_get_with_permission_allowed if {
	d := content.decision with input as on(read_only, "GET", "/api/v1/blogs")
	d.allow == true
}

test_get_without_permission_forbidden if {
	d := content.decision with input as on(all_writes, "GET", "/api/v1/blogs")
	d.allow == false
	d.status == 400
	d.code == "method_forbidden"
	d.message == "GET is forbidden."
	d.permission == "get"
	d.visibility == hidden
}

test_head_with_get_allowed if {
	d := content.decision with input as on(read_only, "HEAD", "/api/v1/blogs")
	d.allow == true
	d.permission == "get"
	d.visibility.published == true
}

test_head_without_get_forbidden if {
	d := content.decision with input as on(all_writes, "HEAD", "/api/v1/blogs")
	d.status == 400
	d.message == "HEAD is forbidden."
}

test_writes_with_permission_allowed if {
	every method, permission in {"POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"} {
		d := content.decision with input as on(all_writes, method, "/api/v1/blogs/abc")
		d.allow == true
		d.permission == permission
		d.visibility == hidden
	}
}

test_post_without_permission_forbidden if {
	d := content.decision with input as on(read_only, "POST", "/api/v1/blogs")
	d.status == 400
	d.code == "method_forbidden"
	d.message == "POST is forbidden."
}

test_put_without_permission_forbidden if {
	d := content.decision with input as on(read_only, "PUT", "/api/v1/blogs/abc")
	d.status == 400
	d.message == "PUT is forbidden."
}

test_patch_without_permission_forbidden if {
	d := content.decision with input as on(read_only, "PATCH", "/api/v1/blogs/abc")
	d.status == 400
	d.message == "PATCH is forbidden."
}

test_delete_without_permission_forbidden if {
	d := content.decision with input as on(read_only, "DELETE", "/api/v1/blogs/abc")
	d.status == 400
	d.message == "DELETE is forbidden."
}

test_each_write_needs_its_own_flag_forbidden if {
	post_only := key_with({"default": {"post": true}})
	every method in ["PUT", "PATCH", "DELETE"] {
		d := content.decision with input as on(post_only, method, "/api/v1/blogs/abc")
		d.status == 400
	}
}

test_other_methods_not_allowed if {
	every method in ["OPTIONS", "TRACE", "CONNECT", "get", "PROPFIND"] {
		d := content.decision with input as on(read_only, method, "/api/v1/blogs")
		d.allow == false
		d.status == 405
		d.code == "method_not_allowed"
		d.message == sprintf("%s is not allowed.", [method])
		d.permission == ""
	}
}

test_missing_method_not_allowed if {
	req := object.remove(request("GET", "/api/v1/blogs"), ["method"])
	d := content.decision with input as {"service": service, "key": read_only, "request": req}
	d.status == 405
	d.message == "Method is not allowed."
}

test_key_without_content_api_forbidden if {
	d := content.decision with input as {
		"service": service,
		"key": {"id": "key_1", "service": "team-demo"},
		"request": request("GET", "/api/v1/blogs"),
	}
	d.allow == false
	d.status == 400
}

test_string_true_flag_forbidden if {
	d := content.decision with input as {
		"service": service,
		"key": key_with({"default": {"get": "true"}}),
		"request": request("GET", "/api/v1/blogs"),
	}
	d.status == 400
}

# --- default vs individual ---

# The seed's example: default GET + individual POST,PUT => that API has POST and PUT, not GET.
override_key := key_with({"default": {"get": true}, "individual": {"blogs": {"post": true, "put": true}}})

test_override_individual_post_allowed if {
	d := content.decision with input as on(override_key, "POST", "/api/v1/blogs")
	d.allow == true
}

test_override_individual_put_allowed if {
	d := content.decision with input as on(override_key, "PUT", "/api/v1/blogs/abc")
	d.allow == true
}

test_override_individual_get_forbidden if {
	d := content.decision with input as on(override_key, "GET", "/api/v1/blogs")
	d.allow == false
	d.status == 400
	d.message == "GET is forbidden."
}

test_override_other_api_keeps_default_get_allowed if {
	d := content.decision with input as on(override_key, "GET", "/api/v1/news")
	d.allow == true
}

test_override_other_api_post_forbidden if {
	d := content.decision with input as on(override_key, "POST", "/api/v1/news")
	d.status == 400
}

test_empty_individual_entry_closes_api_forbidden if {
	k := key_with({"default": {"get": true}, "individual": {"secret": {}}})
	d := content.decision with input as on(k, "GET", "/api/v1/secret")
	d.status == 400
}

test_non_string_path_not_found if {
	d := content.decision with input as {"service": service, "key": read_only, "request": {"method": "GET", "path": 42}}
	d.status == 404
}
