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
#   A flag counts only when exactly true; a missing or odd part of the key grants nothing.
warnings(key) := array.flatten([
	default_warnings(key),
	individual_warnings(key),
	management_warnings(key),
	nothing_warnings(key),
])

# What each flag in the default permissions risks: every API of the service gets it.
# In the order of the content flags.
default_risks := [
	{
		"flag": "getAllDrafts",
		"code": "default_drafts",
		"message": "Every API's drafts are readable with this key: if it leaks, unpublished contents leak.",
	},
	{
		"flag": "getAllClosed",
		"code": "default_closed",
		"message": "Every API's closed contents are readable with this key: if it leaks, withdrawn contents leak.",
	},
	{
		"flag": "post",
		"code": "default_write",
		"message": "Every API is writable with this key (post): keep it server-side, never in a browser or an app.",
	},
	{
		"flag": "put",
		"code": "default_write",
		"message": "Every API is writable with this key (put): keep it server-side, never in a browser or an app.",
	},
	{
		"flag": "patch",
		"code": "default_write",
		"message": "Every API is writable with this key (patch): keep it server-side, never in a browser or an app.",
	},
	{
		"flag": "delete",
		"code": "default_write",
		"message": "Every API is writable with this key (delete): keep it server-side, never in a browser or an app.",
	},
]

# A flag of the default permissions that is set: its risk, for every API.
default_warnings(key) := [warning |
	some risk in default_risks
	key.contentApi.default[risk.flag] == true
	warning := {"code": risk.code, "message": risk.message, "endpoint": "default", "flag": risk.flag}
]

# A write flag in an individual entry: that API is writable (in content flag order).
individual_warnings(key) := [warning |
	some endpoint, perms in key.contentApi.individual
	some flag in permissions.content_flags
	flag in permissions.write_flags
	perms[flag] == true
	warning := {
		"code": "individual_write",
		"message": sprintf(
			"The API %q is writable with this key (%s): keep it server-side, never in a browser or an app.",
			[endpoint, flag],
		),
		"endpoint": endpoint,
		"flag": flag,
	}
]

# Any management permission: the management API is reachable with this key.
management_warnings(key) := [warning |
	some flag in permissions.management_flags
	key.managementApi[flag] == true
	warning := {
		"code": "management_permission",
		"message": sprintf(
			"This key may use the management API (%s); keep it server-side and grant only what is needed.",
			[flag],
		),
		"flag": flag,
	}
]

# No flag is true anywhere: the default, an individual entry, the management set.
nothing_warnings(key) := [] if {
	grants_something(key)
} else := [{
	"code": "grants_nothing",
	"message": "This key grants nothing: no content or management permission is set.",
}]

grants_something(key) if true in key.contentApi.default

grants_something(key) if {
	some perms in key.contentApi.individual
	true in perms
}

grants_something(key) if true in key.managementApi

# METADATA
# title: Unlisted APIs
# description: |
#   unlisted_apis(key, apis) warns about each individual permission (by endpoint) naming an API
#   that apis, the service's list of content API endpoints, does not hold: a misspelled endpoint
#   protects nothing, and the API meant keeps the default permissions. Without a list (apis
#   not an array) nothing is known, and nothing is warned.
unlisted_apis(key, apis) := [warning |
	is_array(apis)
	some endpoint, _ in key.contentApi.individual
	not endpoint in apis
	warning := {
		"code": "unlisted_api",
		"message": sprintf(
			"The service lists no API %q: check the endpoint; requests to the API you meant keep the default permissions.",
			[endpoint],
		),
		"endpoint": endpoint,
	}
]
