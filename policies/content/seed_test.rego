package content_test

import data.content

# The seed's three use cases, as microCMS's API-key page describes them.

# 1. Safer write keys: GET only in the default permissions; a write individual permission
#    only on the contact API that receives posts (a key kept server-side).
use_case_1 := key_with({
	"default": {"get": true},
	"individual": {"contact": {"post": true}},
})

test_use_case_1_get_blogs_allowed if {
	d := content.decision with input as on(use_case_1, "GET", "/api/v1/blogs")
	d.allow == true
}

test_use_case_1_post_blogs_forbidden if {
	d := content.decision with input as on(use_case_1, "POST", "/api/v1/blogs")
	d.allow == false
	d.message == "POST is forbidden."
}

test_use_case_1_post_contact_allowed if {
	d := content.decision with input as on(use_case_1, "POST", "/api/v1/contact")
	d.allow == true
}

# The individual entry replaces the default: contact was given POST only.
test_use_case_1_get_contact_forbidden if {
	d := content.decision with input as on(use_case_1, "GET", "/api/v1/contact")
	d.allow == false
}

test_use_case_1_delete_contact_forbidden if {
	d := content.decision with input as on(use_case_1, "DELETE", "/api/v1/contact/abc")
	d.allow == false
}

# 2. Public and private contents: every default false, GET only as individual permissions
#    on the public APIs, no entry for the private API: the key can ship in a client.
use_case_2 := key_with({
	"default": {
		"get": false, "getAllDrafts": false, "getAllClosed": false,
		"post": false, "put": false, "patch": false, "delete": false,
	},
	"individual": {"blogs": {"get": true}, "news": {"get": true}},
})

test_use_case_2_public_apis_get_allowed if {
	every endpoint in ["blogs", "news"] {
		d := content.decision with input as on(use_case_2, "GET", concat("/", ["/api/v1", endpoint]))
		d.allow == true
		d.visibility.drafts == false
	}
}

test_use_case_2_private_api_get_forbidden if {
	d := content.decision with input as on(use_case_2, "GET", "/api/v1/internal")
	d.allow == false
	d.status == 400
}

test_use_case_2_public_api_post_forbidden if {
	d := content.decision with input as on(use_case_2, "POST", "/api/v1/blogs")
	d.allow == false
}

# 3. Multi-device: keys for the website, iOS and Android with the same permissions decide alike.
test_use_case_3_same_permissions_same_decisions if {
	api := {"default": {"get": true}, "individual": {"contact": {"post": true}}}
	web := {"id": "key_web", "service": "team-demo", "name": "Website", "contentApi": api}
	ios := {"id": "key_ios", "service": "team-demo", "name": "iOS", "contentApi": api}
	android := {"id": "key_android", "service": "team-demo", "name": "Android", "contentApi": api}
	every req in [["GET", "/api/v1/blogs"], ["POST", "/api/v1/contact"], ["POST", "/api/v1/blogs"]] {
		by_web := content.decision with input as on(web, req[0], req[1])
		by_ios := content.decision with input as on(ios, req[0], req[1])
		by_android := content.decision with input as on(android, req[0], req[1])
		by_web == by_ios
		by_ios == by_android
	}
}

test_use_case_3_each_device_key_allowed if {
	every name in ["Website", "iOS", "Android"] {
		k := object.union(use_case_1, {"id": concat("_", ["key", name]), "name": name})
		d := content.decision with input as on(k, "GET", "/api/v1/blogs")
		d.allow == true
	}
}
