# METADATA
# title: Content API
# description: |
#   Decides every content API request (/api/v1/{endpoint}[/{id}]) made with an
#   X-MICROCMS-API-KEY: the status and message microCMS answers on a deny, and which
#   contents (published, drafts, closed, one draft by draftKey) an allowed GET may see.
#   The contract (input and decision shapes, order of checks) is in policies/README.md.
package content

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
	# 1. The key belongs to the (known) service the request is for
	# (permissions.is_key_of_service).
	is_string(input.service.id)
	input.service.id != ""
	input.key.service == input.service.id

	# 2. The path is /api/v1/{endpoint} or /api/v1/{endpoint}/{id} (id "" on a list),
	# the pattern of `route` (a test checks that the two copies are the same). A segment is
	# one or more of [A-Za-z0-9_-] (an allow-list): ".", "..", "%2e", "a\b" and the like are
	# no endpoint or id, as a proxy or origin that normalises or decodes the path again
	# would serve another one.
	is_string(input.request.path)
	[[_, endpoint, id]] := regex.find_all_string_submatch_n(
		`^/api/v1/([A-Za-z0-9_-]+)(?:/([A-Za-z0-9_-]+))?$`,
		input.request.path,
		1,
	)

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
} else := {
	"allow": false,
	"status": status,
	"code": code,
	"message": message,
	"permission": permission,
	"endpoint": endpoint,
	"contentId": content_id,
	"visibility": {
		"published": false,
		"drafts": false,
		"closed": false,
		"draftKey": false,
		"filterOn": "published",
	},
} if {
	# Denied: the first failed check (reason) and the route, nothing visible. Inline rather
	# than a rule of its own, which would cost an evaluation.
	[status, code, message] := reason
	[endpoint, content_id] := route
}

# Why a request is denied, as [status, code, message]: the first failed check, in the
# contract's order. Only evaluated when the allowed body above fails. If no check here failed
# (the two disagreed), reason is undefined, and so is the deny branch: the default decision
# denies.
#
# Check 1 is three branches with the same answer, each a builtin on input refs under `not`,
# without a helper rule (which would cost an evaluation of its own). That is fail-closed here
# because a comparison or is_string of a missing ref is undefined, and `not` of undefined is
# true: no key, no service, a key of another service (all: the first branch), or a service id
# that is not a non-empty string (the other two). Do not put a Rego function call or a nested
# call under these `not`s: OPA evaluates those arguments outside the negation, so a missing
# field would skip the deny instead of taking it (test_missing_*, test_empty_input_* and
# test_odd_service_or_key_invalid_api_key guard this).
reason := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	not input.key.service == input.service.id
} else := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	not is_string(input.service.id)
} else := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	input.service.id == ""
} else := [404, "not_found", "Not found."] if {
	route[0] == ""
} else := [405, "method_not_allowed", concat(" ", [method_name, "is not allowed."])] if {
	permission == ""
} else := [400, "method_forbidden", concat(" ", [input.request.method, "is forbidden."])] if {
	# The method is one of the six by now, so it names itself. The effective set as in the
	# allowed body (permissions.effective_set); input.key is an object, as check 1 passed.
	default_perms := object.get(input.key, ["contentApi", "default"], {})
	perms := object.get(input.key, ["contentApi", "individual", route[0]], default_perms)
	not perms[permission] == true
} else := [
	400,
	"plan_feature_unavailable",
	"Status parameter is not available in the current plan. Please upgrade your plan.",
] if {
	is_status_parameter_refused
}

# HEAD is GET without a body (RFC 9110): it reveals nothing GET would not, so it needs get.
# Every other method (OPTIONS, TRACE, CONNECT, lower-case spellings, ...) is unknown: 405.
# The allowed body and `permission` have this table inline, each as a literal (a reference to
# this rule would cost an evaluation per request); tests check that all three agree.
method_permissions := {
	"GET": "get",
	"HEAD": "get",
	"POST": "post",
	"PUT": "put",
	"PATCH": "patch",
	"DELETE": "delete",
}

# The permission the request's method needs, "" for an unknown method (method_permissions).
default permission := ""

permission := {
	"GET": "get",
	"HEAD": "get",
	"POST": "post",
	"PUT": "put",
	"PATCH": "patch",
	"DELETE": "delete",
}[input.request.method]

# The method as deny messages name it: "Method" when the request has none.
default method_name := "Method"

method_name := input.request.method if {
	is_string(input.request.method)
	input.request.method != ""
}

# The endpoint and content id of a content API path; both "" when it is not one. The
# pattern is the allowed body's, character for character (policies_test.go checks it, and
# test_route_matches_allowed_body that both read every path alike): a segment is one or
# more of [A-Za-z0-9_-] (see policies/README.md, check 2).
default route := ["", ""]

route := [endpoint, content_id] if {
	is_string(input.request.path)
	[[_, endpoint, content_id]] := regex.find_all_string_submatch_n(
		`^/api/v1/([A-Za-z0-9_-]+)(?:/([A-Za-z0-9_-]+))?$`,
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
