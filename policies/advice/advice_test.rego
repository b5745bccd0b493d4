package advice_test

import data.advice
import data.permissions

codes(key) := [w.code | some w in advice.warnings(key)]

test_get_only_default_no_warnings if {
	advice.warnings({"contentApi": {"default": {"get": true}}}) == []
}

test_default_write_flags_warned if {
	every flag in ["post", "put", "patch", "delete"] {
		ws := advice.warnings({"contentApi": {"default": {"get": true, flag: true}}})
		count(ws) == 1
		ws[0].code == "default_write"
		ws[0].endpoint == "default"
		ws[0].flag == flag
		contains(ws[0].message, "Every API is writable")
	}
}

test_default_drafts_warned if {
	ws := advice.warnings({"contentApi": {"default": {"get": true, "getAllDrafts": true}}})
	ws == [{
		"code": "default_drafts",
		"endpoint": "default",
		"flag": "getAllDrafts",
		"message": "Every API's drafts are readable with this key: if it leaks, unpublished contents leak.",
	}]
}

test_default_closed_warned if {
	ws := advice.warnings({"contentApi": {"default": {"get": true, "getAllClosed": true}}})
	[w.code | some w in ws] == ["default_closed"]
	ws[0].flag == "getAllClosed"
}

test_individual_write_warned if {
	ws := advice.warnings({"contentApi": {"default": {"get": true}, "individual": {"contact": {"post": true}}}})
	ws == [{
		"code": "individual_write",
		"endpoint": "contact",
		"flag": "post",
		"message": "The API \"contact\" is writable with this key (post): keep it server-side, never in a browser or an app.",
	}]
}

test_individual_read_not_warned if {
	advice.warnings({"contentApi": {"individual": {"blogs": {"get": true, "getAllDrafts": true}}}}) == []
}

test_each_management_permission_warned if {
	every flag in [
		"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia", "postMedia",
		"deleteMedia", "getMembers", "getApis", "getService",
	] {
		ws := advice.warnings({"managementApi": {flag: true}})
		count(ws) == 1
		ws[0].code == "management_permission"
		ws[0].flag == flag
		not ws[0].endpoint
	}
}

test_management_false_flags_not_warned if {
	codes({"contentApi": {"default": {"get": true}}, "managementApi": {"getMedia": false}}) == []
}

test_empty_key_grants_nothing if {
	codes({}) == ["grants_nothing"]
	codes({"name": "x"}) == ["grants_nothing"]
}

test_all_false_key_grants_nothing if {
	key := {
		"contentApi": {
			"default": {"get": false, "post": false},
			"individual": {"blogs": {"get": false}},
		},
		"managementApi": {"getMedia": false},
	}
	codes(key) == ["grants_nothing"]
}

test_individual_only_grant_not_nothing if {
	codes({"contentApi": {"default": {}, "individual": {"blogs": {"get": true}}}}) == []
}

test_management_only_grant_not_nothing if {
	codes({"managementApi": {"getApis": true}}) == ["management_permission"]
}

test_warnings_ordered_default_individual_management if {
	key := {
		"contentApi": {
			"default": {"get": true, "getAllDrafts": true, "delete": true},
			"individual": {"news": {"put": true}, "contact": {"post": true, "patch": true}},
		},
		"managementApi": {"getMedia": true},
	}
	[[w.code, object.get(w, "endpoint", ""), w.flag] | some w in advice.warnings(key)] == [
		["default_drafts", "default", "getAllDrafts"],
		["default_write", "default", "delete"],
		["individual_write", "contact", "post"],
		["individual_write", "contact", "patch"],
		["individual_write", "news", "put"],
		["management_permission", "", "getMedia"],
	]
}

# The seed's first use case: one warning, for the write individual permission to keep server-side.
test_seed_use_case_1_warns_only_individual_write if {
	key := {"contentApi": {"default": {"get": true}, "individual": {"contact": {"post": true}}}}
	codes(key) == ["individual_write"]
}

# The seed's second use case: a key meant to be embedded in clients, with nothing to warn about.
test_seed_use_case_2_no_warnings if {
	key := {"contentApi": {
		"default": {"get": false, "post": false},
		"individual": {"blogs": {"get": true}, "news": {"get": true}},
	}}
	advice.warnings(key) == []
}

# Warnings come in the order of the permissions library's flag lists (default: every content
# flag but get; individual: the write flags; management: every management flag).
test_warnings_follow_permissions_flag_order if {
	all_content := {flag: true | some flag in permissions.content_flags}
	all_management := {flag: true | some flag in permissions.management_flags}
	ws := advice.warnings({
		"contentApi": {"default": all_content, "individual": {"blogs": all_content}},
		"managementApi": all_management,
	})
	[w.flag | some w in ws; w.endpoint == "default"] == [flag | some flag in permissions.content_flags; flag != "get"]
	[w.flag | some w in ws; w.endpoint == "blogs"] == [flag |
		some flag in permissions.content_flags
		flag in permissions.write_flags
	]
	[w.flag | some w in ws; w.code == "management_permission"] == permissions.management_flags
}

# Odd shapes of a key (not an object, parts of the wrong type) grant nothing and never raise.
test_odd_key_shapes_grant_nothing if {
	every key in [
		null, "x", 1, [1], {"contentApi": "x"}, {"contentApi": [{"post": true}]},
		{"contentApi": {"default": "x", "individual": "x"}}, {"contentApi": {"individual": {"blogs": "post"}}},
		{"managementApi": "getMedia"}, {"managementApi": null},
	] {
		codes(key) == ["grants_nothing"]
	}
}

test_unlisted_api_warned if {
	k := {"contentApi": {"individual": {"blog": {"get": true}, "news": {"get": true}}}}
	ws := advice.unlisted_apis(k, ["blogs", "news"])
	[[w.code, w.endpoint] | some w in ws] == [["unlisted_api", "blog"]]
	startswith(ws[0].message, `The service lists no API "blog": check the endpoint;`)
}

test_listed_apis_not_warned if {
	k := {"contentApi": {"individual": {"blogs": {"get": true}}}}
	advice.unlisted_apis(k, ["blogs", "news"]) == []
}

test_unlisted_api_without_list_not_warned if {
	k := {"contentApi": {"individual": {"blog": {"get": true}}}}
	every apis in [null, "blogs", {"blogs": true}] {
		advice.unlisted_apis(k, apis) == []
	}
}

test_unlisted_api_empty_list_warned if {
	k := {"contentApi": {"individual": {"blogs": {"get": true}}}}
	[w.endpoint | some w in advice.unlisted_apis(k, [])] == ["blogs"]
}
