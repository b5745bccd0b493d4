# METADATA
# title: Management API
# description: |
#   Decides every management API (beta) request ({service}.microcms-management.io): each
#   known route needs one of the 9 management permissions of the key; an unknown route, or a
#   missing permission, is 403 Forbidden. The contract is in policies/README.md.
package management

import data.network
import data.permissions

# METADATA
# title: Decision
# description: |
#   The answer to one management API request, always an object (see policies/README.md):
#   allowed when every check passes, else denied with the first failed check (reason).
#   The default only applies if a part of the decision is undefined: it denies.
# entrypoint: true
default decision := {
	"allow": false,
	"status": 403,
	"code": "forbidden",
	"message": "Forbidden",
	"permission": "",
	"endpoint": "",
}

decision := {
	"allow": true,
	"status": 200,
	"code": "allowed",
	"message": "",
	"permission": permission,
	"endpoint": endpoint,
} if {
	allow
} else := {
	"allow": false,
	"status": status,
	"code": code,
	"message": message,
	"permission": permission,
	"endpoint": endpoint,
} if {
	[status, code, message] := reason
}

# METADATA
# title: Allow
# scope: document
# description: The key belongs to the service, and has the permission of a known route.
default allow := false

allow if {
	is_key_of_service
	not ip_rejected
	granted
}

# METADATA
# title: Reason
# scope: document
# description: Why a request is denied, as [status, code, message], in the contract's order.
reason := [401, "invalid_api_key", "X-MICROCMS-API-KEY header is invalid."] if {
	not is_key_of_service
} else := network.rejection if {
	ip_rejected
} else := [403, "forbidden", "Forbidden"] if {
	not granted
}

# METADATA
# title: Key of service
# scope: document
# description: The key was found and belongs to the (known) service the request is for.
default is_key_of_service := false

is_key_of_service if permissions.is_key_of_service(input.key, input.service)

# METADATA
# title: IP restriction (after the key check, data.network)
# scope: document
# description: |
#   The service restricts this API (a contents route's endpoint, else the default list) to
#   listed addresses, and the client's is not one of them or is unknown.
default ip_rejected := false

ip_rejected if {
	network.restricts
	network.rejected(network.settings, network.client_ip, endpoint)
}

# METADATA
# title: Routes
# scope: document
# description: |
#   The routes of the management API (policies/README.md): method -> path pattern ->
#   permission. Only these exist: HEAD, OPTIONS and any other method or path is an unknown
#   route.
routes := {
	"GET": {
		"/api/v1/contents/{endpoint}": "getContents",
		"/api/v1/contents/{endpoint}/{id}": "getContents",
		"/api/v1/media": "getMedia",
		"/api/v2/media": "getMedia",
		"/api/v1/members": "getMembers",
		"/api/v1/members/{id}": "getMembers",
		"/api/v1/apis": "getApis",
		"/api/v1/apis/{endpoint}": "getApis",
		"/api/v1/service": "getService",
	},
	"PATCH": {
		"/api/v1/contents/{endpoint}/{id}/createdBy": "patchContentCreatedBy",
		"/api/v1/contents/{endpoint}/{id}/status": "patchContentStatus",
	},
	"POST": {"/api/v1/media": "postMedia"},
	"DELETE": {"/api/v2/media": "deleteMedia"},
}

# METADATA
# title: Route permission
# scope: document
# description: |
#   The permission the request's route needs, "" for an unknown route (which no key has).
#   keygate's server parses the path into input.request.route: its pattern, with the
#   variable segments named as the routes table names them ({endpoint}, {id}), and the
#   endpoint ("" where the pattern has none). A path outside the grammar has no route
#   (policies/README.md, "Path segments"): an unknown route.
default permission := ""

permission := routes[input.request.method][input.request.route.pattern]

# The route's endpoint, "" on an unknown route.
default endpoint := ""

endpoint := input.request.route.endpoint if permission != ""

# METADATA
# title: Granted
# scope: document
# description: The key has the route's permission (a flag exactly true).
default granted := false

granted if input.key.managementApi[permission] == true
