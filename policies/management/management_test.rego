package management_test

import data.management

service := {"id": "team-demo", "plan": "team"}

key_with(management_api) := {
	"id": "key_1",
	"service": "team-demo",
	"name": "ops",
	"contentApi": {"default": {"get": true, "post": true, "put": true, "patch": true, "delete": true}},
	"managementApi": management_api,
}

all_flags := {
	"getContents": true,
	"patchContentCreatedBy": true,
	"patchContentStatus": true,
	"getMedia": true,
	"postMedia": true,
	"deleteMedia": true,
	"getMembers": true,
	"getApis": true,
	"getService": true,
}

# A request as keygate's server presents it: the path parsed into its route (absent for a path
# outside the grammar, internal/route) with the content id beside it.
on(key, method, path) := {"service": service, "key": key, "request": request(method, path)}

request(method, path) := object.union(
	{"method": method, "path": path, "query": {}, "parameters": []},
	server_route(path),
)

# internal/route's grammar for management paths, so that tests can be written with paths.
server_route(path) := {"route": {"pattern": pattern, "endpoint": endpoint}, "contentId": second} if {
	[[_, collection, first, second, action]] := regex.find_all_string_submatch_n(
		`^(/api/v[12]/[a-z]+)(?:/([A-Za-z0-9_-]+))?(?:/([A-Za-z0-9_-]+))?(/createdBy|/status)?$`,
		path,
		1,
	)
	is_member := collection == "/api/v1/members"
	regex.match(`^[a-z0-9_-]*$`, object.get({true: ""}, is_member, first))
	first_name := object.get({"": ""}, first, object.get({true: "/{id}"}, is_member, "/{endpoint}"))
	pattern := concat("", [collection, first_name, object.get({"": ""}, second, "/{id}"), action])
	endpoint := object.get({true: ""}, is_member, first)
} else := {"contentId": ""}

# Every route of the management API and the one permission it needs.
routes := [
	["GET", "/api/v1/contents/blogs", "getContents"],
	["GET", "/api/v1/contents/blogs/abc", "getContents"],
	["PATCH", "/api/v1/contents/blogs/abc/createdBy", "patchContentCreatedBy"],
	["PATCH", "/api/v1/contents/blogs/abc/status", "patchContentStatus"],
	["GET", "/api/v1/media", "getMedia"],
	["GET", "/api/v2/media", "getMedia"],
	["POST", "/api/v1/media", "postMedia"],
	["DELETE", "/api/v2/media", "deleteMedia"],
	["GET", "/api/v1/members", "getMembers"],
	["GET", "/api/v1/members/m1", "getMembers"],
	["GET", "/api/v1/apis", "getApis"],
	["GET", "/api/v1/apis/blogs", "getApis"],
	["GET", "/api/v1/service", "getService"],
]

test_every_route_with_its_permission_allowed if {
	every route in routes {
		d := management.decision with input as on(key_with({route[2]: true}), route[0], route[1])
		d.allow == true
		d.status == 200
		d.code == "allowed"
		d.permission == route[2]
	}
}

test_every_route_with_all_other_permissions_forbidden if {
	every route in routes {
		others := object.remove(all_flags, [route[2]])
		d := management.decision with input as on(key_with(others), route[0], route[1])
		d.allow == false
		d.status == 403
		d.code == "forbidden"
		d.message == "Forbidden"
		d.permission == route[2]
	}
}

test_get_contents_list_allowed if {
	d := management.decision with input as on(key_with({"getContents": true}), "GET", "/api/v1/contents/blogs")
	d.allow == true
	d.endpoint == "blogs"
}

test_get_contents_detail_names_content_allowed if {
	d := management.decision with input as on(key_with({"getContents": true}), "GET", "/api/v1/contents/blogs/abc")
	d.allow == true
	d.endpoint == "blogs"
}

test_get_contents_without_permission_forbidden if {
	d := management.decision with input as on(key_with({"getMedia": true}), "GET", "/api/v1/contents/blogs")
	d.status == 403
}

test_patch_status_with_created_by_only_forbidden if {
	d := management.decision with input as on(
		key_with({"patchContentCreatedBy": true}),
		"PATCH",
		"/api/v1/contents/blogs/abc/status",
	)
	d.allow == false
	d.permission == "patchContentStatus"
}

test_patch_created_by_with_status_only_forbidden if {
	d := management.decision with input as on(
		key_with({"patchContentStatus": true}),
		"PATCH",
		"/api/v1/contents/blogs/abc/createdBy",
	)
	d.allow == false
}

test_patch_status_allowed if {
	d := management.decision with input as on(
		key_with({"patchContentStatus": true}),
		"PATCH",
		"/api/v1/contents/blogs/abc/status",
	)
	d.allow == true
	d.endpoint == "blogs"
}

test_post_media_without_permission_forbidden if {
	d := management.decision with input as on(key_with({"getMedia": true}), "POST", "/api/v1/media")
	d.status == 403
}

test_delete_media_v2_allowed if {
	d := management.decision with input as on(key_with({"deleteMedia": true}), "DELETE", "/api/v2/media")
	d.allow == true
}

test_delete_media_v1_unknown_route_forbidden if {
	d := management.decision with input as on(key_with(all_flags), "DELETE", "/api/v1/media")
	d.status == 403
	d.permission == ""
}

test_unknown_routes_forbidden_even_with_all_flags if {
	every route in [
		["GET", "/api/v1/unknown"],
		["GET", "/api/v3/media"],
		["POST", "/api/v2/media"],
		["POST", "/api/v1/service"],
		["PUT", "/api/v1/contents/blogs/abc"],
		["DELETE", "/api/v1/contents/blogs/abc"],
		["PATCH", "/api/v1/contents/blogs/abc/title"],
		["GET", "/api/v1/contents/blogs/abc/status"],
		["GET", "/api/v1/contents"],
		["GET", "/api/v1/contents/"],
		["GET", "/api/v1/members/"],
		["GET", "/api/v1/apis/"],
		["GET", "/api/v1/contents//abc"],
		["PATCH", "/api/v1/contents/blogs//status"],
		["GET", "/api/v1/service/extra"],
		["GET", "/api/v1/blogs"],
		["GET", ""],
	] {
		d := management.decision with input as on(key_with(all_flags), route[0], route[1])
		d.allow == false
		d.status == 403
		d.code == "forbidden"
		d.permission == ""
	}
}

test_head_and_options_forbidden if {
	every method in ["HEAD", "OPTIONS", "get"] {
		d := management.decision with input as on(key_with(all_flags), method, "/api/v1/service")
		d.allow == false
		d.status == 403
	}
}

test_content_permissions_grant_no_management_forbidden if {
	k := object.remove(key_with({}), ["managementApi"])
	d := management.decision with input as on(k, "GET", "/api/v1/contents/blogs")
	d.allow == false
	d.status == 403
}

test_string_true_flag_forbidden if {
	d := management.decision with input as on(key_with({"getService": "true"}), "GET", "/api/v1/service")
	d.allow == false
}

test_missing_key_invalid_api_key if {
	d := management.decision with input as {"service": service, "request": {"method": "GET", "path": "/api/v1/service"}}
	d.allow == false
	d.status == 401
	d.code == "invalid_api_key"
	d.message == "X-MICROCMS-API-KEY header is invalid."
}

test_key_of_other_service_invalid_api_key if {
	k := object.union(key_with(all_flags), {"service": "hobby-demo"})
	d := management.decision with input as on(k, "GET", "/api/v1/service")
	d.status == 401
}

test_empty_input_invalid_api_key if {
	d := management.decision with input as {}
	d.allow == false
	d.status == 401
}

test_missing_request_forbidden if {
	d := management.decision with input as {"service": service, "key": key_with(all_flags)}
	d.allow == false
	d.status == 403
}

test_undefined_reason_default_denied if {
	d := management.decision with management.reason as {}
	d == {
		"allow": false,
		"status": 403,
		"code": "forbidden",
		"message": "Forbidden",
		"permission": "",
		"endpoint": "",
	}
}

test_non_string_path_forbidden if {
	d := management.decision with input as {
		"service": service,
		"key": key_with(all_flags),
		"request": {"method": "GET", "path": ["api"]},
	}
	d.status == 403
}

# --- route shapes (management.route reads the path as the table's shapes) ---

test_member_id_is_no_endpoint_allowed if {
	d := management.decision with input as on(key_with({"getMembers": true}), "GET", "/api/v1/members/m1")
	d.allow == true
	d.permission == "getMembers"
	d.endpoint == ""
}

test_apis_endpoint_named_allowed if {
	d := management.decision with input as on(key_with({"getApis": true}), "GET", "/api/v1/apis/blogs")
	d.allow == true
	d.endpoint == "blogs"
}

test_forbidden_names_route if {
	d := management.decision with input as on(key_with({}), "PATCH", "/api/v1/contents/blogs/abc/createdBy")
	d == {
		"allow": false,
		"status": 403,
		"code": "forbidden",
		"message": "Forbidden",
		"permission": "patchContentCreatedBy",
		"endpoint": "blogs",
	}
}

test_invalid_key_names_route if {
	k := object.union(key_with(all_flags), {"service": "hobby-demo"})
	d := management.decision with input as on(k, "GET", "/api/v1/contents/blogs/abc")
	d == {
		"allow": false,
		"status": 401,
		"code": "invalid_api_key",
		"message": "X-MICROCMS-API-KEY header is invalid.",
		"permission": "getContents",
		"endpoint": "blogs",
	}
}

# Segments beyond a route's shape, other versions, other spellings and literal placeholders
# in the wrong place match no route.
test_other_shapes_unknown_route_forbidden if {
	every route in [
		["GET", "/api/v1/members/m1/x"],
		["GET", "/api/v1/apis/blogs/x"],
		["GET", "/api/v1/media/x"],
		["GET", "/api/v1/contents/a/b/c/d"],
		["PATCH", "/api/v1/contents/blogs/abc/status/x"],
		["PATCH", "/api/v1/contents/blogs/status"],
		["GET", "/api/v2/contents/blogs"],
		["GET", "/api/v2/members"],
		["GET", "/api/v2/apis/blogs"],
		["GET", "/api/v2/service"],
		["GET", "/api/v1/Media"],
		["GET", "/API/v1/service"],
		["GET", "api/v1/service"],
		["GET", "//api/v1/service"],
		["GET", "/api/v1/service/"],
		["GET", "/api/v1/members/{id}/{id}"],
	] {
		d := management.decision with input as on(key_with(all_flags), route[0], route[1])
		d.status == 403
		d.permission == ""
		d.endpoint == ""
	}
}

test_non_string_method_forbidden if {
	d := management.decision with input as on(key_with(all_flags), 7, "/api/v1/service")
	d.status == 403
	d.permission == ""
}

test_missing_management_api_forbidden if {
	d := management.decision with input as on(object.remove(key_with({}), ["managementApi"]), "GET", "/api/v1/service")
	d.status == 403
	d.permission == "getService"
}

test_non_object_management_api_forbidden if {
	d := management.decision with input as on(key_with(["getService"]), "GET", "/api/v1/service")
	d.status == 403
	d.permission == "getService"
}

# Every way of not being a key of a known service with a non-empty string id is a 401,
# whatever the route.
test_odd_service_or_key_invalid_api_key if {
	every pair in [
		[{"id": 1, "plan": "team"}, 1],
		[{"id": null, "plan": "team"}, null],
		[{"id": "", "plan": "team"}, ""],
		[{"id": ["team-demo"], "plan": "team"}, ["team-demo"]],
		[{"plan": "team"}, "team-demo"],
		["team-demo", "team-demo"],
	] {
		k := object.union(key_with(all_flags), {"service": pair[1]})
		i := object.union(object.remove(on(k, "GET", "/api/v1/service"), ["service"]), {"service": pair[0]})
		d := management.decision with input as i
		d.status == 401
		d.code == "invalid_api_key"
		d.permission == "getService"
	}
	every k in ["text", ["team-demo"], {"managementApi": all_flags}, {"service": null}] {
		d := management.decision with input as on(k, "GET", "/api/v1/service")
		d.status == 401
		d.code == "invalid_api_key"
	}
}
