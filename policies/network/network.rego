# METADATA
# title: API IP restriction
# description: |
#   microCMS's "API IP restriction" (APIのIP制限): per service, an allow-list of IPv4 and
#   IPv6 addresses and CIDRs for every API (default) and per API (apis), where an API's own
#   list replaces the default for that API, as an individual key permission replaces the
#   default one. No list (or an empty one) restricts nothing. content and management ask
#   rejected(...) right after the key check; decision answers the admin API that reads and
#   replaces a service's setting. The contract is in policies/README.md.
package network

# METADATA
# title: Rejection
# description: What microCMS answers a request from an address that no applicable entry holds.
rejection := [400, "ip_address_rejected", "IP address rejected"]

# METADATA
# title: Settings of the request's service
# scope: document
# description: |
#   The IP restriction setting of the service a content or management request is for
#   (input.service.ipRestrictions, present only when the service restricts addresses); no
#   setting is the empty one.
default settings := {}

settings := input.service.ipRestrictions

# METADATA
# title: The request's service restricts addresses
# scope: document
# description: |
#   keygate presents a setting (input.service.ipRestrictions) only for a service that has
#   one; without it no API of the service is restricted, and nothing more is looked at.
default restricts := false

restricts if is_object(input.service.ipRestrictions)

# METADATA
# title: Client address of the request
# scope: document
# description: |
#   The client's address as keygate determined it (input.request.clientIp: the decide
#   request's clientIp, or forward-auth's peer or trusted proxy header); null when unknown.
default client_ip := null

client_ip := input.request.clientIp

# METADATA
# title: Rejected
# scope: document
# description: |
#   The request for api (an endpoint, "" when the path names none) comes from an address
#   the applicable list does not hold. A list that is not an array, or a client address
#   that is missing or not an address, is rejected whenever the list restricts.
rejected(settings, _, api) if not is_array(applicable_list(settings, api))

rejected(settings, client_ip, api) if {
	list := applicable_list(settings, api)
	is_array(list)
	count(list) > 0
	not allowed(list, client_ip)
}

# METADATA
# title: Applicable list
# description: |
#   The list for api: its own entry under apis when it has one (it replaces the default,
#   also when empty), else the default; no setting at all is the empty list.
applicable_list(settings, api) := object.get(settings, ["apis", api], object.get(settings, "default", [])) if {
	is_object(settings)
} else := []

# An entry of list holds client_ip (a single address, not a range).
allowed(list, client_ip) if {
	is_address(client_ip)
	some entry in list
	net.cidr_contains(as_cidr(entry), client_ip)
}

# METADATA
# title: Valid entry
# description: An IPv4 or IPv6 address, or a CIDR (203.0.113.0/24, 2001:db8::/32).
valid_entry(entry) if as_cidr(entry)

# An entry as a CIDR: a CIDR as it is, a single address as its /32 or /128; undefined for
# anything else.
as_cidr(entry) := entry if {
	is_string(entry)
	contains(entry, "/")
	net.cidr_is_valid(entry)
}

as_cidr(entry) := concat("/", [entry, host_bits(entry)]) if is_address(entry)

is_address(x) if {
	is_string(x)
	not contains(x, "/")
	net.cidr_is_valid(concat("/", [x, host_bits(x)]))
}

host_bits(x) := "128" if contains(x, ":")

host_bits(x) := "32" if not contains(x, ":")

# METADATA
# title: Decision (admin API)
# description: |
#   The answer to reading (read) or replacing (update) a service's IP restriction setting,
#   always an object (see policies/README.md). The default only applies if a part of the
#   decision is undefined: it denies.
# entrypoint: true
default decision := {
	"allow": false,
	"status": 403,
	"code": "forbidden",
	"message": "Forbidden",
	"violations": [],
	"limit": 0,
}

decision := {
	"allow": verdict.allow,
	"status": verdict.status,
	"code": verdict.code,
	"message": verdict.message,
	"violations": violations,
	"limit": limit,
}

# METADATA
# title: Verdict
# scope: document
# description: |
#   The first failed check, in the contract's order: who asks (401, 403, as for keys), the
#   action, the shape of the setting, the plan (403 naming it), the entries (422 naming
#   each invalid one), the plan's entries per list (422 with the limit).
verdict := deny(401, "unauthenticated", "The bearer token matches no member.") if {
	not is_member
} else := deny(403, "forbidden", "Only an admin of this service may manage its IP restrictions.") if {
	not is_admin
} else := deny(400, "unknown_action", "Unknown IP-restriction action.") if {
	not action in actions
} else := deny(422, "invalid_ip_restrictions", shape_message) if {
	action == "update"
	not is_well_formed
} else := deny(403, "plan_feature_unavailable", plan_message) if {
	action == "update"
	entry_count > 0
	not plan_has_ip_restriction
} else := deny(422, "invalid_ip_entry", concat("; ", [v.message | some v in violations])) if {
	action == "update"
	count(violations) > 0
} else := deny(422, "ip_entry_limit_exceeded", limit_message) if {
	action == "update"
	count(over_limit) > 0
} else := {"allow": true, "status": 200, "code": "allowed", "message": ""} if {
	action in actions
}

actions := {"read", "update"}

default is_member := false

is_member if is_string(input.member.id)

default is_admin := false

is_admin if {
	is_string(input.service.id)
	input.member.service == input.service.id
	input.member.role == "admin"
}

default action := ""

action := input.action if is_string(input.action)

default plan_name := ""

plan_name := input.service.plan if is_string(input.service.plan)

default plan_has_ip_restriction := false

plan_has_ip_restriction if data.plans[plan_name].ipRestriction == true

# The plan's entries per list; a plan without the feature (or an unknown one) has none.
default limit := 0

limit := data.plans[plan_name].maxIpEntries if is_number(data.plans[plan_name].maxIpEntries)

default is_well_formed := false

is_well_formed if {
	is_array(input.settings.default)
	is_object(input.settings.apis)
	every list in input.settings.apis {
		is_array(list)
	}
}

shape_message := `The IP restriction setting must be {"default": [...], "apis": {"<endpoint>": [...]}}.`

# Every list of the setting as [name, entries]: the default first, then each API's by name.
default lists := []

lists := array.concat([["default", input.settings.default]], [[api, list] | some api, list in input.settings.apis]) if {
	is_well_formed
}

entry_count := sum([count(list) | some [_, list] in lists])

# METADATA
# title: Violations
# scope: document
# description: Every entry that is neither an address nor a CIDR, naming its list and the entry.
default violations := []

violations := [violation(name, entry) |
	some [name, list] in lists
	some entry in list
	not valid_entry(entry)
] if {
	action == "update"
}

violation(name, entry) := {
	"endpoint": name,
	"entry": sprintf("%v", [entry]),
	"message": sprintf("%v is not an IPv4 or IPv6 address or CIDR (%s)", [entry, name]),
}

over_limit := [[name, count(list)] | some [name, list] in lists; count(list) > limit]

plan_message := sprintf(
	"IP restrictions are not available in the %s plan (Business, Advanced and Enterprise have them).",
	[plan_name],
)

limit_message := concat("; ", [msg |
	some [name, n] in over_limit
	msg := sprintf("The %s plan allows at most %d IP addresses or ranges per API; %s has %d.", [plan_name, limit, name, n])
])

deny(status, code, message) := {"allow": false, "status": status, "code": code, "message": message}
