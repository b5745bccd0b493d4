package network_test

import data.network

settings := {
	"default": ["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"],
	"apis": {"blogs": ["192.0.2.10"], "public": []},
}

# --- the applicable list: default vs per API ---

test_default_v4_cidr_allowed if {
	not network.rejected(settings, "203.0.113.99", "news")
}

test_default_v4_address_allowed if {
	not network.rejected(settings, "198.51.100.7", "news")
}

test_default_v4_other_address_rejected if {
	network.rejected(settings, "198.51.100.8", "news")
}

test_default_v6_cidr_allowed if {
	not network.rejected(settings, "2001:db8:1::5", "news")
}

test_default_v6_other_address_rejected if {
	network.rejected(settings, "2001:db9::1", "news")
}

test_v6_address_entry_allowed if {
	not network.rejected({"default": ["::1"], "apis": {}}, "::1", "news")
}

test_v6_address_entry_other_rejected if {
	network.rejected({"default": ["::1"], "apis": {}}, "::2", "news")
}

test_v4_client_on_v6_list_rejected if {
	network.rejected({"default": ["2001:db8::/32"], "apis": {}}, "203.0.113.1", "news")
}

test_no_path_endpoint_uses_default if {
	network.rejected(settings, "192.0.2.10", "")
	not network.rejected(settings, "203.0.113.1", "")
}

test_api_list_replaces_default_allowed if {
	not network.rejected(settings, "192.0.2.10", "blogs")
}

test_api_list_replaces_default_default_address_rejected if {
	# 203.0.113.1 is on the default list, which blogs' own list replaces.
	network.rejected(settings, "203.0.113.1", "blogs")
}

test_empty_api_list_unrestricted if {
	not network.rejected(settings, "192.0.2.99", "public")
}

test_empty_default_unrestricted if {
	not network.rejected({"default": [], "apis": {}}, "192.0.2.99", "news")
}

test_empty_default_with_api_list_restricts_only_that_api if {
	s := {"default": [], "apis": {"blogs": ["192.0.2.10"]}}
	not network.rejected(s, "192.0.2.99", "news")
	network.rejected(s, "192.0.2.99", "blogs")
}

test_no_setting_unrestricted if {
	not network.rejected({}, null, "blogs")
	not network.rejected(null, null, "blogs")
}

test_missing_client_address_rejected if {
	network.rejected(settings, null, "news")
}

test_malformed_client_address_rejected if {
	every ip in ["", "nope", "203.0.113.0/24", "203.0.113.1:80", 7, "999.1.1.1"] {
		network.rejected(settings, ip, "news")
	}
}

test_malformed_list_rejected if {
	network.rejected({"default": "203.0.113.1"}, "203.0.113.1", "news")
}

test_invalid_stored_entry_never_matches_rejected if {
	network.rejected({"default": ["nope"], "apis": {}}, "203.0.113.1", "news")
}

test_valid_entries_allowed if {
	every e in ["203.0.113.7", "203.0.113.0/24", "0.0.0.0/0", "::1", "2001:db8::/32", "::/0", "::ffff:192.0.2.1"] {
		network.valid_entry(e)
	}
}

test_invalid_entries_refused if {
	every e in ["", "nope", "203.0.113.256", "203.0.113.0/33", "2001:db8::/129"] {
		not network.valid_entry(e)
	}
	every e in [" 203.0.113.7", "203.0.113.7/", "/24", 7, null] {
		not network.valid_entry(e)
	}
}

# --- the admin API decision ---

admin(service) := {"id": concat("-", [service, "admin"]), "service": service, "role": "admin"}

editor := {"id": "business-demo-editor", "service": "business-demo", "role": "editor"}

update(plan, setting) := {
	"action": "update",
	"service": {"id": "business-demo", "plan": plan},
	"member": admin("business-demo"),
	"settings": setting,
}

test_no_member_unauthenticated if {
	d := network.decision with input as object.remove(update("business", settings), ["member"])
	d.allow == false
	d.status == 401
	d.code == "unauthenticated"
}

test_empty_input_unauthenticated if {
	d := network.decision with input as {}
	d.status == 401
	d.violations == []
}

test_editor_forbidden if {
	every action in ["read", "update"] {
		d := network.decision with input as object.union(update("business", settings), {"action": action, "member": editor})
		d.status == 403
		d.code == "forbidden"
	}
}

test_admin_of_other_service_forbidden if {
	d := network.decision with input as object.union(update("business", settings), {"member": admin("team-demo")})
	d.status == 403
	d.code == "forbidden"
}

test_unknown_action_refused if {
	d := network.decision with input as object.union(update("business", settings), {"action": "delete"})
	d.status == 400
	d.code == "unknown_action"
}

test_admin_read_any_plan_allowed if {
	every plan in ["hobby", "team", "business", "advanced", "enterprise"] {
		read := {"action": "read", "service": {"id": "business-demo", "plan": plan}, "member": admin("business-demo")}
		d := network.decision with input as read
		d.allow == true
		d.status == 200
	}
}

test_paid_plans_update_allowed if {
	every plan in ["business", "advanced", "enterprise"] {
		d := network.decision with input as update(plan, settings)
		d.allow == true
		d.violations == []
	}
}

test_hobby_and_team_update_refused_naming_plan if {
	every plan in ["hobby", "team"] {
		d := network.decision with input as update(plan, settings)
		d.allow == false
		d.status == 403
		d.code == "plan_feature_unavailable"
		contains(d.message, sprintf("the %s plan", [plan]))
	}
}

test_hobby_clearing_allowed if {
	d := network.decision with input as update("hobby", {"default": [], "apis": {"blogs": []}})
	d.allow == true
}

test_unknown_plan_update_refused if {
	d := network.decision with input as update("platinum", settings)
	d.status == 403
	d.code == "plan_feature_unavailable"
}

test_invalid_entries_named if {
	s := {"default": ["203.0.113.0/33", "198.51.100.7"], "apis": {"blogs": ["nope"], "news": ["2001:db8::1"]}}
	d := network.decision with input as update("business", s)
	d.allow == false
	d.status == 422
	d.code == "invalid_ip_entry"
	not_an_address := "%s is not an IPv4 or IPv6 address or CIDR (%s)"
	d.violations == [
		{"endpoint": "default", "entry": "203.0.113.0/33", "message": sprintf(not_an_address, ["203.0.113.0/33", "default"])},
		{"endpoint": "blogs", "entry": "nope", "message": sprintf(not_an_address, ["nope", "blogs"])},
	]
	contains(d.message, "203.0.113.0/33")
	contains(d.message, "nope")
}

test_malformed_setting_refused if {
	malformed := [{"default": "x", "apis": {}}, {"default": [], "apis": []}, {"default": [], "apis": {"blogs": "x"}}]
	every s in array.concat([null, {}], malformed) {
		d := network.decision with input as update("business", s)
		d.status == 422
		d.code == "invalid_ip_restrictions"
	}
}

entries(n) := [sprintf("192.0.2.%d", [i]) | some i in numbers.range(1, n)]

test_plan_entry_limits if {
	every plan, most in {"business": 30, "advanced": 100, "enterprise": 100} {
		at := network.decision with input as update(plan, {"default": entries(most), "apis": {"blogs": entries(most)}})
		at.allow == true
		at.limit == most
		over := network.decision with input as update(plan, {"default": [], "apis": {"blogs": entries(most + 1)}})
		over.allow == false
		over.status == 422
		over.code == "ip_entry_limit_exceeded"
		over.limit == most
		want := "The %s plan allows at most %d IP addresses or ranges per API; blogs has %d."
		over.message == sprintf(want, [plan, most, most + 1])
	}
}

test_limit_follows_plan_data if {
	d := network.decision with input as update("business", {"default": entries(3), "apis": {}})
		with data.plans.business as {"maxKeys": 10, "ipRestriction": true, "maxIpEntries": 2}
	d.code == "ip_entry_limit_exceeded"
	d.limit == 2
}

# The default decision only applies if a part of the decision were undefined.
test_undefined_verdict_fallback_denied if {
	d := network.decision with network.verdict as {}
	d.allow == false
	d.status == 403
	d.code == "forbidden"
}

test_restricts_with_a_setting_true if {
	network.restricts with input as {"service": {"id": "s", "ipRestrictions": {"default": ["203.0.113.0/24"]}}}
}

test_restricts_without_a_setting_false if {
	not network.restricts with input as {"service": {"id": "s", "plan": "business"}}
}

test_restricts_with_a_malformed_setting_false if {
	not network.restricts with input as {"service": {"id": "s", "ipRestrictions": ["203.0.113.0/24"]}}
}

test_settings_of_the_request_service_read if {
	setting := {"default": ["203.0.113.0/24"]}
	network.settings == setting with input as {"service": {"ipRestrictions": setting}}
}

test_settings_without_a_setting_empty if {
	network.settings == {} with input as {"service": {"id": "s"}}
}

test_client_ip_read if {
	network.client_ip == "203.0.113.7" with input as {"request": {"clientIp": "203.0.113.7"}}
}

test_client_ip_unknown_null if {
	network.client_ip == null with input as {"request": {"method": "GET"}}
}
