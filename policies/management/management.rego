# METADATA
# title: Management API
# description: |
#   Decides every management API (beta) request ({service}.microcms-management.io): each
#   known route needs one of the 9 management permissions of the key; an unknown route, or a
#   missing permission, is 403 Forbidden. The contract is in policies/README.md.
package management

import data.permissions

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

decision := {
	"allow": verdict.allow,
	"status": verdict.status,
	"code": verdict.code,
	"message": verdict.message,
	"permission": route.permission,
	"endpoint": route.endpoint,
	"contentId": route.contentId,
}

verdict := deny(401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid.") if {
	not is_authenticated
} else := deny(403, "forbidden", "Forbidden") if {
	not permissions.has_flag(key_flags, route.permission)
} else := {"allow": true, "status": 200, "code": "allowed", "message": ""} if {
	permissions.has_flag(key_flags, route.permission)
}

# Rules with defaults, not bare input refs as arguments under `not`: `not f(input.key)` is
# undefined (not true) when input.key is missing, because OPA evaluates the argument first.
default is_authenticated := false

is_authenticated if permissions.is_key_of_service(input.key, input.service)

default key_flags := {}

key_flags := input.key.managementApi

# An unknown route has no permission, and no key has the flag "", so it is forbidden.
default route := {"permission": "", "endpoint": "", "contentId": ""}

route := route_of(input.request.method, split(input.request.path, "/")) if is_string(input.request.path)

# METADATA
# title: Route of a request
# scope: document
# description: |
#   The management permission (with endpoint and content id where the path has them) that a
#   method and a path split on slashes need. Only these routes exist; HEAD, OPTIONS and any
#   other method or path match none, so they are denied.
route_of("GET", ["", "api", "v1", "contents", endpoint]) := contents_route("getContents", endpoint, "") if {
	endpoint != ""
}

route_of("GET", ["", "api", "v1", "contents", endpoint, id]) := contents_route("getContents", endpoint, id) if {
	is_named(endpoint, id)
}

route_of("PATCH", ["", "api", "v1", "contents", endpoint, id, "createdBy"]) := route if {
	is_named(endpoint, id)
	route := contents_route("patchContentCreatedBy", endpoint, id)
}

route_of("PATCH", ["", "api", "v1", "contents", endpoint, id, "status"]) := route if {
	is_named(endpoint, id)
	route := contents_route("patchContentStatus", endpoint, id)
}

route_of("GET", ["", "api", version, "media"]) := plain_route("getMedia") if version in {"v1", "v2"}

route_of("POST", ["", "api", "v1", "media"]) := plain_route("postMedia")

route_of("DELETE", ["", "api", "v2", "media"]) := plain_route("deleteMedia")

route_of("GET", ["", "api", "v1", "members"]) := plain_route("getMembers")

route_of("GET", ["", "api", "v1", "members", id]) := plain_route("getMembers") if id != ""

route_of("GET", ["", "api", "v1", "apis"]) := plain_route("getApis")

route_of("GET", ["", "api", "v1", "apis", endpoint]) := contents_route("getApis", endpoint, "") if endpoint != ""

route_of("GET", ["", "api", "v1", "service"]) := plain_route("getService")

contents_route(permission, endpoint, id) := {"permission": permission, "endpoint": endpoint, "contentId": id}

plain_route(permission) := {"permission": permission, "endpoint": "", "contentId": ""}

is_named(endpoint, id) if {
	endpoint != ""
	id != ""
}

deny(status, code, message) := {"allow": false, "status": status, "code": code, "message": message}
