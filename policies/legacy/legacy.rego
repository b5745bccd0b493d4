# METADATA
# title: Legacy API keys (X-API-KEY, X-WRITE-API-KEY, X-GLOBAL-DRAFT-KEY)
# description: |
#   microCMS services created up to 2021-10-22 used three headers. Each old key became an
#   X-MICROCMS-API-KEY with the same value: X-API-KEY with GET only, X-GLOBAL-DRAFT-KEY with
#   GET and getAllDrafts, X-WRITE-API-KEY with every default flag off and its per-API write
#   methods as individual permissions. migration maps an old key to that configuration (for
#   `keygate keys import-legacy`); selection chooses the key that judges a content API request
#   made with the old headers (keygate serve --legacy-headers, a migration aid): a read with
#   X-API-KEY, drafts only with a valid X-GLOBAL-DRAFT-KEY as well, a write only with
#   X-WRITE-API-KEY. The contract is in policies/README.md.
package legacy

# The three old headers, as keygate names them in input.
api_key := "X-API-KEY"

write_key := "X-WRITE-API-KEY"

draft_key := "X-GLOBAL-DRAFT-KEY"

# METADATA
# title: Write methods
# description: The old per-API "HTTP method" settings of a write key and the flag each became.
write_methods := {"POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}

# METADATA
# title: Migration (import mapping)
# description: |
#   The configuration an old key becomes: input {"header", "writeMethods": {"<endpoint>":
#   ["POST", ...]}, "name"?}. An unknown header or method is refused (422) naming it.
# entrypoint: true
default migration := {
	"allow": false,
	"status": 422,
	"code": "invalid_legacy_key",
	"message": "The old key's header must be X-API-KEY, X-WRITE-API-KEY or X-GLOBAL-DRAFT-KEY.",
	"key": null,
}

migration := {"allow": true, "status": 200, "code": "allowed", "message": "", "key": migrated_key} if {
	migrated_defaults
	count(unknown_methods) == 0
} else := {
	"allow": false,
	"status": 422,
	"code": "invalid_legacy_key",
	"message": unknown_methods_message,
	"key": null,
} if {
	migrated_defaults
}

unknown_methods_message := sprintf(
	"Unknown write method(s) %s: an old write key's methods are POST, PUT, PATCH and DELETE.",
	[concat(", ", unknown_methods)],
)

migrated_key := {
	"name": key_name,
	"contentApi": {"default": migrated_defaults, "individual": individual},
	"managementApi": {},
}

# The default permissions of each old key.
migrated_defaults := {"get": true} if {
	input.header == api_key
} else := {"get": true, "getAllDrafts": true} if {
	input.header == draft_key
} else := {} if {
	input.header == write_key
}

key_name := input.name if {
	is_string(input.name)
	input.name != ""
} else := sprintf("Migrated %s", [input.header]) if {
	migrated_defaults
}

default methods := {}

methods := input.writeMethods if is_object(input.writeMethods)

# Only a write key carries per-API write methods: each API with at least one becomes an
# individual entry with exactly those flags (and no get, as the old write key could not read).
default individual := {}

individual := {api: write_flags(list) |
	some api, list in methods
	is_array(list)
	count(list) > 0
} if {
	input.header == write_key
}

write_flags(list) := {write_methods[m]: true | some m in list}

unknown_methods := sort(array.concat(
	[sprintf("%v (%s)", [m, api]) |
		input.header == write_key
		some api, list in methods
		is_array(list)
		some m in list
		not write_methods[m]
	],
	[sprintf("%v (%s: not a list)", [list, api]) |
		input.header == write_key
		some api, list in methods
		not is_array(list)
	],
))

# METADATA
# title: Selection (old headers)
# description: |
#   Which key judges a content API request made with old headers, or why none does: input
#   as content's, without key, plus legacy: {"headers": {"<old header>": {"key": {…}?}},
#   "microcmsKey": bool} (key absent when the value matches no key). On allow, keygate asks
#   data.content.decision with the key of keyHeader, and shows drafts only when drafts is
#   true (an X-API-KEY alone never sees them, whatever flags its key has now).
# entrypoint: true
default selection := {
	"allow": false,
	"status": 401,
	"code": "invalid_api_key",
	"message": "X-MICROCMS-API-KEY header is invalid.",
	"keyHeader": "",
	"drafts": false,
}

selection := {
	"allow": true,
	"status": 200,
	"code": "allowed",
	"message": "",
	"keyHeader": chosen,
	"drafts": chosen == draft_key,
} if {
	not refusal
} else := {
	"allow": false,
	"status": refusal[0],
	"code": refusal[1],
	"message": refusal[2],
	"keyHeader": "",
	"drafts": false,
} if {
	refusal
}

default headers := {}

headers := input.legacy.headers

default is_present(_) := false

is_present(name) if is_object(headers[name])

# The header's key belongs to the (known) service the request is for.
default is_valid(_) := false

is_valid(name) if {
	is_string(input.service.id)
	headers[name].key.service == input.service.id
}

reads := {"GET", "HEAD"}

writes := {"POST", "PUT", "PATCH", "DELETE"}

default method := ""

method := input.request.method if is_string(input.request.method)

# METADATA
# title: Refusal
# scope: document
# description: |
#   Why the old headers are refused before any key is judged, as [status, code, message]:
#   a conflict (with X-MICROCMS-API-KEY, or old keys of different services), then the header
#   the method needs missing or invalid (a read: X-API-KEY, and X-GLOBAL-DRAFT-KEY when sent;
#   a write: X-WRITE-API-KEY).
refusal := [401, "conflicting_api_keys", "X-MICROCMS-API-KEY header is invalid."] if {
	input.legacy.microcmsKey == true
} else := [401, "conflicting_api_keys", "X-MICROCMS-API-KEY header is invalid."] if {
	some a in [api_key, write_key, draft_key]
	some b in [api_key, write_key, draft_key]
	headers[a].key.service != headers[b].key.service
} else := invalid(api_key) if {
	method in reads
	not is_valid(api_key)
} else := invalid(draft_key) if {
	method in reads
	is_present(draft_key)
	not is_valid(draft_key)
} else := invalid(write_key) if {
	method in writes
	not is_valid(write_key)
} else := invalid(api_key) if {
	not method in reads
	not method in writes
	not is_valid(api_key)
	not is_valid(write_key)
}

invalid(name) := [401, "invalid_api_key", sprintf("%s header is invalid.", [name])]

# The header whose key is judged: a read's draft key when it was sent (and is valid), else
# its X-API-KEY; a write's X-WRITE-API-KEY; any other method's X-API-KEY, else its write key
# (the content policy then answers 405).
chosen := draft_key if {
	method in reads
	is_valid(draft_key)
} else := api_key if {
	method in reads
} else := write_key if {
	method in writes
} else := api_key if {
	is_valid(api_key)
} else := write_key
