# METADATA
# title: Key management
# description: |
#   Decides every key-management call (create, read, list, update, rotate, delete, and audit:
#   reading the service's audit trail of key management): only an
#   admin of the same service may manage its keys, a service cannot create more keys than its
#   plan allows (data.plans), and a key configuration with getAllDrafts or getAllClosed
#   without get is refused. Allowed creates and updates carry advice warnings.
#   The contract is in policies/README.md.
package keys

import data.advice
import data.permissions

# METADATA
# title: Decision
# description: |
#   The answer to one key-management call, always an object (see policies/README.md).
#   The default only applies if a part of the decision is undefined: it denies.
# entrypoint: true
default decision := {
	"allow": false,
	"status": 403,
	"code": "forbidden",
	"message": "Forbidden",
	"violations": [],
	"warnings": [],
	"limit": 0,
}

decision := {
	"allow": verdict.allow,
	"status": verdict.status,
	"code": verdict.code,
	"message": verdict.message,
	"violations": violations,
	"warnings": warnings,
	"limit": limit,
}

verdict := deny(401, "unauthenticated", "The bearer token matches no member.") if {
	not is_member
} else := deny(403, "forbidden", "Only an admin of this service may manage its API keys.") if {
	not is_admin
} else := deny(400, "unknown_action", "Unknown key-management action.") if {
	not action in actions
} else := deny(409, "key_limit_exceeded", limit_message) if {
	action == "create"
	not is_under_limit
} else := deny(422, "invalid_key_config", "The key configuration is missing.") if {
	action in config_actions
	not is_object(proposed_key)
} else := deny(422, "invalid_key_config", violations_message(violations)) if {
	action in config_actions
	count(violations) > 0
} else := {"allow": true, "status": 200, "code": "allowed", "message": ""} if {
	action in actions
}

# Every input field the checks read goes through a rule with a default: `not f(input.x)` is
# undefined (not true) when input.x is missing, because OPA evaluates the argument first, so
# a bare input ref under `not` would skip a deny instead of taking it.
default is_member := false

is_member if is_string(input.member.id)

# The member is an admin of the (known) service (as permissions.is_key_of_service, inline).
default is_admin := false

is_admin if {
	is_string(input.service.id)
	input.member.service == input.service.id
	input.member.role == "admin"
}

default action := ""

action := input.action if is_string(input.action)

default key_count := null

key_count := input.service.keyCount

default proposed_key := null

proposed_key := input.key

actions := {"create", "read", "list", "update", "rotate", "delete", "audit"}

# The actions that carry a proposed key configuration.
config_actions := {"create", "update"}

default plan_name := ""

plan_name := input.service.plan if is_string(input.service.plan)

# The plan's key limit; an unknown plan (or a non-numeric maxKeys) allows no key at all.
default limit := 0

limit := data.plans[plan_name].maxKeys if is_number(data.plans[plan_name].maxKeys)

# METADATA
# title: Violations
# description: |
#   Every getAllDrafts/getAllClosed set without get (microCMS: they count only together with
#   get in the same permission set), in the default (endpoint "default") and in each individual
#   entry (endpoint = its API endpoint): default first, then by endpoint, and in a set by flag
#   name. A flag counts only when exactly true, and a missing or odd part of the key has no
#   flags. The decision reports exactly this array. keygate also asks this rule on its own for
#   the seed keys of data/keys.json, and reuses one answer for every key whose input is equal
#   on what the rule reads (see policies/README.md).
# entrypoint: true
default violations := []

violations := array.concat(
	[violation("default", flag) |
		some flag in permissions.flags_missing_get(input.key.contentApi.default)
	],
	[violation(endpoint, flag) |
		some endpoint, perms in input.key.contentApi.individual
		some flag in permissions.flags_missing_get(perms)
	],
) if {
	action in config_actions
}

default warnings := []

warnings := array.concat(advice.warnings(proposed_key), advice.unlisted_apis(proposed_key, service_apis)) if {
	verdict.allow
	action in config_actions
}

# The service's content API endpoints, where the service lists them (null: unknown).
default service_apis := null

service_apis := input.service.apis if is_array(input.service.apis)

violation(endpoint, flag) := {"endpoint": endpoint, "flag": flag, "message": sprintf("%s requires get", [flag])}

violations_message(items) := concat("; ", [sprintf("%s (%s)", [v.message, v.endpoint]) | some v in items])

# A service over its limit (after a downgrade) keeps its keys; it only cannot create more.
default is_under_limit := false

is_under_limit if {
	is_number(key_count)
	key_count < limit
}

# The 409 message names the plan and its limit.
limit_message := sprintf("The %s plan's API key limit is %d; this service has reached it.", [plan_name, limit]) if {
	data.plans[plan_name]
} else := sprintf("Unknown plan %q: no API key can be created.", [plan_name])

deny(status, code, message) := {"allow": false, "status": status, "code": code, "message": message}
