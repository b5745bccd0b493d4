package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/server"
)

// TestKeyWriteRefusesDuplicateMembers: a key write that names a member twice, at any depth,
// says two things; encoding/json would merge them ({"default":{"get":true},"default":{"post":true}}
// grants get and post, which neither member says) or keep the last. Refused with 400
// duplicate_field, on create and on update, and nothing is written.
func TestKeyWriteRefusesDuplicateMembers(t *testing.T) {
	h := newFixture(t, server.Options{})
	const admin = "Bearer team-demo-admin-token"
	for _, tc := range []struct {
		note, body string
		want       int
		field      string
	}{
		{"default twice", `{"name":"x","contentApi":{"default":{"get":true},"default":{"post":true}}}`, 400, "contentApi.default"},
		{"an individual endpoint twice", `{"name":"x","contentApi":{"individual":{"blogs":{"get":true},"blogs":{"delete":true}}}}`, 400, "contentApi.individual.blogs"},
		{"a flag twice", `{"name":"x","contentApi":{"default":{"get":false,"get":true}}}`, 400, "contentApi.default.get"},
		{"a management flag twice", `{"name":"x","managementApi":{"getMembers":false,"getMembers":true}}`, 400, "managementApi.getMembers"},
		{"name twice, another case", `{"name":"x","Name":"y"}`, 400, "Name"},
		{"contentApi twice, escaped", `{"name":"x","contentApi":{},"\u0063ontentApi":{"default":{"post":true}}}`, 400, "contentApi"},
		{"the same name in two objects is fine", `{"name":"x","contentApi":{"default":{"get":true},"individual":{"blogs":{"get":true}}}}`, 200, ""},
	} {
		for _, method := range []string{http.MethodPost, http.MethodPut} {
			t.Run(method+"/"+tc.note, func(t *testing.T) {
				target := "/v1/services/team-demo/keys"
				want := tc.want
				if method == http.MethodPut {
					target += "/team-demo-read"
				} else if want == 200 {
					want = 201
				}
				req := httptest.NewRequest(method, target, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", admin)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != want {
					t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, want)
				}
				if tc.field == "" {
					return
				}
				var p server.Problem
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != "duplicate_field" || !strings.Contains(p.Detail, "Field "+tc.field+" ") {
					t.Fatalf("problem %s, want duplicate_field naming %s", rec.Body, tc.field)
				}
			})
		}
	}
}
