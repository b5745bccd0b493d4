package content_test

import data.content

# --- drafts and closed: getAll* x with/without get, default and individual ---

test_default_get_all_drafts_with_get_shows_drafts if {
	k := key_with({"default": {"get": true, "getAllDrafts": true}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.allow == true
	d.visibility == {"published": true, "drafts": true, "closed": false, "draftKey": false, "filterOn": "published"}
}

test_default_get_all_drafts_without_get_forbidden if {
	k := key_with({"default": {"getAllDrafts": true}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.allow == false
	d.status == 400
	d.visibility.drafts == false
}

test_default_get_all_closed_with_get_shows_closed if {
	k := key_with({"default": {"get": true, "getAllClosed": true}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.allow == true
	d.visibility == {"published": true, "drafts": false, "closed": true, "draftKey": false, "filterOn": "published"}
}

test_default_get_all_closed_without_get_forbidden if {
	k := key_with({"default": {"getAllClosed": true}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.allow == false
	d.visibility.closed == false
}

test_individual_get_all_drafts_with_get_shows_drafts if {
	k := key_with({"default": {}, "individual": {"blogs": {"get": true, "getAllDrafts": true}}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.visibility.drafts == true
}

# The default's get does not help: the individual entry replaces the default entirely.
test_individual_get_all_drafts_without_get_forbidden if {
	k := key_with({"default": {"get": true}, "individual": {"blogs": {"getAllDrafts": true}}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.allow == false
	d.status == 400
	d.visibility.drafts == false
}

test_individual_get_all_closed_with_get_shows_closed if {
	k := key_with({"default": {}, "individual": {"blogs": {"get": true, "getAllClosed": true}}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.visibility.closed == true
}

test_individual_get_all_closed_without_get_forbidden if {
	k := key_with({"default": {"get": true}, "individual": {"blogs": {"getAllClosed": true}}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.allow == false
	d.visibility.closed == false
}

test_default_get_all_drafts_not_applied_under_individual_entry_hidden if {
	k := key_with({"default": {"get": true, "getAllDrafts": true}, "individual": {"blogs": {"get": true}}})
	d := content.decision with input as on(k, "GET", "/api/v1/blogs")
	d.allow == true
	d.visibility.drafts == false
}

# Defence in depth: whatever the flags (getAll* with or without get, with writes), for every
# method and with a draftKey on a single content, only an allowed GET/HEAD whose effective set
# has get shows anything, and then exactly its getAll* flags; a deny or a write shows nothing.
test_drafts_without_get_never_visible if {
	flag_sets := [
		{},
		{"getAllDrafts": true},
		{"getAllClosed": true},
		{"getAllDrafts": true, "getAllClosed": true, "post": true, "put": true, "patch": true, "delete": true},
		{"get": true},
		{"get": true, "getAllDrafts": true},
		{"get": true, "getAllClosed": true},
		{"get": true, "getAllDrafts": true, "getAllClosed": true, "post": true},
		{"get": "true", "getAllDrafts": true, "getAllClosed": true},
	]
	every flags in flag_sets {
		every method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
			d := content.decision with input as {
				"service": service,
				"key": key_with({"default": {}, "individual": {"blogs": flags}}),
				"request": request_with_query(method, "/api/v1/blogs/abc", {"draftKey": "k"}),
			}
			is_visibility_as_granted(d, flags, method)
		}
	}
}

is_visibility_as_granted(d, _, _) if {
	d.allow == false
	d.visibility == hidden
}

is_visibility_as_granted(d, _, method) if {
	not method in {"GET", "HEAD"}
	d.allow == true
	d.visibility == hidden
}

is_visibility_as_granted(d, flags, method) if {
	method in {"GET", "HEAD"}
	d.allow == true
	flags.get == true
	d.visibility == {
		"published": true,
		"drafts": object.get(flags, "getAllDrafts", false),
		"closed": object.get(flags, "getAllClosed", false),
		"draftKey": true,
		"filterOn": "published",
	}
}

test_get_only_shows_published_only if {
	d := content.decision with input as on(read_only, "GET", "/api/v1/blogs")
	d.visibility == {"published": true, "drafts": false, "closed": false, "draftKey": false, "filterOn": "published"}
}

test_filter_on_published_with_get_all_drafts if {
	k := key_with({"default": {"get": true, "getAllDrafts": true, "getAllClosed": true}})
	d := content.decision with input as {
		"service": service,
		"key": k,
		"request": request_with_query("GET", "/api/v1/blogs", {"filters": "title[equals]x"}),
	}
	d.visibility.filterOn == "published"
	d.visibility.drafts == true
	d.visibility.closed == true
}

test_write_allowed_carries_no_visibility if {
	k := key_with({"default": {"get": true, "getAllDrafts": true, "post": true}})
	d := content.decision with input as on(k, "POST", "/api/v1/blogs")
	d.allow == true
	d.visibility == hidden
}

# --- draftKey ---

test_draft_key_single_fetch_with_get_allowed if {
	d := content.decision with input as {
		"service": service,
		"key": read_only,
		"request": request_with_query("GET", "/api/v1/blogs/abc", {"draftKey": "k1"}),
	}
	d.allow == true
	d.visibility.draftKey == true
	d.visibility.drafts == false
}

test_draft_key_head_single_fetch_allowed if {
	d := content.decision with input as {
		"service": service,
		"key": read_only,
		"request": request_with_query("HEAD", "/api/v1/blogs/abc", {"draftKey": "k1"}),
	}
	d.visibility.draftKey == true
}

test_draft_key_on_list_not_granted if {
	d := content.decision with input as {
		"service": service,
		"key": read_only,
		"request": request_with_query("GET", "/api/v1/blogs", {"draftKey": "k1"}),
	}
	d.allow == true
	d.visibility.draftKey == false
}

test_draft_key_without_get_forbidden if {
	d := content.decision with input as {
		"service": service,
		"key": all_writes,
		"request": request_with_query("GET", "/api/v1/blogs/abc", {"draftKey": "k1"}),
	}
	d.allow == false
	d.visibility.draftKey == false
}

test_draft_key_not_string_ignored if {
	d := content.decision with input as {
		"service": service,
		"key": read_only,
		"request": request_with_query("GET", "/api/v1/blogs/abc", {"draftKey": ["k1"]}),
	}
	d.visibility.draftKey == false
}

# --- status query parameter (check 5) ---

test_hobby_writes_with_status_parameter_refused if {
	k := object.union(all_writes, {"service": "hobby-demo"})
	every method in ["POST", "PUT", "PATCH"] {
		d := content.decision with input as {
			"service": hobby,
			"key": k,
			"request": request_with_query(method, "/api/v1/blogs/abc", {"status": "draft"}),
		}
		d.allow == false
		d.status == 400
		d.code == "plan_feature_unavailable"
		d.message == "Status parameter is not available in the current plan. Please upgrade your plan."
	}
}

# Status parameter spellings: any parameter an origin might read as status —
# another case, surrounding spaces, array brackets, or after a ";" (the server lists the
# names split on ";" too) — is refused on a write on a plan without the feature.
test_hobby_write_with_status_spelling_refused if {
	k := object.union(all_writes, {"service": "hobby-demo"})
	every names in [
		["Status"], ["STATUS"], [" status"], ["status "], ["status[]"], ["status[0]"], ["status", "x"],
		# PHP reads a name as a C string: it ends at a NUL byte.
		["status\u0000"], ["status\u0000x"],
		# Rack 2 (Rails) drops brackets around a name: [status], status], ]status.
		["[status]"], ["status]"], ["]status"], [" [status]"], ["[[status]]x"],
	] {
		req := object.union(request("POST", "/api/v1/blogs"), {"parameters": names})
		d := content.decision with input as {"service": hobby, "key": k, "request": req}
		d.status == 400
		d.code == "plan_feature_unavailable"
	}
}

test_hobby_write_with_other_parameters_allowed if {
	k := object.union(all_writes, {"service": "hobby-demo"})
	every names in [["statuses"], ["xstatus"], ["x\u0000status"], ["[x]status"], ["draftKey", "limit"], [], [7]] {
		req := object.union(request("POST", "/api/v1/blogs"), {"parameters": names})
		d := content.decision with input as {"service": hobby, "key": k, "request": req}
		d.allow == true
	}
}

test_team_write_with_status_spelling_allowed if {
	req := object.union(request("PATCH", "/api/v1/blogs/abc"), {"parameters": ["Status"]})
	d := content.decision with input as {"service": service, "key": all_writes, "request": req}
	d.allow == true
}

# DELETE takes no status in microCMS: a stray one uses no paid feature.
test_hobby_delete_with_status_parameter_allowed if {
	k := object.union(all_writes, {"service": "hobby-demo"})
	d := content.decision with input as {
		"service": hobby,
		"key": k,
		"request": request_with_query("DELETE", "/api/v1/blogs/abc", {"status": "draft"}),
	}
	d.allow == true
}

test_hobby_get_with_status_parameter_allowed if {
	k := object.union(read_only, {"service": "hobby-demo"})
	d := content.decision with input as {
		"service": hobby,
		"key": k,
		"request": request_with_query("GET", "/api/v1/blogs", {"status": "draft"}),
	}
	d.allow == true
}

test_hobby_post_without_status_parameter_allowed if {
	k := object.union(all_writes, {"service": "hobby-demo"})
	d := content.decision with input as {"service": hobby, "key": k, "request": request("POST", "/api/v1/blogs")}
	d.allow == true
}

test_paid_plans_post_with_status_parameter_allowed if {
	every plan in ["team", "business", "advanced", "enterprise"] {
		d := content.decision with input as {
			"service": {"id": "team-demo", "plan": plan},
			"key": all_writes,
			"request": request_with_query("POST", "/api/v1/blogs", {"status": "closed"}),
		}
		d.allow == true
	}
}

test_unknown_plan_post_with_status_parameter_refused if {
	d := content.decision with input as {
		"service": {"id": "team-demo", "plan": "platinum"},
		"key": all_writes,
		"request": request_with_query("POST", "/api/v1/blogs", {"status": "draft"}),
	}
	d.code == "plan_feature_unavailable"
}

test_hobby_status_parameter_without_permission_method_forbidden if {
	k := object.union(read_only, {"service": "hobby-demo"})
	d := content.decision with input as {
		"service": hobby,
		"key": k,
		"request": request_with_query("POST", "/api/v1/blogs", {"status": "draft"}),
	}
	d.code == "method_forbidden"
}

test_status_parameter_follows_plan_data if {
	d := content.decision with input as {
		"service": hobby,
		"key": object.union(all_writes, {"service": "hobby-demo"}),
		"request": request_with_query("POST", "/api/v1/blogs", {"status": "draft"}),
	}
		with data.plans.hobby as {"maxKeys": 1, "statusParameter": true}
	d.allow == true
}

# --- fallback ---

test_undefined_reason_default_denied if {
	d := content.decision with content.reason as {}
	d.allow == false
	d.status == 403
	d.code == "denied"
	d.visibility == hidden
}

test_hobby_post_without_query_allowed if {
	k := object.union(all_writes, {"service": "hobby-demo"})
	no_query := object.remove(request("POST", "/api/v1/blogs"), ["query", "parameters"])
	every req in [no_query, object.union(no_query, {"query": "status", "parameters": "status"})] {
		d := content.decision with input as {"service": hobby, "key": k, "request": req}
		d.allow == true
	}
}
