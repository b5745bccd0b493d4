# METADATA
# title: Advice
# description: |
#   Library: warnings about a proposed key configuration, returned with every allowed key
#   create and update. A warning never refuses a key; it says what a leak of this key would
#   expose, following the seed's advice (GET-only defaults, writes only as individual
#   permissions on a key kept server-side).
package advice

import data.permissions

# METADATA
# title: Warnings
# description: |
#   warnings(key) is an array of {code, message, endpoint?, flag?} for a key configuration
#   {"contentApi": {"default", "individual"}, "managementApi"}. Order: default permissions,
#   individual permissions (by endpoint), management permissions, then "grants nothing".
warnings(key) := array.flatten([
	default_warnings(content_api(key)),
	individual_warnings(content_api(key)),
	management_warnings(management_api(key)),
	nothing_warnings(key),
])

# What each flag in the default permissions risks: every API of the service gets it.
default_risks := {
	"post": {"code": "default_write", "message": write_message("Every API", "post")},
	"put": {"code": "default_write", "message": write_message("Every API", "put")},
	"patch": {"code": "default_write", "message": write_message("Every API", "patch")},
	"delete": {"code": "default_write", "message": write_message("Every API", "delete")},
	"getAllDrafts": {
		"code": "default_drafts",
		"message": "Every API's drafts are readable with this key: if it leaks, unpublished contents leak.",
	},
	"getAllClosed": {
		"code": "default_closed",
		"message": "Every API's closed contents are readable with this key: if it leaks, withdrawn contents leak.",
	},
}

default_warnings(content_api) := [warning |
	some flag in permissions.content_flags
	risk := default_risks[flag]
	permissions.has_flag(permissions.field(content_api, "default"), flag)
	warning := object.union(risk, {"endpoint": "default", "flag": flag})
]

individual_warnings(content_api) := [warning |
	some endpoint, perms in permissions.field(content_api, "individual")
	some flag in permissions.content_flags
	flag in permissions.write_flags
	permissions.has_flag(perms, flag)
	warning := {
		"code": "individual_write",
		"message": write_message(sprintf("The API %q", [endpoint]), flag),
		"endpoint": endpoint,
		"flag": flag,
	}
]

management_warnings(management_api) := [warning |
	some flag in permissions.management_flags
	permissions.has_flag(management_api, flag)
	warning := {
		"code": "management_permission",
		"message": sprintf(
			"This key may use the management API (%s); keep it server-side and grant only what is needed.",
			[flag],
		),
		"flag": flag,
	}
]

nothing_warnings(key) := [] if {
	is_granting_anything(key)
} else := [{
	"code": "grants_nothing",
	"message": "This key grants nothing: no content or management permission is set.",
}]

# METADATA
# title: Grants anything
# scope: document
# description: True when some flag of the default, an individual entry or the management set is true.
is_granting_anything(key) if permissions.has_any_flag(content_api(key).default)

is_granting_anything(key) if {
	some perms in content_api(key).individual
	permissions.has_any_flag(perms)
}

is_granting_anything(key) if permissions.has_any_flag(management_api(key))

content_api(key) := permissions.field(key, "contentApi")

management_api(key) := permissions.field(key, "managementApi")

write_message(scope, flag) := sprintf(
	"%s is writable with this key (%s): keep it server-side, never in a browser or an app.",
	[scope, flag],
)
