package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func ipPath(service string) string { return "/v1/services/" + service + "/ip-restrictions" }

// ipSetting is the body of GET/PUT /v1/services/{service}/ip-restrictions.
type ipSetting struct {
	Default []string            `json:"default"`
	APIs    map[string][]string `json:"apis"`
}

// loopbackClient sends from a loopback address of its own (127.0.0.x), so
// that keygate or nginx sees that address as the peer.
func loopbackClient(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: apiContract.transport(&http.Transport{DialContext: d.DialContext, DisableKeepAlives: true})}
}

// forwardFrom asks /v1/forward-auth as nginx would, from the loopback
// address from, with extra headers (name, value pairs).
func (f *fixture) forwardFrom(t *testing.T, from, uri, host, secret string, header ...string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL+"/v1/forward-auth", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URI", uri)
	req.Header.Set("X-Forwarded-Host", host)
	req.Header.Set("X-MICROCMS-API-KEY", secret)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := loopbackClient(from).Do(req)
	if err != nil {
		t.Fatalf("forward-auth from %s: %v", from, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if id := resp.Header.Get("X-Keygate-Decision-Id"); id != "" {
		f.addDecision(id)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// TestIPRestriction: the admin API (who may, what is refused), the decision
// on /v1/decide (clientIp) and /v1/forward-auth (peer, or a trusted proxy's
// header), both levels and IPv6, and the setting surviving a restart.
func TestIPRestriction(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "--trusted-proxies", "127.0.0.1/32")
	admin := bearer(adminToken("business-demo"))

	t.Run("admin API refusals", func(t *testing.T) {
		setting := ipSetting{Default: []string{"203.0.113.0/24"}, APIs: map[string][]string{}}
		f.do(t, http.MethodGet, ipPath("business-demo"), nil).problem(t, http.StatusUnauthorized, "unauthenticated")
		f.do(t, http.MethodPut, ipPath("business-demo"), setting).problem(t, http.StatusUnauthorized, "unauthenticated")
		f.do(t, http.MethodGet, ipPath("business-demo"), nil, bearer(editorToken("business-demo"))...).problem(t, http.StatusForbidden, "forbidden")
		f.do(t, http.MethodPut, ipPath("business-demo"), setting, bearer(adminToken("team-demo"))...).problem(t, http.StatusForbidden, "forbidden")
		f.do(t, http.MethodGet, ipPath("no-such-service"), nil, admin...).problem(t, http.StatusForbidden, "forbidden")
		for _, plan := range []string{"hobby", "team"} {
			p := f.do(t, http.MethodPut, ipPath(plan+"-demo"), setting, bearer(adminToken(plan+"-demo"))...).
				problem(t, http.StatusForbidden, "plan_feature_unavailable")
			if !strings.Contains(p.Detail, plan+" plan") {
				t.Errorf("%s: detail %q does not name the plan", plan, p.Detail)
			}
		}
		p := f.do(t, http.MethodPut, ipPath("business-demo"), ipSetting{Default: []string{"203.0.113.0/33", "198.51.100.7"},
			APIs: map[string][]string{"blogs": {"not-an-ip"}}}, admin...).problem(t, http.StatusUnprocessableEntity, "invalid_ip_entry")
		if len(p.Violations) != 2 || p.Violations[0].Entry != "203.0.113.0/33" || p.Violations[1].Entry != "not-an-ip" || p.Violations[1].Endpoint != "blogs" {
			t.Errorf("violations %+v, want the two bad entries named", p.Violations)
		}
		var many []string
		for i := range 31 {
			many = append(many, fmt.Sprintf("192.0.2.%d", i+1))
		}
		p = f.do(t, http.MethodPut, ipPath("business-demo"), ipSetting{Default: many}, admin...).problem(t, http.StatusUnprocessableEntity, "ip_entry_limit_exceeded")
		if p.Limit != 30 {
			t.Errorf("limit %d, want 30 (business)", p.Limit)
		}
		f.do(t, http.MethodPut, ipPath("business-demo"), `{"default":[],"apis":{},"extra":1}`, admin...).problem(t, http.StatusBadRequest, "unknown_field")
		var got ipSetting
		r := f.do(t, http.MethodGet, ipPath("business-demo"), nil, admin...)
		r.decode(t, &got)
		if r.status != http.StatusOK || len(got.Default) != 0 || len(got.APIs) != 0 {
			t.Errorf("after refusals the setting is %s, want empty", r)
		}
	})

	setting := ipSetting{Default: []string{"203.0.113.0/24", "2001:db8::/32", "127.0.0.2"}, APIs: map[string][]string{"blogs": {"198.51.100.7"}, "news": {}}}
	if r := f.do(t, http.MethodPut, ipPath("business-demo"), setting, admin...); r.status != http.StatusOK {
		t.Fatalf("PUT setting: %s", r)
	}
	secret := f.createKey(t, "business-demo", keySpec("reader", perms{"get": true}, nil, perms{"getMedia": true})).Secret

	check := func(t *testing.T) {
		t.Helper()
		for _, tc := range []struct {
			note, api, path, ip string
			code                string
		}{
			{"default list, v4 CIDR", "content", "/api/v1/site", "203.0.113.9", "allowed"},
			{"default list, v6 CIDR", "content", "/api/v1/site", "2001:db8::1", "allowed"},
			{"v4-mapped v6 is the v4 client", "content", "/api/v1/site", "::ffff:203.0.113.9", "allowed"},
			{"not listed", "content", "/api/v1/site", "192.0.2.1", "ip_address_rejected"},
			{"no client address", "content", "/api/v1/site", "", "ip_address_rejected"},
			{"API list replaces the default: default address", "content", "/api/v1/blogs", "203.0.113.9", "ip_address_rejected"},
			{"API list replaces the default: its address", "content", "/api/v1/blogs/abc", "198.51.100.7", "allowed"},
			{"empty API list: unrestricted", "content", "/api/v1/news", "192.0.2.1", "allowed"},
			{"management API: default list", "management", "/api/v1/media", "192.0.2.1", "ip_address_rejected"},
			{"management API: listed", "management", "/api/v1/media", "203.0.113.9", "allowed"},
		} {
			body := map[string]any{"service": "business-demo", "api": tc.api, "method": "GET", "path": tc.path, "apiKey": secret}
			if tc.ip != "" {
				body["clientIp"] = tc.ip
			}
			d := f.decide(t, body)
			if d.Code != tc.code {
				t.Errorf("%s: code %q (%d %q), want %q", tc.note, d.Code, d.Status, d.Message, tc.code)
			}
			if tc.code == "ip_address_rejected" && (d.Allow || d.Status != 400 || d.Message != "IP address rejected") {
				t.Errorf("%s: %+v, want 400 IP address rejected", tc.note, d)
			}
		}
		// The key comes first: an unknown key is a 401 from any address.
		if d := f.decide(t, map[string]any{"service": "business-demo", "method": "GET", "path": "/api/v1/site", "apiKey": unknownSecret, "clientIp": "192.0.2.1"}); d.Status != 401 {
			t.Errorf("unknown key from a rejected address: %+v, want 401", d)
		}
	}
	t.Run("decide", check)

	t.Run("decide: a clientIp that is no address is a malformed request", func(t *testing.T) {
		f.do(t, http.MethodPost, "/v1/decide", map[string]any{"service": "business-demo", "method": "GET", "path": "/api/v1/site", "apiKey": secret, "clientIp": "nope"}).
			problem(t, http.StatusBadRequest, "invalid_field")
	})

	t.Run("forward-auth", func(t *testing.T) {
		host := "business-demo.microcms.io"
		for _, tc := range []struct {
			note, from string
			header     []string
			allow      bool
		}{
			{"trusted proxy, X-Real-IP listed", "127.0.0.1", []string{"X-Real-IP", "203.0.113.9"}, true},
			{"trusted proxy, X-Real-IP not listed", "127.0.0.1", []string{"X-Real-IP", "192.0.2.1"}, false},
			{"trusted proxy naming no client", "127.0.0.1", nil, false},
			{"trusted proxy, X-Real-IP twice", "127.0.0.1", []string{"X-Real-IP", "203.0.113.9", "X-Real-IP", "203.0.113.10"}, false},
			{"trusted proxy, X-Forwarded-For right-most untrusted hop listed", "127.0.0.1", []string{"X-Forwarded-For", "192.0.2.1, 203.0.113.9, 127.0.0.1"}, true},
			{"trusted proxy, X-Forwarded-For right-most untrusted hop not listed", "127.0.0.1", []string{"X-Forwarded-For", "203.0.113.9, 192.0.2.1"}, false},
			{"trusted proxy, Envoy's external address", "127.0.0.1", []string{"X-Envoy-External-Address", "2001:db8::7"}, true},
			{"trusted proxy, headers that disagree", "127.0.0.1", []string{"X-Real-IP", "203.0.113.9", "X-Forwarded-For", "192.0.2.1"}, false},
			{"untrusted peer: its own address, listed", "127.0.0.2", nil, true},
			{"untrusted peer: a forged X-Forwarded-For is ignored", "127.0.0.3", []string{"X-Forwarded-For", "203.0.113.9"}, false},
			{"untrusted peer: a forged X-Real-IP is ignored", "127.0.0.3", []string{"X-Real-IP", "203.0.113.9"}, false},
		} {
			r := f.forwardFrom(t, tc.from, "/api/v1/site", host, secret, tc.header...)
			switch {
			case tc.allow && r.status != http.StatusOK:
				t.Errorf("%s: %d %s (X-Keygate-Code %s), want 200", tc.note, r.status, r.body, r.header.Get("X-Keygate-Code"))
			case !tc.allow && (r.status != http.StatusForbidden || r.header.Get("X-Keygate-Status") != "400" ||
				r.header.Get("X-Keygate-Code") != "ip_address_rejected" || r.header.Get("X-Keygate-Message") != "IP address rejected"):
				t.Errorf("%s: %d %s (X-Keygate-Status %s, Code %s), want 403 carrying 400 ip_address_rejected", tc.note, r.status, r.body,
					r.header.Get("X-Keygate-Status"), r.header.Get("X-Keygate-Code"))
			}
		}
	})

	// Restarted in the test itself: a subtest's cleanup would stop the new process.
	f.restart(t)
	t.Run("durable across a restart", func(t *testing.T) {
		var got ipSetting
		r := f.do(t, http.MethodGet, ipPath("business-demo"), nil, admin...)
		r.decode(t, &got)
		if r.status != http.StatusOK || strings.Join(got.Default, ",") != strings.Join(setting.Default, ",") ||
			strings.Join(got.APIs["blogs"], ",") != "198.51.100.7" || got.APIs["news"] == nil {
			t.Fatalf("after restart: %s, want %+v", r, setting)
		}
		check(t)
	})

	t.Run("cleared: no restriction", func(t *testing.T) {
		if r := f.do(t, http.MethodPut, ipPath("business-demo"), ipSetting{}, admin...); r.status != http.StatusOK {
			t.Fatalf("PUT empty: %s", r)
		}
		if d := f.decide(t, map[string]any{"service": "business-demo", "method": "GET", "path": "/api/v1/site", "apiKey": secret, "clientIp": "192.0.2.1"}); !d.Allow {
			t.Errorf("after clearing: %+v, want allowed", d)
		}
	})
}
