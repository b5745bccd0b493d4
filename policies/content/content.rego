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

# The fast path: an allowed request is decided by this one body, and the decision object is
# built once. It reads input into local variables and calls builtins only: a reference to
# another rule, or a call of a Rego function, costs an evaluation of its own on every request.
# Checks 1-5 of the contract are each a few lines; `reason` (below) says which one failed.
# It is longer than Regal's 30 lines on purpose: split into helper rules, it costs more.
# regal ignore:rule-length
decision := {
	"allow": true,
	"status": 200,
	"code": "allowed",
	"message": "",
	"permission": permission,
	"endpoint": endpoint,
	"contentId": id,
	"visibility": object.get({"get": read_visibility}, permission, hidden),
} if {
	# 1. The key belongs to the (known) service the request is for.
	is_string(input.service.id)
	input.service.id != ""
	input.key.service == input.service.id

	# 2. The path is /api/v1/{endpoint} or /api/v1/{endpoint}/{id} (id "" on a list),
	# the pattern of `route`.
	is_string(input.request.path)
	[[_, endpoint, id]] := regex.find_all_string_submatch_n(`^/api/v1/([^/]+)(?:/([^/]+))?$`, input.request.path, 1)

	# 3. The method is known, and 4. the effective set grants its permission: the endpoint's
	# individual entry, which replaces the default entirely, else the default (as
	# permissions.effective_set). Flags count only when exactly true. The methods are those of
	# method_permissions (a test checks that the two agree).
	methods := {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}
	permission := methods[input.request.method]
	default_perms := object.get(input.key, ["contentApi", "default"], {})
	perms := object.get(input.key, ["contentApi", "individual", endpoint], default_perms)
	perms[permission] == true

	# 5. No refused status parameter (a GET stops at the first line of that rule).
	not is_status_parameter_refused

	# What it may see: a read (GET/HEAD) has get by now, and getAllDrafts and getAllClosed
	# count with it; a draftKey counts on a single content only. A write sees nothing (the
	# "get" entry of the lookup in the head is the only one: any other permission is hidden).
	read_visibility := {
		"published": true,
		"drafts": object.get(perms, "getAllDrafts", false) == true,
		"closed": object.get(perms, "getAllClosed", false) == true,
		"draftKey": [id != "", is_string(object.get(input.request, ["query", "draftKey"], null))] == [true, true],
		"filterOn": "published",
	}
	hidden := {"published": false, "drafts": false, "closed": false, "draftKey": false, "filterOn": "published"}
} else := denied

# The answer to a denied request: the first failed check (reason), nothing visible.
denied := {
	"allow": false,
	"status": reason.status,
	"code": reason.code,
	"message": reason.message,
	"permission": permission,
	"endpoint": route.endpoint,
	"contentId": route.contentId,
	"visibility": {
		"published": false,
		"drafts": false,
		"closed": false,
		"draftKey": false,
		"filterOn": "published",
	},
}

# Why a request is denied: the first failed check, in the contract's order. Only evaluated
# when the allowed body above fails. If no check here failed (the two disagreed), reason is
# undefined, and so is the deny branch: the default decision denies.
reason := {
	"status": 401,
	"code": "invalid_api_key",
	"message": "X-MICROCMS-API-KEY header is invalid.",
} if {
	not is_authenticated
} else := {"status": 404, "code": "not_found", "message": "Not found."} if {
	route.endpoint == ""
} else := {
	"status": 405,
	"code": "method_not_allowed",
	"message": concat(" ", [method_name, "is not allowed."]),
} if {
	permission == ""
} else := {
	"status": 400,
	"code": "method_forbidden",
	"message": concat(" ", [method_name, "is forbidden."]),
} if {
	not effective_permissions[permission] == true
} else := {
	"status": 400,
	"code": "plan_feature_unavailable",
	"message": "Status parameter is not available in the current plan. Please upgrade your plan.",
} if {
	is_status_parameter_refused
}

# Check 1 (as permissions.is_key_of_service, inline). A rule with a default, not a bare function
# call under `not`: `not f(input.key)` is undefined (not true) when input.key is missing,
# because OPA evaluates the argument before the negation.
default is_authenticated := false

is_authenticated if {
	is_string(input.service.id)
	input.service.id != ""
	input.key.service == input.service.id
}

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

default permission := ""

permission := method_permissions[input.request.method]

# The method as deny messages name it: "Method" when the request has none.
default method_name := "Method"

method_name := input.request.method if {
	is_string(input.request.method)
	input.request.method != ""
}

# The effective permission set (permissions.effective_set); {} for a key without contentApi.
default effective_permissions := {}

effective_permissions := permissions.effective_set(input.key.contentApi, route.endpoint)

# The endpoint and content id of a content API path; both "" when it is not one.
default route := {"endpoint": "", "contentId": ""}

route := {"endpoint": endpoint, "contentId": content_id} if {
	is_string(input.request.path)
	[[_, endpoint, content_id]] := regex.find_all_string_submatch_n(
		`^/api/v1/([^/]+)(?:/([^/]+))?$`,
		input.request.path,
		1,
	)
}

# METADATA
# title: Status parameter refused
# scope: document
# description: |
#   True for a write carrying the status query parameter on a plan without statusParameter.
#   An unknown plan has no features, so it is refused too. microCMS's status parameter
#   (status=draft|closed) sets the status of what a write (POST, PUT, PATCH) creates or
#   updates; DELETE takes no status, so a stray one there uses no paid feature. No default:
#   only ever negated or tested, so undefined reads as false, and a GET (most requests)
#   stops at the first line without looking the query or plan up.
is_status_parameter_refused if {
	input.request.method in {"POST", "PUT", "PATCH"}
	is_string(input.request.query.status)
	not data.plans[input.service.plan].statusParameter == true
}
