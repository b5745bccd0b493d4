# METADATA
# title: Content API
# description: |
#   Decides every content API request (/api/v1/{endpoint}[/{id}]) made with an
#   X-MICROCMS-API-KEY: the status and message microCMS answers on a deny, and which
#   contents (published, drafts, closed, one draft by draftKey) an allowed GET may see.
#   The contract (input and decision shapes, order of checks) is in policies/README.md.
package content

import data.permissions

# METADATA
# title: Decision
# description: |
#   The answer to one content API request, always an object (see policies/README.md).
#   The default only applies if a part of the decision is undefined: it denies.
# entrypoint: true
default decision := {
	"allow": false,
	"status": 403,
	"code": "denied",
	"message": "Forbidden.",
	"permission": "",
	"endpoint": "",
	"contentId": "",
	"visibility": {
		"published": false,
		"drafts": false,
		"closed": false,
		"draftKey": false,
		"filterOn": "published",
	},
}

decision := {
	"allow": verdict.allow,
	"status": verdict.status,
	"code": verdict.code,
	"message": verdict.message,
	"permission": permission,
	"endpoint": route.endpoint,
	"contentId": route.contentId,
	"visibility": visibility,
}

# The first failed check decides; the allow branch repeats the permission check so that
# nothing but a granted permission ever reaches it.
verdict := deny(401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid.") if {
	not is_authenticated
} else := deny(404, "not_found", "Not found.") if {
	route.endpoint == ""
} else := deny(405, "method_not_allowed", method_message(method, "is not allowed.")) if {
	permission == ""
} else := deny(400, "method_forbidden", method_message(method, "is forbidden.")) if {
	not permissions.has_flag(effective_permissions, permission)
} else := deny(400, "plan_feature_unavailable", status_parameter_message) if {
	is_status_parameter_refused(method, query, plan)
} else := {"allow": true, "status": 200, "code": "allowed", "message": ""} if {
	permissions.has_flag(effective_permissions, permission)
}

# A rule, not a bare function call under `not`: `not f(input.key)` is undefined (not true)
# when input.key is missing, because OPA evaluates the argument before the negation.
default is_authenticated := false

is_authenticated if permissions.is_key_of_service(input.key, input.service)

status_parameter_message := "Status parameter is not available in the current plan. Please upgrade your plan."

# HEAD is GET without a body (RFC 9110): it reveals nothing GET would not, so it needs get.
# Every other method (OPTIONS, TRACE, CONNECT, lower-case spellings, ...) is unknown: 405.
method_permissions := {
	"GET": "get",
	"HEAD": "get",
	"POST": "post",
	"PUT": "put",
	"PATCH": "patch",
	"DELETE": "delete",
}

# microCMS's status query parameter (status=draft|closed) sets the status of what a write
# creates or updates. DELETE takes no status, so a stray one there is not a paid feature used.
status_write_methods := {"POST", "PUT", "PATCH"}

default method := ""

method := input.request.method if is_string(input.request.method)

default permission := ""

permission := method_permissions[method]

default query := {}

query := input.request.query if is_object(input.request.query)

default plan := {}

plan := data.plans[input.service.plan]

default route := {"endpoint": "", "contentId": ""}

route := parse_path(split(input.request.path, "/")) if is_string(input.request.path)

default effective_permissions := {}

effective_permissions := permissions.effective_set(input.key.contentApi, route.endpoint)

default visibility := {
	"published": false,
	"drafts": false,
	"closed": false,
	"draftKey": false,
	"filterOn": "published",
}

# filterOn: for a content both published and in draft, filters and search apply to the
# published version even with getAllDrafts (microCMS's rule), so it is always "published".
visibility := {
	"published": true,
	"drafts": is_drafts_visible,
	"closed": is_closed_visible,
	"draftKey": is_draft_key_fetch,
	"filterOn": "published",
} if {
	verdict.allow
	permission == "get"
}

# getAllDrafts and getAllClosed count only together with get, even if a key with one of them
# and no get got past the key-write validation (defence in depth).
default is_drafts_visible := false

is_drafts_visible if permissions.has_all_flags(effective_permissions, ["get", "getAllDrafts"])

default is_closed_visible := false

is_closed_visible if permissions.has_all_flags(effective_permissions, ["get", "getAllClosed"])

# A single draft is fetched by its draftKey with get alone; the content service checks the
# draftKey itself. Lists never take a draftKey.
default is_draft_key_fetch := false

is_draft_key_fetch if {
	route.contentId != ""
	is_string(query.draftKey)
	permissions.has_flag(effective_permissions, "get")
}

# METADATA
# title: Parse path
# scope: document
# description: The path /api/v1/{endpoint}[/{id}], split on slashes, as endpoint and content id.
parse_path(["", "api", "v1", endpoint]) := {"endpoint": endpoint, "contentId": ""} if endpoint != ""

parse_path(["", "api", "v1", endpoint, id]) := {"endpoint": endpoint, "contentId": id} if {
	endpoint != ""
	id != ""
}

# METADATA
# title: Status parameter refused
# description: |
#   True for a write carrying the status query parameter on a plan without statusParameter.
#   An unknown plan has no features, so it is refused too.
is_status_parameter_refused(method, query, plan) if {
	method in status_write_methods
	"status" in object.keys(query)
	not plan.statusParameter == true
}

deny(status, code, message) := {"allow": false, "status": status, "code": code, "message": message}

method_message("", text) := concat(" ", ["Method", text])

method_message(method, text) := concat(" ", [method, text]) if method != ""
