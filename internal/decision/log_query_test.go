package decision

import (
	"encoding/json"
	"maps"
	"testing"
	"time"
)

// TestDecisionLogQuery: the logged query is what the policy saw — the first
// value of each parameter — with draftKey's value redacted, and the line
// reads back into what replay needs.
func TestDecisionLogQuery(t *testing.T) {
	cases := []struct {
		name  string
		query [][2]string
		want  map[string]string
	}{
		{"none", nil, map[string]string{}},
		{"first value wins", [][2]string{{"limit", "10"}, {"offset", "5"}, {"limit", "99"}}, map[string]string{"limit": "10", "offset": "5"}},
		{"draftKey redacted", [][2]string{{"draftKey", "dk-secret"}, {"fields", "id"}}, map[string]string{"draftKey": RedactedValue, "fields": "id"}},
		{"escaping", [][2]string{{"q", "\"a\\b\n"}, {"é", "<&>"}}, map[string]string{"q": "\"a\\b\n", "é": "<&>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := DecisionEntry{Time: time.Unix(1, 0), DecisionID: "d1", Service: "team-demo", KeyID: "k1", KeyRevision: 7,
				API: APIContent, Method: "GET", Path: "/api/v1/blogs", Allow: true, Status: 200, Code: "allowed",
				Endpoint: "blogs", Permission: "get", Query: c.query}
			line := appendDecisionEntry(nil, &e)
			var back LoggedDecision
			if err := json.Unmarshal(line, &back); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			if !maps.Equal(back.Query, c.want) {
				t.Errorf("query %v, want %v (%s)", back.Query, c.want, line)
			}
			if back.KeyRevision != 7 || back.Endpoint != "blogs" || back.Permission != "get" || back.Shadow != nil {
				t.Errorf("read back %+v from %s", back, line)
			}
		})
	}
}
