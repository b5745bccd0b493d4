package management_test

import data.management

restricted := {
	"id": "team-demo",
	"plan": "business",
	"ipRestrictions": {"default": ["203.0.113.0/24"], "apis": {"blogs": ["198.51.100.7"]}},
}

from(ip, key, method, path) := {
	"service": restricted,
	"key": key,
	"request": object.union(request(method, path), {"clientIp": ip}),
}

test_ip_listed_address_allowed if {
	d := management.decision with input as from("203.0.113.5", key_with(all_flags), "GET", "/api/v1/media")
	d.allow == true
}

test_ip_other_address_rejected if {
	d := management.decision with input as from("192.0.2.1", key_with(all_flags), "GET", "/api/v1/media")
	d.allow == false
	d.status == 400
	d.code == "ip_address_rejected"
	d.message == "IP address rejected"
}

test_ip_contents_route_uses_api_list if {
	ok := management.decision with input as from("198.51.100.7", key_with(all_flags), "GET", "/api/v1/contents/blogs")
	ok.allow == true
	no := management.decision with input as from("203.0.113.5", key_with(all_flags), "GET", "/api/v1/contents/blogs")
	no.code == "ip_address_rejected"
}

test_ip_checked_after_key_invalid_api_key if {
	d := management.decision with input as from("192.0.2.1", null, "GET", "/api/v1/media")
	d.status == 401
}

test_ip_checked_before_permission_rejected if {
	d := management.decision with input as from("192.0.2.1", key_with({}), "GET", "/api/v1/media")
	d.code == "ip_address_rejected"
}
