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

# The fast path: an allowed request is decided by this one body, and the object is built once.
decision := {
	"allow": true,
	"status": 200,
	"code": "allowed",
	"message": "",
	"permission": permission,
	"endpoint": route.endpoint,
	"contentId": route.contentId,
	"visibility": visibility,
} if {
	is_allowed
} else := {
	"allow": false,
	"status": reason.status,
	"code": reason.code,
	"message": reason.message,
	"permission": permission,
	"endpoint": route.endpoint,
	"contentId": route.contentId,
	"visibility": hidden,
} if {
	not is_allowed
}

# METADATA
# title: Allowed
# scope: document
# description: |
#   Every check passes: the key belongs to the service, the path is a content API path, the
#   method's permission is granted in the effective set, and no refused status parameter.
default is_allowed := false

is_allowed if {
	is_authenticated
	route.endpoint != ""
	effective_permissions[permission] == true
	not is_status_parameter_refused
}

# Why a request is denied: the first failed check, in the contract's order. Only evaluated
# when is_allowed is false; undefined otherwise, which the default decision turns into a deny.
reason := deny(401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid.") if {
	not is_authenticated
} else := deny(404, "not_found", "Not found.") if {
	route.endpoint == ""
} else := deny(405, "method_not_allowed", method_message(method, "is not allowed.")) if {
	permission == ""
} else := deny(400, "method_forbidden", method_message(method, "is forbidden.")) if {
	not effective_permissions[permission] == true
} else := deny(400, "plan_feature_unavailable", status_parameter_message) if {
	is_status_parameter_refused
}

hidden := {
	"published": false,
	"drafts": false,
	"closed": false,
	"draftKey": false,
	"filterOn": "published",
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

# Only the allowed decision reads this. filterOn: for a content both published and in draft,
# filters and search apply to the published version even with getAllDrafts (microCMS's rule),
# so it is always "published".
visibility := {
	"published": true,
	"drafts": is_drafts_visible,
	"closed": is_closed_visible,
	"draftKey": is_draft_key_fetch,
	"filterOn": "published",
} if {
	permission == "get"
}

# getAllDrafts and getAllClosed count only together with get, even if a key with one of them
# and no get got past the key-write validation (defence in depth).
default is_drafts_visible := false

is_drafts_visible if {
	effective_permissions.get == true
	effective_permissions.getAllDrafts == true
}

default is_closed_visible := false

is_closed_visible if {
	effective_permissions.get == true
	effective_permissions.getAllClosed == true
}

# A single draft is fetched by its draftKey with get alone; the content service checks the
# draftKey itself. Lists never take a draftKey.
default is_draft_key_fetch := false

is_draft_key_fetch if {
	route.contentId != ""
	is_string(query.draftKey)
	effective_permissions.get == true
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
# scope: document
# description: |
#   True for a write carrying the status query parameter on a plan without statusParameter.
#   An unknown plan has no features, so it is refused too. A rule rather than a function so
#   that a GET (most requests) stops at the first line without looking the query or plan up.
default is_status_parameter_refused := false

is_status_parameter_refused if {
	status_write_methods[method]
	is_string(query.status)
	not plan.statusParameter == true
}

deny(status, code, message) := {"allow": false, "status": status, "code": code, "message": message}

method_message("", text) := concat(" ", ["Method", text])

method_message(method, text) := concat(" ", [method, text]) if method != ""
