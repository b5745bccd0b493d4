package server

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestForwardClientIP(t *testing.T) {
	proxies, err := ParseTrustedProxies("127.0.0.1/32, 10.0.0.0/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		note, convention, peer string
		header                 [][2]string
		want                   string
	}{
		{"untrusted peer: its own address", ForwardAuto, "192.0.2.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}}, "192.0.2.1"},
		{"untrusted peer: a forged X-Forwarded-For is ignored", ForwardAuto, "192.0.2.1:4000", [][2]string{{"X-Forwarded-For", "203.0.113.9"}}, "192.0.2.1"},
		{"untrusted v6 peer", ForwardAuto, "[2001:db8::1]:4000", nil, "2001:db8::1"},
		{"v4-mapped peer is its v4 address", ForwardAuto, "[::ffff:192.0.2.1]:4000", nil, "192.0.2.1"},
		{"trusted peer: X-Real-IP", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}}, "203.0.113.9"},
		{"trusted v6 peer: X-Real-IP", ForwardAuto, "[::1]:4000", [][2]string{{"X-Real-IP", "2001:db8::7"}}, "2001:db8::7"},
		{"trusted peer naming no client", ForwardAuto, "127.0.0.1:4000", nil, ""},
		{"trusted peer: X-Real-IP not an address", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "nope"}}, ""},
		{"trusted peer: X-Real-IP with a zone", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "fe80::1%eth0"}}, ""},
		{"trusted peer: X-Real-IP twice", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}, {"X-Real-IP", "203.0.113.9"}}, ""},
		{"XFF: right-most untrusted hop", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Forwarded-For", "198.51.100.1, 203.0.113.9, 10.1.2.3"}}, "203.0.113.9"},
		{"XFF: over two lines", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Forwarded-For", "198.51.100.1"}, {"X-Forwarded-For", "203.0.113.9, 10.1.2.3"}}, "203.0.113.9"},
		{"XFF: a bad hop right of the client", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Forwarded-For", "203.0.113.9, junk"}}, ""},
		{"XFF: every hop trusted", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Forwarded-For", "10.0.0.2, 10.0.0.3"}}, "10.0.0.2"},
		{"Envoy's external address", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Envoy-External-Address", "203.0.113.9"}}, "203.0.113.9"},
		{"auto: headers that agree", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}, {"X-Forwarded-For", "203.0.113.9"}}, "203.0.113.9"},
		{"auto: headers that disagree", ForwardAuto, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}, {"X-Forwarded-For", "198.51.100.1"}}, ""},
		{"nginx reads X-Real-IP only", ForwardNginx, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}, {"X-Forwarded-For", "198.51.100.1"}}, "203.0.113.9"},
		{"nginx without X-Real-IP", ForwardNginx, "127.0.0.1:4000", [][2]string{{"X-Forwarded-For", "198.51.100.1"}}, ""},
		{"traefik reads X-Forwarded-For only", ForwardTraefik, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}, {"X-Forwarded-For", "198.51.100.1"}}, "198.51.100.1"},
		{"envoy reads X-Envoy-External-Address only", ForwardEnvoy, "127.0.0.1:4000", [][2]string{{"X-Real-IP", "203.0.113.9"}, {"X-Envoy-External-Address", "198.51.100.1"}}, "198.51.100.1"},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			s := &Server{trustedProxies: proxies, fwdHeaders: tc.convention}
			r := httptest.NewRequest(http.MethodGet, "/v1/forward-auth", nil)
			r.RemoteAddr = tc.peer
			for _, h := range tc.header {
				r.Header.Add(h[0], h[1])
			}
			if got := s.forwardClientIP(r); got != tc.want {
				t.Errorf("forwardClientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // the prefixes, normalised
		fail bool
	}{
		{in: ""},
		{in: "127.0.0.1", want: []string{"127.0.0.1/32"}},
		{in: "10.0.0.0/8, 2001:db8::/32 ,::1", want: []string{"10.0.0.0/8", "2001:db8::/32", "::1/128"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		{in: "::ffff:10.0.0.0/104", want: []string{"10.0.0.0/8"}},
		{in: "::ffff:10.0.0.1", want: []string{"10.0.0.1/32"}},
		{in: "::ffff:10.0.0.1/128", want: []string{"10.0.0.1/32"}},
		{in: "::ffff:0:0/96", want: []string{"0.0.0.0/0"}},
		{in: "::ffff:10.0.0.0/95", want: []string{"::fffe:0:0/95"}},
		{in: "10.0.0.0/33", fail: true},
		{in: "fe80::1%eth0", fail: true},
		{in: "nope", fail: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTrustedProxies(tc.in)
			if (err != nil) != tc.fail {
				t.Fatalf("ParseTrustedProxies(%q) = %v, %v", tc.in, got, err)
			}
			var strs []string
			for _, p := range got {
				strs = append(strs, p.String())
			}
			if !slices.Equal(strs, tc.want) {
				t.Errorf("ParseTrustedProxies(%q) = %v, want %v", tc.in, strs, tc.want)
			}
		})
	}
}

// TestMappedTrustedProxyMatches: a proxy named in IPv4-mapped form is
// trusted when it connects, whichever form its address arrives in.
func TestMappedTrustedProxyMatches(t *testing.T) {
	proxies, err := ParseTrustedProxies("::ffff:10.0.0.0/104")
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"10.1.2.3:4000", "[::ffff:10.1.2.3]:4000"} {
		s := &Server{trustedProxies: proxies, fwdHeaders: ForwardAuto}
		r := httptest.NewRequest(http.MethodGet, "/v1/forward-auth", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Real-IP", "203.0.113.9")
		if got := s.forwardClientIP(r); got != "203.0.113.9" {
			t.Errorf("peer %s: client %q, want the proxy's header believed", peer, got)
		}
	}
}
