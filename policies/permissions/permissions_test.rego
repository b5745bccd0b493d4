package permissions_test

import data.permissions

override_example := {
	"default": {"get": true},
	"individual": {"blogs": {"post": true, "put": true}},
}

test_effective_set_individual_replaces_default if {
	permissions.effective_set(override_example, "blogs") == {"post": true, "put": true}
}

test_effective_set_without_entry_uses_default if {
	permissions.effective_set(override_example, "news") == {"get": true}
}

test_effective_set_without_default_grants_nothing if {
	permissions.effective_set({"individual": {"blogs": {"get": true}}}, "news") == {}
}

test_effective_set_empty_individual_entry_grants_nothing if {
	permissions.effective_set({"default": {"get": true}, "individual": {"blogs": {}}}, "blogs") == {}
}

test_has_flag_true_granted if {
	permissions.has_flag({"get": true}, "get")
}

test_has_flag_false_or_missing_denied if {
	not permissions.has_flag({"get": false}, "get")
	not permissions.has_flag({}, "get")
	not permissions.has_flag({"get": "true"}, "get")
	not permissions.has_flag({"get": 1}, "get")
	not permissions.has_flag(null, "get")
}

test_flags_missing_get_without_get_reported if {
	permissions.flags_missing_get({"getAllDrafts": true, "getAllClosed": true}) == {"getAllDrafts", "getAllClosed"}
}

test_flags_missing_get_with_get_empty if {
	permissions.flags_missing_get({"get": true, "getAllDrafts": true, "getAllClosed": true}) == set()
	permissions.flags_missing_get({"post": true}) == set()
}

test_key_of_same_service_authenticated if {
	permissions.is_key_of_service({"service": "team-demo"}, {"id": "team-demo"})
}

test_key_of_other_service_unauthenticated if {
	not permissions.is_key_of_service({"service": "hobby-demo"}, {"id": "team-demo"})
}

test_key_or_service_missing_unauthenticated if {
	not permissions.is_key_of_service({}, {"id": "team-demo"})
	not permissions.is_key_of_service({"service": ""}, {"id": ""})
	not permissions.is_key_of_service({"service": "team-demo"}, {})
}

test_flag_lists_complete if {
	count(permissions.content_flags) == 7
	count(permissions.management_flags) == 9
	permissions.write_flags == {"post", "put", "patch", "delete"}
}

test_effective_set_odd_content_api_grants_nothing if {
	permissions.effective_set("text", "blogs") == {}
	permissions.effective_set({"default": {"get": true}, "individual": "text"}, "blogs") == {"get": true}
}
