package main

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// fromClient sends from a loopback address of its own, so that nginx's
// $remote_addr (and keygate's peer address) is that address.
func fromClient(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// ipRejectedBody is microCMS's answer to an address the restriction refuses, byte for byte.
const ipRejectedBody = `{"message": "IP address rejected"}`

// TestNginxIPRestriction: nginx passes the client's address (X-Real-IP $remote_addr) to keygate,
// which trusts it because nginx is a --trusted-proxies peer. Clients on 127.0.0.x loopback
// addresses stand for allowed and refused hosts; a refused one gets microCMS's exact 400 body, and
// a forged X-Forwarded-For or X-Real-IP changes nothing (through nginx, and straight at keygate
// from an untrusted peer).
func TestNginxIPRestriction(t *testing.T) {
	st := newStack(t, "--trusted-proxies", "127.0.0.1/32")
	got := adminCall(t, st.Keygate.URL, http.MethodPut, "/v1/services/business-demo/ip-restrictions", "business-demo-admin-token",
		`{"default": ["127.0.0.2", "2001:db8::/32"], "apis": {"blogs": ["127.0.0.4/32"]}}`)
	if got.status != http.StatusOK {
		t.Fatalf("PUT ip-restrictions: %s", got)
	}
	reader := createKey(t, st.Keygate.URL, "business-demo", `{"name":"reader","contentApi":{"default":{"get":true}},"managementApi":{"getMedia":true}}`)

	for _, tc := range []struct {
		note, from, host, path string
		header                 map[string]string
		allowed                bool
	}{
		{"listed address", "127.0.0.2", businessContent, "/api/v1/site", nil, true},
		{"address not listed", "127.0.0.3", businessContent, "/api/v1/site", nil, false},
		{"forged X-Forwarded-For naming a listed address", "127.0.0.3", businessContent, "/api/v1/site",
			map[string]string{"X-Forwarded-For": "127.0.0.2", "X-Real-IP": "127.0.0.2"}, false},
		{"the API's own list replaces the default: default address", "127.0.0.2", businessContent, "/api/v1/blogs", nil, false},
		{"the API's own list replaces the default: its address", "127.0.0.4", businessContent, "/api/v1/blogs", nil, true},
		{"management API, listed", "127.0.0.2", businessManagement, "/api/v1/media", nil, true},
		{"management API, not listed", "127.0.0.3", businessManagement, "/api/v1/media", nil, false},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got := do(t, st.URL, request{host: tc.host, path: tc.path, key: reader.secret, header: tc.header, from: tc.from})
			if tc.allowed {
				wantAllowed(t, got, http.StatusOK)
				return
			}
			if got.status != http.StatusBadRequest || string(got.body) != ipRejectedBody {
				t.Errorf("got %d %q, want 400 %q", got.status, got.body, ipRejectedBody)
			}
			if ct := got.header.Get("Content-Type"); ct != jsonUTF8 {
				t.Errorf("Content-Type = %q, want %q", ct, jsonUTF8)
			}
		})
	}

	t.Run("keygate ignores a forged X-Forwarded-For from an untrusted peer", func(t *testing.T) {
		for _, tc := range []struct {
			from   string
			status int
		}{{"127.0.0.3", http.StatusForbidden}, {"127.0.0.2", http.StatusOK}} {
			got := do(t, st.Keygate.URL, request{path: "/v1/forward-auth", from: tc.from, key: reader.secret, header: map[string]string{
				"X-Original-Method": "GET", "X-Original-URI": "/api/v1/site", "X-Forwarded-Host": businessContent,
				"X-Forwarded-For": "127.0.0.2", "X-Real-IP": "127.0.0.2",
			}})
			if got.status != tc.status {
				t.Errorf("from %s: %d (X-Keygate-Code %s), want %d", tc.from, got.status, got.header.Get("X-Keygate-Code"), tc.status)
			}
		}
	})
}
