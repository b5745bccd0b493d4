# METADATA
# title: Permissions
# description: |
#   The permission model shared by the decision packages: the flag lists, whether a key
#   belongs to the service asked about, and the effective content permission set (an
#   individual entry replaces the default). content and management call these; keys and
#   advice check key configurations against the same flag lists. Missing flags are false.
package permissions

# METADATA
# title: Content permission flags
# description: The 7 flags of a content permission set, in the order microCMS shows them.
content_flags := ["get", "getAllDrafts", "getAllClosed", "post", "put", "patch", "delete"]

# METADATA
# title: Write flags
# description: Content flags that let a key change contents.
write_flags := {"post", "put", "patch", "delete"}

# METADATA
# title: Flags that need get
# description: |
#   getAllDrafts and getAllClosed: only valid together with get in the same permission set
#   (microCMS: 下書き/公開終了コンテンツの全取得 require GET at the same time).
flags_needing_get := {"getAllDrafts", "getAllClosed"}

# METADATA
# title: Management permission flags
# description: The 9 flags of a management API (beta) permission set.
management_flags := [
	"getContents",
	"patchContentCreatedBy",
	"patchContentStatus",
	"getMedia",
	"postMedia",
	"deleteMedia",
	"getMembers",
	"getApis",
	"getService",
]

# METADATA
# title: Key of service
# description: |
#   True when the key was found and belongs to the (known) service the request is for.
#   A missing key or service, or a key of another service, is not.
is_key_of_service(key, service) if {
	is_string(service.id)
	service.id != ""
	key.service == service.id
}

# METADATA
# title: Effective content permission set
# description: |
#   The permission set that applies to endpoint: its individual entry when the key has one
#   (it replaces the default entirely, even where the default grants more), else the default.
effective_set(content_api, endpoint) := object.get(
	content_api,
	["individual", endpoint],
	object.get(content_api, "default", {}),
) if {
	is_object(content_api)
} else := {}

# METADATA
# title: Has flag
# description: True when flag is set to true (not merely present) in a permission set.
has_flag(perms, flag) if perms[flag] == true

# METADATA
# title: Flags set without get
# description: The flags of perms that need get but are set while get is not.
flags_missing_get(perms) := {flag |
	some flag in flags_needing_get
	has_flag(perms, flag)
	not has_flag(perms, "get")
}
