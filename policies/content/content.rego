# METADATA
# title: Content API
# description: |
#   Decides every content API request (/api/v1/{endpoint}[/{id}]) made with an
#   X-MICROCMS-API-KEY: the status and message microCMS answers on a deny, and which
#   contents (published, drafts, closed, one draft by draftKey) an allowed GET may see.
#   The contract (input and decision shapes, order of checks) is in policies/README.md.
package content

import data.network
import data.permissions

# METADATA
# title: Decision
# description: |
#   The answer to one content API request, always an object (see policies/README.md):
#   allowed when every check passes, else denied with the first failed check (reason).
#   The default only applies if a part of the decision is undefined: it denies.
# entrypoint: true
default decision := {
	"allow": false,
	"status": 403,
	"code": "denied",
	"message": "Forbidden.",
	"permission": "",
	"endpoint": "",
	"visibility": {
		"published": false,
		"drafts": false,
		"closed": false,
		"draftKey": false,
		"filterOn": "published",
	},
}

decision := {
	"allow": true,
	"status": 200,
	"code": "allowed",
	"message": "",
	"permission": permission,
	"endpoint": endpoint,
	"visibility": visibility,
} if {
	allow
} else := {
	"allow": false,
	"status": status,
	"code": code,
	"message": message,
	"permission": permission,
	"endpoint": endpoint,
	"visibility": nothing_visible,
} if {
	[status, code, message] := reason
}

# METADATA
# title: Allow
# scope: document
# description: Every check of the contract passes, in its order (policies/README.md).
default allow := false

allow if {
	is_key_of_service
	not ip_rejected
	is_routed
	granted
	not status_parameter_refused
}

# METADATA
# title: Reason
# scope: document
# description: |
#   Why a request is denied, as [status, code, message]: the first failed check, in the
#   contract's order. The status and message are microCMS's own.
reason := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	not is_key_of_service
} else := network.rejection if {
	ip_rejected
} else := [404, "not_found", "Not found."] if {
	not is_routed
} else := [405, "method_not_allowed", concat(" ", [method_name, "is not allowed."])] if {
	permission == ""
} else := [400, "method_forbidden", concat(" ", [method_name, "is forbidden."])] if {
	not granted
} else := [400, "plan_feature_unavailable", status_parameter_message] if {
	status_parameter_refused
}

status_parameter_message := "Status parameter is not available in the current plan. Please upgrade your plan."

# METADATA
# title: Key of service (check 1)
# scope: document
# description: The key was found and belongs to the (known) service the request is for.
default is_key_of_service := false

is_key_of_service if permissions.is_key_of_service(input.key, input.service)

# METADATA
# title: IP restriction (check 1a, data.network)
# scope: document
# description: |
#   Right after the key: the service restricts this API (the path's endpoint, else the
#   default list) to listed addresses, and the client's is not one of them or is unknown.
default ip_rejected := false

ip_rejected if {
	network.restricts
	network.rejected(network.settings, network.client_ip, endpoint)
}

# METADATA
# title: Route (check 2)
# scope: document
# description: |
#   keygate's server parses the path into input.request.route: the endpoint and the kind of
#   target, a list (/api/v1/{endpoint}) or a single content (/api/v1/{endpoint}/{id}). A
#   path outside that grammar has no route (policies/README.md, "Path segments").
default is_routed := false

is_routed if {
	is_string(input.request.route.endpoint)
	input.request.route.endpoint != ""
	input.request.route.kind in {"list", "single"}
}

# The endpoint the request is for, "" when it has no route.
default endpoint := ""

endpoint := input.request.route.endpoint if is_routed

# The request names one content, not a list.
default is_single := false

is_single if {
	is_routed
	input.request.route.kind == "single"
}

# METADATA
# title: Method permissions (check 3)
# scope: document
# description: |
#   The permission each method needs. HEAD is GET without a body (RFC 9110): it reveals
#   nothing GET would not, so it needs get. Every other method (OPTIONS, TRACE, lower-case
#   spellings, ...) is unknown: 405.
method_permissions := {
	"GET": "get",
	"HEAD": "get",
	"POST": "post",
	"PUT": "put",
	"PATCH": "patch",
	"DELETE": "delete",
}

# The permission the request's method needs, "" for an unknown method.
default permission := ""

permission := method_permissions[input.request.method]

# The method as deny messages name it: "Method" when the request has none.
default method_name := "Method"

method_name := input.request.method if {
	is_string(input.request.method)
	input.request.method != ""
}

# METADATA
# title: Effective permissions (microCMS - an individual entry replaces the default)
# scope: document
# description: |
#   The key's permission set for the endpoint: its individual entry when it has one, which
#   replaces the default entirely (even where the default grants more), else the default.
default effective_permissions := {}

effective_permissions := permissions.effective_set(input.key.contentApi, endpoint)

# METADATA
# title: Granted (check 4)
# scope: document
# description: The effective permissions grant what the method needs (a flag exactly true).
default granted := false

granted if effective_permissions[permission] == true

# METADATA
# title: Status parameter (check 5, a paid-plan feature of microCMS)
# scope: document
# description: |
#   A write carrying the status query parameter on a plan without statusParameter. microCMS's
#   status parameter (status=draft|closed) sets the status of what a write (POST, PUT,
#   PATCH) creates or updates; DELETE takes no status, so a stray one there uses no paid
#   feature. An unknown plan has no features, so it is refused too.
default status_parameter_refused := false

status_parameter_refused if {
	input.request.method in writes_with_status
	has_status_parameter
	not plan_has_status_parameter
}

# The query has a parameter that an origin might read as status: any spelling that
# normalises to it (Status, " status", status[], status[0], [status], status], status%00).
# input.request.parameters has the names of all query parameters, split on ";" as well as
# "&" (x=1;status=draft).
default has_status_parameter := false

has_status_parameter if {
	some name in input.request.parameters
	normalised_parameter(name) == "status"
}

# A parameter name as a lenient query parser reads it: up to a NUL byte (PHP reads names as
# C strings), without the brackets before it (Rack 2 reads [status] and status] as status),
# up to its first bracket (status[], status[0]), without surrounding spaces, in lower case.
normalised_parameter(name) := lower(trim_space(split(split(unbracketed, "[")[0], "]")[0])) if {
	is_string(name)
	unbracketed := trim_left(trim_space(split(name, "\u0000")[0]), "[]")
}

writes_with_status := {"POST", "PUT", "PATCH"}

default plan_has_status_parameter := false

plan_has_status_parameter if data.plans[input.service.plan].statusParameter == true

# METADATA
# title: Visibility
# scope: document
# description: |
#   What an allowed request may see. A read (GET/HEAD) sees published contents, and drafts,
#   closed contents or one draft by its draftKey as below; filters and search on a content
#   both published and in draft apply to its published version (filterOn). A write sees
#   nothing.
visibility := {
	"published": true,
	"drafts": sees_all_drafts,
	"closed": sees_all_closed,
	"draftKey": sees_draft_by_key,
	"filterOn": "published",
} if {
	permission == "get"
} else := nothing_visible

nothing_visible := {"published": false, "drafts": false, "closed": false, "draftKey": false, "filterOn": "published"}

# microCMS: "get all drafts" counts only together with get in the same permission set.
default sees_all_drafts := false

sees_all_drafts if {
	effective_permissions.get == true
	effective_permissions.getAllDrafts == true
}

# microCMS: "get all closed" counts only together with get in the same permission set.
default sees_all_closed := false

sees_all_closed if {
	effective_permissions.get == true
	effective_permissions.getAllClosed == true
}

# microCMS: one draft by its draftKey, with get, on a single content; the content service
# checks the draftKey itself.
default sees_draft_by_key := false

sees_draft_by_key if {
	effective_permissions.get == true
	is_single
	is_string(input.request.query.draftKey)
}
