# METADATA
# title: Management API
# description: |
#   Decides every management API (beta) request ({service}.microcms-management.io): each
#   known route needs one of the 9 management permissions of the key; an unknown route, or a
#   missing permission, is 403 Forbidden. The contract is in policies/README.md.
package management

# METADATA
# title: Decision
# description: |
#   The answer to one management API request, always an object (see policies/README.md).
#   The default only applies if a part of the decision is undefined: it denies.
# entrypoint: true
default decision := {
	"allow": false,
	"status": 403,
	"code": "forbidden",
	"message": "Forbidden",
	"permission": "",
	"endpoint": "",
	"contentId": "",
}

# The fast path: an allowed request is decided by this body and the route rule, and the
# decision object is built once. It reads input directly and calls builtins only: every
# reference to another rule costs an evaluation of its own on every request (the one to
# `route` is shared with the deny branch, which then reads it from the cache).
decision := {
	"allow": true,
	"status": 200,
	"code": "allowed",
	"message": "",
	"permission": permission,
	"endpoint": endpoint,
	"contentId": content_id,
} if {
	# The key belongs to the (known) service the request is for
	# (permissions.is_key_of_service).
	is_string(input.service.id)
	input.service.id != ""
	input.key.service == input.service.id

	# The route is known, and the key has its permission (exactly true).
	[permission, endpoint, content_id] := route
	input.key.managementApi[permission] == true
} else := {
	"allow": false,
	"status": status,
	"code": code,
	"message": message,
	"permission": permission,
	"endpoint": endpoint,
	"contentId": content_id,
} if {
	# Denied: why (verdict), and the route as far as it is known. Inline rather than a rule
	# of its own, which would cost an evaluation.
	[status, code, message] := verdict
	[permission, endpoint, content_id] := route
}

# Why a request is denied, as [status, code, message], in the contract's order. Only
# evaluated when the allowed body fails. If neither check failed (the two disagreed),
# verdict is undefined, and so is the deny branch: the default decision denies.
#
# The key check (permissions.is_key_of_service) is three branches with the same answer, each
# a builtin on input refs under `not`, without a helper rule (which would cost an
# evaluation): fail-closed, as a comparison or is_string of a missing ref is undefined and
# `not` of undefined is true. No Rego function or nested call under these `not`s: OPA
# evaluates those arguments outside the negation (see policies/README.md).
verdict := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	not input.key.service == input.service.id
} else := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	not is_string(input.service.id)
} else := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	input.service.id == ""
} else := [403, "forbidden", "Forbidden"] if {
	# An unknown route has the permission "", which no key has.
	not input.key.managementApi[route[0]] == true
}

# An unknown route: no permission (no key has the flag ""), no endpoint, no content id.
default route := ["", "", ""]

# METADATA
# title: Route
# scope: document
# description: |
#   The route of the request as [permission, endpoint, contentId]. The path is read as its
#   collection (/api/{version}/{name}), up to two segments after it and an action
#   (/createdBy, /status); its shape names those segments as the table does ({endpoint} and
#   {id}; under /members the one segment is a member {id}), and the table, keyed by method
#   and shape, gives the permission. endpoint and contentId are the path's {endpoint} and
#   content {id}, "" where the shape has none (a member id is neither). Only the table's
#   routes exist: HEAD, OPTIONS and any other method or shape is an unknown route. An
#   {endpoint} or {id} segment is one or more of [A-Za-z0-9_-] (content's allow-list): a
#   path with any other segment ("." or "..", which a normalising proxy would resolve to
#   another route, /api/v1/contents/../media to /api/v1/media; "%2e", "a\b", "a.b") is an
#   unknown route.
#   Longer than Regal's 30 lines on purpose: the table is a literal in the body (a rule of
#   its own would cost an evaluation per request).
route := [permission, endpoint, second] if { # regal ignore:rule-length
	is_string(input.request.path)
	[[_, collection, first, second, action]] := regex.find_all_string_submatch_n(
		`^(/api/v[12]/[a-z]+)(?:/([A-Za-z0-9_-]+))?(?:/([A-Za-z0-9_-]+))?(/createdBy|/status)?$`,
		input.request.path,
		1,
	)
	first_name := object.get({"/api/v1/members": "/{id}"}, collection, "/{endpoint}")
	shape := concat("", [
		collection,
		object.get({"": ""}, first, first_name),
		object.get({"": ""}, second, "/{id}"),
		action,
	])

	# The routes of policies/README.md: method -> path shape -> permission. A literal here,
	# not a rule of its own, as a rule reference would cost an evaluation per request.
	routes := {
		"GET": {
			"/api/v1/contents/{endpoint}": "getContents",
			"/api/v1/contents/{endpoint}/{id}": "getContents",
			"/api/v1/media": "getMedia",
			"/api/v2/media": "getMedia",
			"/api/v1/members": "getMembers",
			"/api/v1/members/{id}": "getMembers",
			"/api/v1/apis": "getApis",
			"/api/v1/apis/{endpoint}": "getApis",
			"/api/v1/service": "getService",
		},
		"PATCH": {
			"/api/v1/contents/{endpoint}/{id}/createdBy": "patchContentCreatedBy",
			"/api/v1/contents/{endpoint}/{id}/status": "patchContentStatus",
		},
		"POST": {"/api/v1/media": "postMedia"},
		"DELETE": {"/api/v2/media": "deleteMedia"},
	}
	permission := routes[input.request.method][shape]
	endpoint := object.get({"/api/v1/members": ""}, collection, first)
}
