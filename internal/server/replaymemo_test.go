package server_test

import (
	"testing"

	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/server"
)

// TestReplayMemoKeysOnTheProjection: replay answers a logged decision from
// its memo only when the candidate cannot tell it from one already asked —
// the memo keys on what the candidate's entrypoint reads. Two content ids
// are one question for the shipped policies (which do not read it), and two
// for a candidate that does.
func TestReplayMemoKeysOnTheProjection(t *testing.T) {
	logged := func(id, path string) *decision.LoggedDecision {
		return &decision.LoggedDecision{DecisionID: id, Service: "team-demo", KeyID: "team-demo-read", KeyRevision: 1,
			API: "content", Method: "GET", Path: path, Query: map[string]string{}, Allow: true, Status: 200, Code: "allowed"}
	}
	for _, tc := range []struct {
		note    string
		policy  func(t *testing.T) server.Decider
		changed []bool // per logged decision a, b
		hits    int
	}{
		{"shipped policies do not read the content id", func(t *testing.T) server.Decider {
			eng, _ := openDeps(t, "../../policies", copyTree(t, "../../data"))
			return eng
		}, []bool{false, false}, 1},
		{"a candidate that reads the content id", func(t *testing.T) server.Decider {
			return brokenEngine(t, `decision := {"allow": true, "status": 200, "code": "allowed"} if {
	input.request.contentId != "b"
} else := {"allow": false, "status": 403, "code": "forbidden", "message": "Forbidden"}`)
		}, []bool{false, true}, 0},
	} {
		t.Run(tc.note, func(t *testing.T) {
			_, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
			rp := decision.NewReplayer(tc.policy(t), store)
			for i, e := range []*decision.LoggedDecision{logged("d-a", "/api/v1/blogs/a"), logged("d-b", "/api/v1/blogs/b")} {
				out, err := rp.Replay(t.Context(), e)
				if err != nil {
					t.Fatal(err)
				}
				if out.Changed != tc.changed[i] {
					t.Errorf("%s: changed %v (%+v), want %v", e.DecisionID, out.Changed, out.Decision, tc.changed[i])
				}
			}
			if rp.Hits != tc.hits {
				t.Errorf("memo hits %d, want %d", rp.Hits, tc.hits)
			}
		})
	}
}
