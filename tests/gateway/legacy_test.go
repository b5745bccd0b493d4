package main

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestNginxLegacyHeaders: old microCMS keys imported through keygate's admin API, then used
// through nginx with their old headers (keygate --legacy-headers): nginx passes them in the auth
// subrequest, keygate judges them, and a denial is microCMS's answer.
func TestNginxLegacyHeaders(t *testing.T) {
	st := newStack(t, "--legacy-headers")
	const (
		read  = "0d7c1a2e-legacy-read-4b7f-9c1e"
		draft = "5e2f9b10-legacy-draft-41aa-8d3c"
		write = "9a41c7d2-legacy-write-4e0b-b6f1"
	)
	got := adminCall(t, st.Keygate.URL, http.MethodPost, "/v1/services/business-demo/legacy-keys", "business-demo-admin-token",
		`{"keys": [{"header": "X-API-KEY", "value": "`+read+`"}, {"header": "X-GLOBAL-DRAFT-KEY", "value": "`+draft+`"},
		  {"header": "X-WRITE-API-KEY", "value": "`+write+`"}], "writeMethods": {"contact": ["POST"]}}`)
	var res struct {
		Results []struct {
			Result string `json:"result"`
		} `json:"results"`
	}
	if err := json.Unmarshal(got.body, &res); got.status != http.StatusOK || err != nil || len(res.Results) != 3 {
		t.Fatalf("import: %s", got)
	}
	for _, r := range res.Results {
		if r.Result != "created" {
			t.Fatalf("import: %s", got)
		}
	}

	for _, tc := range []struct {
		note    string
		req     request
		want    int
		wantMsg string
		drafts  string
	}{
		{"X-API-KEY reads", request{host: businessContent, path: "/api/v1/blogs", header: map[string]string{"X-API-KEY": read}}, 200, "", "false"},
		{"X-API-KEY with X-GLOBAL-DRAFT-KEY reads drafts", request{host: businessContent, path: "/api/v1/blogs",
			header: map[string]string{"X-API-KEY": read, "X-GLOBAL-DRAFT-KEY": draft}}, 200, "", "true"},
		{"X-GLOBAL-DRAFT-KEY alone", request{host: businessContent, path: "/api/v1/blogs", header: map[string]string{"X-GLOBAL-DRAFT-KEY": draft}},
			401, "X-API-KEY header is invalid.", ""},
		{"X-WRITE-API-KEY writes its API", request{method: "POST", host: businessContent, path: "/api/v1/contact", body: `{}`,
			header: map[string]string{"X-WRITE-API-KEY": write}}, 201, "", ""},
		{"X-WRITE-API-KEY on another API", request{method: "POST", host: businessContent, path: "/api/v1/blogs", body: `{}`,
			header: map[string]string{"X-WRITE-API-KEY": write}}, 400, "POST is forbidden.", ""},
		{"a write with X-API-KEY", request{method: "POST", host: businessContent, path: "/api/v1/contact", body: `{}`,
			header: map[string]string{"X-API-KEY": read}}, 401, "X-WRITE-API-KEY header is invalid.", ""},
		{"old and new header together", request{host: businessContent, path: "/api/v1/blogs", key: read,
			header: map[string]string{"X-API-KEY": read}}, 401, msgInvalidKey, ""},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got := do(t, st.URL, tc.req)
			if tc.wantMsg != "" {
				wantDenied(t, got, tc.want, tc.wantMsg)
				return
			}
			wantAllowed(t, got, tc.want)
			if tc.drafts != "" {
				if v := got.header.Get("X-Echo-Keygate-Drafts"); v != tc.drafts {
					t.Errorf("origin saw X-Keygate-Drafts %q, want %q", v, tc.drafts)
				}
			}
		})
	}
}
