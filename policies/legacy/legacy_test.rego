package legacy_test

import data.legacy

# --- migration: what each old key becomes ---

test_api_key_migrates_to_get_only if {
	m := legacy.migration with input as {"header": "X-API-KEY"}
	m.allow == true
	m.key.name == "Migrated X-API-KEY"
	m.key.contentApi == {"default": {"get": true}, "individual": {}}
	m.key.managementApi == {}
}

test_draft_key_migrates_to_get_and_all_drafts if {
	m := legacy.migration with input as {"header": "X-GLOBAL-DRAFT-KEY", "name": "preview"}
	m.key.name == "preview"
	m.key.contentApi == {"default": {"get": true, "getAllDrafts": true}, "individual": {}}
}

test_write_key_migrates_to_individual_write_methods if {
	methods := {"blogs": ["POST", "PUT"], "contact": ["POST"], "news": []}
	m := legacy.migration with input as {"header": "X-WRITE-API-KEY", "writeMethods": methods}
	m.allow == true
	m.key.contentApi.default == {}
	m.key.contentApi.individual == {"blogs": {"post": true, "put": true}, "contact": {"post": true}}
}

test_write_key_without_methods_grants_nothing if {
	m := legacy.migration with input as {"header": "X-WRITE-API-KEY"}
	m.key.contentApi == {"default": {}, "individual": {}}
}

test_read_key_ignores_write_methods if {
	m := legacy.migration with input as {"header": "X-API-KEY", "writeMethods": {"blogs": ["POST"]}}
	m.key.contentApi.individual == {}
}

test_unknown_write_method_refused if {
	methods := {"blogs": ["POST", "GET"], "news": "PATCH"}
	m := legacy.migration with input as {"header": "X-WRITE-API-KEY", "writeMethods": methods}
	m.allow == false
	m.status == 422
	m.code == "invalid_legacy_key"
	contains(m.message, "GET (blogs)")
	contains(m.message, "PATCH (news: not a list)")
}

test_unknown_header_refused if {
	every i in [{"header": "X-OTHER-KEY"}, {}] {
		m := legacy.migration with input as i
		m.allow == false
		m.status == 422
	}
}

# --- decision: requests with old headers ---

service := {"id": "team-demo", "plan": "team"}

key(id, svc, defaults) := {
	"id": id,
	"service": svc,
	"name": id,
	"contentApi": {"default": defaults, "individual": {}},
	"managementApi": {},
}

read_key := key("read", "team-demo", {"get": true})

draft_key := key("draft", "team-demo", {"get": true, "getAllDrafts": true})

write_key := {
	"id": "write",
	"service": "team-demo",
	"name": "write",
	"contentApi": {"default": {}, "individual": {"blogs": {"post": true}}},
	"managementApi": {},
}

ask(method, path, hs) := {
	"service": service,
	"request": {"method": method, "path": path, "query": {}},
	"legacy": {"headers": hs, "microcmsKey": false},
}

test_read_with_api_key_chosen_without_drafts if {
	d := legacy.selection with input as ask("GET", "/api/v1/blogs", {"X-API-KEY": {"key": read_key}})
	d.allow == true
	d.keyHeader == "X-API-KEY"
	d.drafts == false
}

test_head_is_a_read if {
	d := legacy.selection with input as ask("HEAD", "/api/v1/blogs", {"X-API-KEY": {"key": draft_key}})
	d.keyHeader == "X-API-KEY"
	d.drafts == false
}

test_read_with_api_and_draft_keys_drafts if {
	hs := {"X-API-KEY": {"key": read_key}, "X-GLOBAL-DRAFT-KEY": {"key": draft_key}}
	d := legacy.selection with input as ask("GET", "/api/v1/blogs", hs)
	d.allow == true
	d.keyHeader == "X-GLOBAL-DRAFT-KEY"
	d.drafts == true
}

test_draft_key_alone_refused if {
	d := legacy.selection with input as ask("GET", "/api/v1/blogs", {"X-GLOBAL-DRAFT-KEY": {"key": draft_key}})
	d.allow == false
	d.status == 401
	d.message == "X-API-KEY header is invalid."
}

test_invalid_draft_key_refused if {
	hs := {"X-API-KEY": {"key": read_key}, "X-GLOBAL-DRAFT-KEY": {}}
	d := legacy.selection with input as ask("GET", "/api/v1/blogs", hs)
	d.allow == false
	d.status == 401
	d.message == "X-GLOBAL-DRAFT-KEY header is invalid."
}

test_write_with_write_key_chosen if {
	every m in ["POST", "PUT", "PATCH", "DELETE"] {
		hs := {"X-WRITE-API-KEY": {"key": write_key}, "X-API-KEY": {"key": read_key}}
		d := legacy.selection with input as ask(m, "/api/v1/blogs", hs)
		d.allow == true
		d.keyHeader == "X-WRITE-API-KEY"
		d.drafts == false
	}
}

test_write_with_api_key_refused if {
	d := legacy.selection with input as ask("POST", "/api/v1/blogs", {"X-API-KEY": {"key": write_key}})
	d.allow == false
	d.status == 401
	d.message == "X-WRITE-API-KEY header is invalid."
}

test_read_with_write_key_refused if {
	d := legacy.selection with input as ask("GET", "/api/v1/blogs", {"X-WRITE-API-KEY": {"key": read_key}})
	d.status == 401
	d.message == "X-API-KEY header is invalid."
}

test_unknown_or_other_service_key_refused if {
	other := key("other", "hobby-demo", {"get": true})
	every h in [{}, {"key": other}] {
		d := legacy.selection with input as ask("GET", "/api/v1/blogs", {"X-API-KEY": h})
		d.status == 401
		d.code == "invalid_api_key"
	}
}

test_with_microcms_key_conflict_refused if {
	i := ask("GET", "/api/v1/blogs", {"X-API-KEY": {"key": read_key}})
	d := legacy.selection with input as object.union(i, {"legacy": {"microcmsKey": true}})
	d.allow == false
	d.status == 401
	d.code == "conflicting_api_keys"
}

test_old_keys_of_two_services_conflict_refused if {
	other := key("other", "hobby-demo", {"get": true, "getAllDrafts": true})
	hs := {"X-API-KEY": {"key": read_key}, "X-GLOBAL-DRAFT-KEY": {"key": other}}
	d := legacy.selection with input as ask("GET", "/api/v1/blogs", hs)
	d.allow == false
	d.code == "conflicting_api_keys"
}

test_other_method_uses_a_valid_key if {
	d := legacy.selection with input as ask("OPTIONS", "/api/v1/blogs", {"X-WRITE-API-KEY": {"key": write_key}})
	d.allow == true
	d.keyHeader == "X-WRITE-API-KEY"
	e := legacy.selection with input as ask("OPTIONS", "/api/v1/blogs", {"X-API-KEY": {"key": read_key}})
	e.keyHeader == "X-API-KEY"
	f := legacy.selection with input as ask("OPTIONS", "/api/v1/blogs", {})
	f.status == 401
}

test_empty_input_refused if {
	d := legacy.selection with input as {}
	d.allow == false
	d.status == 401
}

# The default selection only applies if a part of it were undefined: it refuses.
test_undefined_refusal_fallback_refused if {
	d := legacy.selection with legacy.refusal as [401]
	d.allow == false
	d.status == 401
	d.keyHeader == ""
}

test_empty_name_uses_the_header if {
	m := legacy.migration with input as {"header": "X-API-KEY", "name": ""}
	m.key.name == "Migrated X-API-KEY"
}
