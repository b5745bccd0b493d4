package content_test

import data.content

restricted := {
	"id": "team-demo",
	"plan": "business",
	"ipRestrictions": {"default": ["203.0.113.0/24", "2001:db8::/32"], "apis": {"blogs": ["198.51.100.7"], "news": []}},
}

from(ip, key, method, path) := {
	"service": restricted,
	"key": key,
	"request": object.union(request(method, path), {"clientIp": ip}),
}

test_ip_listed_address_allowed if {
	d := content.decision with input as from("203.0.113.5", read_only, "GET", "/api/v1/site")
	d.allow == true
}

test_ip_listed_v6_address_allowed if {
	d := content.decision with input as from("2001:db8::5", read_only, "GET", "/api/v1/site")
	d.allow == true
}

test_ip_other_address_rejected if {
	d := content.decision with input as from("192.0.2.1", read_only, "GET", "/api/v1/site")
	d.allow == false
	d.status == 400
	d.code == "ip_address_rejected"
	d.message == "IP address rejected"
	d.visibility == hidden
}

test_ip_api_list_replaces_default_rejected if {
	d := content.decision with input as from("203.0.113.5", read_only, "GET", "/api/v1/blogs/abc")
	d.code == "ip_address_rejected"
	d.endpoint == "blogs"
}

test_ip_api_list_replaces_default_allowed if {
	d := content.decision with input as from("198.51.100.7", read_only, "GET", "/api/v1/blogs")
	d.allow == true
}

test_ip_empty_api_list_allowed if {
	d := content.decision with input as from("192.0.2.1", read_only, "GET", "/api/v1/news")
	d.allow == true
}

test_ip_missing_client_address_rejected if {
	no_ip := {"service": restricted, "key": read_only, "request": request("GET", "/api/v1/site")}
	d := content.decision with input as no_ip
	d.code == "ip_address_rejected"
}

test_ip_no_setting_unrestricted if {
	d := content.decision with input as on(read_only, "GET", "/api/v1/blogs")
	d.allow == true
}

# Check order: the key first (401), then the address, then route, method and permission.
test_ip_checked_after_key_invalid_api_key if {
	d := content.decision with input as from("192.0.2.1", null, "GET", "/api/v1/site")
	d.status == 401
}

test_ip_checked_before_route_method_permission_rejected if {
	every req in [["GET", "/nope"], ["OPTIONS", "/api/v1/site"], ["POST", "/api/v1/site"]] {
		d := content.decision with input as from("192.0.2.1", read_only, req[0], req[1])
		d.code == "ip_address_rejected"
	}
}
