package keys_test

import data.keys
import data.permissions

admin := {"id": "team-demo-admin", "service": "team-demo", "role": "admin"}

editor := {"id": "team-demo-editor", "service": "team-demo", "role": "editor"}

service(plan, key_count) := {"id": "team-demo", "plan": plan, "keyCount": key_count}

read_only := {"name": "web", "contentApi": {"default": {"get": true}}}

call(action, plan, key_count, key) := {
	"action": action,
	"service": service(plan, key_count),
	"member": admin,
	"key": key,
}

# Replaces top-level fields of a call (object.union would merge nested objects instead).
with_field(base, field, value) := object.union(object.remove(base, [field]), {field: value})

# --- who may manage keys ---

test_no_member_unauthenticated if {
	d := keys.decision with input as {"action": "list", "service": service("team", 1)}
	d.allow == false
	d.status == 401
	d.code == "unauthenticated"
	d.violations == []
	d.warnings == []
}

# keygate validates seed keys from data/keys.json this way: a create with no member is
# refused (401), but the violations of its configuration are still reported.
test_create_without_member_reports_violations if {
	k := {"name": "seed", "contentApi": {"default": {"get": true}, "individual": {"blogs": {"getAllClosed": true}}}}
	d := keys.decision with input as {"action": "create", "service": service("team", 0), "key": k}
	d.allow == false
	d.status == 401
	d.violations == [{"endpoint": "blogs", "flag": "getAllClosed", "message": "getAllClosed requires get"}]
}

# keygate asks the violations rule on its own for seed keys: it must be exactly what the
# decision reports, whoever asks and whatever the verdict.
test_violations_rule_is_the_decision_violations_equal if {
	bad := {"name": "seed", "contentApi": {
		"default": {"getAllDrafts": true},
		"individual": {"blogs": {"getAllClosed": true}, "news": {"get": true}},
	}}
	every inp in [
		{"action": "create", "service": service("team", 0), "key": bad},
		{"action": "update", "service": service("team", 0), "member": admin, "key": bad},
		{"action": "create", "service": service("team", 3), "member": admin, "key": read_only},
		{"action": "create", "service": service("team", 0), "member": admin, "key": read_only},
		{"action": "read", "service": service("team", 0), "member": admin, "key": bad},
		{"action": "create", "service": service("team", 0)},
		{},
	] {
		d := keys.decision with input as inp
		v := keys.violations with input as inp
		d.violations == v
	}
}

# The rule a seeding asks: a create without a member gets the configuration's violations,
# default first.
test_violations_rule_create_without_member_reported if {
	k := {"contentApi": {"default": {"getAllDrafts": true}, "individual": {"blogs": {"getAllClosed": true}}}}
	v := keys.violations with input as {"action": "create", "service": service("team", 0), "key": k}
	v == [
		{"endpoint": "default", "flag": "getAllDrafts", "message": "getAllDrafts requires get"},
		{"endpoint": "blogs", "flag": "getAllClosed", "message": "getAllClosed requires get"},
	]
}

test_empty_input_unauthenticated if {
	d := keys.decision with input as {}
	d.allow == false
	d.status == 401
}

test_editor_forbidden if {
	every action in ["create", "read", "list", "update", "rotate", "delete"] {
		d := keys.decision with input as with_field(call(action, "team", 1, read_only), "member", editor)
		d.allow == false
		d.status == 403
		d.code == "forbidden"
	}
}

test_admin_of_other_service_forbidden if {
	other := {"id": "hobby-demo-admin", "service": "hobby-demo", "role": "admin"}
	d := keys.decision with input as with_field(call("list", "team", 1, read_only), "member", other)
	d.status == 403
}

test_member_without_role_forbidden if {
	no_role := {"id": "x", "service": "team-demo"}
	d := keys.decision with input as with_field(call("read", "team", 1, read_only), "member", no_role)
	d.status == 403
}

test_missing_service_forbidden if {
	d := keys.decision with input as {"action": "list", "member": admin}
	d.status == 403
}

test_admin_reads_lists_rotates_deletes_allowed if {
	every action in ["read", "list", "rotate", "delete"] {
		d := keys.decision with input as {"action": action, "service": service("team", 1), "member": admin}
		d.allow == true
		d.status == 200
		d.code == "allowed"
		d.warnings == []
		d.violations == []
	}
}

test_unknown_action_refused if {
	every action in ["", "purge", "CREATE"] {
		d := keys.decision with input as call(action, "team", 0, read_only)
		d.allow == false
		d.status == 400
		d.code == "unknown_action"
	}
}

test_missing_action_refused if {
	d := keys.decision with input as object.remove(call("create", "team", 0, read_only), ["action"])
	d.allow == false
	d.code == "unknown_action"
}

# --- plan limits: each plan at and over its limit ---

test_each_plan_below_limit_create_allowed if {
	every plan, max_keys in {"hobby": 1, "team": 3, "business": 10, "advanced": 20, "enterprise": 20} {
		d := keys.decision with input as call("create", plan, max_keys - 1, read_only)
		d.allow == true
		d.status == 200
		d.limit == max_keys
	}
}

test_each_plan_at_limit_create_refused if {
	every plan, max_keys in {"hobby": 1, "team": 3, "business": 10, "advanced": 20, "enterprise": 20} {
		d := keys.decision with input as call("create", plan, max_keys, read_only)
		d.allow == false
		d.status == 409
		d.code == "key_limit_exceeded"
		d.limit == max_keys
		d.message == sprintf("The %s plan's API key limit is %d; this service has reached it.", [plan, max_keys])
	}
}

test_each_plan_over_limit_create_refused if {
	every plan, max_keys in {"hobby": 1, "team": 3, "business": 10, "advanced": 20, "enterprise": 20} {
		d := keys.decision with input as call("create", plan, max_keys + 1, read_only)
		d.status == 409
	}
}

test_hobby_second_key_refused if {
	d := keys.decision with input as call("create", "hobby", 1, read_only)
	d.status == 409
	d.message == "The hobby plan's API key limit is 1; this service has reached it."
}

# A business service downgraded to hobby with 5 keys: its keys keep working, no new one.
test_downgraded_service_create_refused if {
	d := keys.decision with input as call("create", "hobby", 5, read_only)
	d.status == 409
	d.limit == 1
}

test_downgraded_service_keeps_managing_keys_allowed if {
	every action in ["read", "list", "update", "rotate", "delete"] {
		d := keys.decision with input as call(action, "hobby", 5, read_only)
		d.allow == true
	}
}

test_unknown_plan_create_refused if {
	d := keys.decision with input as call("create", "platinum", 0, read_only)
	d.status == 409
	d.limit == 0
	d.message == "Unknown plan \"platinum\": no API key can be created."
}

test_missing_key_count_create_refused if {
	no_count := {"id": "team-demo", "plan": "team"}
	d := keys.decision with input as with_field(call("create", "team", 0, read_only), "service", no_count)
	d.status == 409
}

test_non_number_key_count_create_refused if {
	d := keys.decision with input as call("create", "team", "0", read_only)
	d.status == 409
}

test_plan_limit_read_from_data if {
	d := keys.decision with input as call("create", "team", 3, read_only)
		with data.plans.team as {"maxKeys": 5, "statusParameter": true}
	d.allow == true
	d.limit == 5
}

test_limit_reported_on_every_decision if {
	d := keys.decision with input as {"action": "list", "service": service("business", 2), "member": admin}
	d.limit == 10
}

# --- key configuration: getAll* x with/without get, default and individual ---

test_default_get_all_drafts_without_get_invalid if {
	k := {"name": "w", "contentApi": {"default": {"getAllDrafts": true}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.allow == false
	d.status == 422
	d.code == "invalid_key_config"
	d.message == "getAllDrafts requires get (default)"
	d.violations == [{"endpoint": "default", "flag": "getAllDrafts", "message": "getAllDrafts requires get"}]
	d.warnings == []
}

test_default_get_all_drafts_with_get_allowed if {
	k := {"name": "w", "contentApi": {"default": {"get": true, "getAllDrafts": true}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.allow == true
	d.violations == []
}

test_default_get_all_closed_without_get_invalid if {
	k := {"name": "w", "contentApi": {"default": {"getAllClosed": true}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.status == 422
	d.violations == [{"endpoint": "default", "flag": "getAllClosed", "message": "getAllClosed requires get"}]
}

test_default_get_all_closed_with_get_allowed if {
	k := {"name": "w", "contentApi": {"default": {"get": true, "getAllClosed": true}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.allow == true
}

test_individual_get_all_drafts_without_get_invalid if {
	k := {"name": "w", "contentApi": {"default": {"get": true}, "individual": {"blogs": {"getAllDrafts": true}}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.status == 422
	d.message == "getAllDrafts requires get (blogs)"
	d.violations == [{"endpoint": "blogs", "flag": "getAllDrafts", "message": "getAllDrafts requires get"}]
}

test_individual_get_all_drafts_with_get_allowed if {
	k := {"name": "w", "contentApi": {"individual": {"blogs": {"get": true, "getAllDrafts": true}}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.allow == true
}

test_individual_get_all_closed_without_get_invalid if {
	k := {"name": "w", "contentApi": {"individual": {"news": {"getAllClosed": true}}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.status == 422
	d.violations == [{"endpoint": "news", "flag": "getAllClosed", "message": "getAllClosed requires get"}]
}

test_individual_get_all_closed_with_get_allowed if {
	k := {"name": "w", "contentApi": {"individual": {"news": {"get": true, "getAllClosed": true}}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.allow == true
}

test_all_violations_listed_default_first if {
	k := {"name": "w", "contentApi": {
		"default": {"getAllDrafts": true, "getAllClosed": true},
		"individual": {"news": {"getAllClosed": true}, "blogs": {"getAllDrafts": true, "get": false}},
	}}
	d := keys.decision with input as call("update", "team", 3, k)
	d.status == 422
	[v.endpoint | some v in d.violations] == ["default", "default", "blogs", "news"]
	d.message == concat("; ", [
		"getAllClosed requires get (default)",
		"getAllDrafts requires get (default)",
		"getAllDrafts requires get (blogs)",
		"getAllClosed requires get (news)",
	])
}

test_update_with_invalid_config_refused if {
	k := {"name": "w", "contentApi": {"default": {"getAllDrafts": true}}}
	d := keys.decision with input as call("update", "team", 1, k)
	d.status == 422
}

test_rotate_ignores_key_config_allowed if {
	k := {"name": "w", "contentApi": {"default": {"getAllDrafts": true}}}
	d := keys.decision with input as call("rotate", "team", 1, k)
	d.allow == true
	d.violations == []
}

test_limit_checked_before_config if {
	k := {"name": "w", "contentApi": {"default": {"getAllDrafts": true}}}
	d := keys.decision with input as call("create", "hobby", 1, k)
	d.status == 409
}

test_missing_key_config_create_refused if {
	d := keys.decision with input as object.remove(call("create", "team", 0, {}), ["key"])
	d.allow == false
	d.status == 422
	d.code == "invalid_key_config"
	d.message == "The key configuration is missing."
}

test_missing_key_config_update_refused if {
	d := keys.decision with input as with_field(call("update", "team", 1, {}), "key", null)
	d.status == 422
}

# --- warnings ---

test_create_carries_warnings if {
	k := {"name": "w", "contentApi": {"default": {"get": true, "post": true}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.allow == true
	[w.code | some w in d.warnings] == ["default_write"]
}

test_update_carries_warnings if {
	d := keys.decision with input as call("update", "team", 1, {"name": "empty"})
	d.allow == true
	[w.code | some w in d.warnings] == ["grants_nothing"]
}

test_create_unlisted_api_warned if {
	k := {"name": "w", "contentApi": {"default": {"get": true}, "individual": {"blog": {"get": true}}}}
	c := call("create", "team", 0, k)
	d := keys.decision with input as object.union(c, {"service": {"apis": ["blogs", "news"]}})
	d.allow == true
	[[w.code, w.endpoint] | some w in d.warnings] == [["unlisted_api", "blog"]]
}

test_create_without_service_apis_unlisted_not_warned if {
	k := {"name": "w", "contentApi": {"default": {"get": true}, "individual": {"blog": {"get": true}}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.warnings == []
}

test_read_carries_no_warnings if {
	d := keys.decision with input as call("read", "team", 1, {"name": "empty"})
	d.warnings == []
}

test_refused_create_carries_no_warnings if {
	k := {"name": "w", "contentApi": {"default": {"post": true, "getAllDrafts": true}}}
	d := keys.decision with input as call("create", "team", 0, k)
	d.allow == false
	d.warnings == []
}

test_undefined_verdict_default_denied if {
	d := keys.decision with keys.verdict as {}
	d == {
		"allow": false,
		"status": 403,
		"code": "forbidden",
		"message": "Forbidden",
		"violations": [],
		"warnings": [],
		"limit": 0,
	}
}

test_non_numeric_max_keys_create_refused if {
	d := keys.decision with input as call("create", "team", 0, read_only)
		with data.plans.team as {"maxKeys": "3", "statusParameter": true}
	d.status == 409
	d.limit == 0
}

test_odd_content_api_type_no_violations if {
	d := keys.decision with input as call("create", "team", 0, {"name": "w", "contentApi": "all"})
	d.allow == true
	d.violations == []
}

# In a set, violations come in the order of permissions.flags_missing_get (by flag name), in
# the default and in an individual entry alike.
test_violation_flags_follow_permissions_flags_missing_get if {
	both := {"getAllDrafts": true, "getAllClosed": true}
	want := [flag | some flag in permissions.flags_missing_get(both)]
	count(want) == 2
	k := {"name": "w", "contentApi": {"default": both, "individual": {"blogs": both}}}
	d := keys.decision with input as call("update", "team", 1, k)
	d.status == 422
	[v.flag | some v in d.violations; v.endpoint == "default"] == want
	[v.flag | some v in d.violations; v.endpoint == "blogs"] == want
}

# The admin check and the key limit read input directly: a member of the service with another
# role, a service without an id, or a keyCount that is not a number never passes.
test_odd_member_service_or_count_refused if {
	read := call("read", "team", 1, null)
	d1 := keys.decision with input as with_field(read, "member", {"id": "x", "service": "team-demo"})
	d1.status == 403
	d2 := keys.decision with input as with_field(read, "service", {"plan": "team", "keyCount": 1})
	d2.status == 403
	d3 := keys.decision with input as call("create", "team", "1", read_only)
	d3.status == 409
	d4 := keys.decision with input as call("create", "team", null, read_only)
	d4.status == 409
}

test_admin_audit_allowed if {
	d := keys.decision with input as {"action": "audit", "service": service("team", 3), "member": admin}
	d.allow == true
	d.status == 200
	d.code == "allowed"
}

test_audit_at_unknown_plan_allowed if {
	d := keys.decision with input as {"action": "audit", "service": service("nosuchplan", 0), "member": admin}
	d.allow == true
}

test_audit_editor_forbidden if {
	d := keys.decision with input as {"action": "audit", "service": service("team", 1), "member": editor}
	d.allow == false
	d.status == 403
	d.code == "forbidden"
}

test_audit_other_service_admin_forbidden if {
	other := {"id": "hobby-demo-admin", "service": "hobby-demo", "role": "admin"}
	d := keys.decision with input as {"action": "audit", "service": service("team", 1), "member": other}
	d.allow == false
	d.status == 403
}

test_audit_unauthenticated if {
	d := keys.decision with input as {"action": "audit", "service": service("team", 1)}
	d.allow == false
	d.status == 401
	d.code == "unauthenticated"
}
