package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keygate/keygate/internal/server"
)

// TestReloadOnlyFromLoopback: the reload endpoint answers loopback callers
// only, and a forwarded-for header cannot make a remote caller local.
func TestReloadOnlyFromLoopback(t *testing.T) {
	h := newFixture(t, server.Options{})
	for _, tc := range []struct {
		note    string
		remote  string
		headers map[string]string
		want    int
	}{
		{note: "IPv4 loopback", remote: "127.0.0.1:40000", want: http.StatusOK},
		{note: "IPv6 loopback", remote: "[::1]:40000", want: http.StatusOK},
		{note: "remote address", remote: "192.0.2.10:40000", want: http.StatusForbidden},
		{note: "remote claiming loopback via X-Forwarded-For", remote: "192.0.2.10:40000",
			headers: map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}, want: http.StatusForbidden},
		{note: "unparseable remote", remote: "garbage", want: http.StatusForbidden},
	} {
		t.Run(tc.note, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/policies/reload", nil)
			req.RemoteAddr = tc.remote
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
		})
	}
}
