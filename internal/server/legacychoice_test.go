package server_test

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
)

// TestLegacyKeyChoiceIsCompared: a candidate whose legacy selection
// chooses another old header's key (X-API-KEY over a valid
// X-GLOBAL-DRAFT-KEY) answers the same allow, status, code and message,
// yet judges with another key (drafts hidden): replay reports the change
// of header, and the shadow counts and logs a disagreement naming the
// candidate's header.
func TestLegacyKeyChoiceIsCompared(t *testing.T) {
	policies := copyTree(t, "../../policies")
	candDir := copyTree(t, "../../policies")
	rego := filepath.Join(candDir, "legacy", "legacy.rego")
	src := readFile(t, rego)
	const draftFirst = "\tis_valid(draft_key)\n} else := api_key"
	if !strings.Contains(src, draftFirst) {
		t.Fatal("the legacy selection no longer has the choice this test edits")
	}
	writeFile(t, rego, strings.Replace(src, draftFirst, "\tis_valid(draft_key)\n\tfalse\n} else := api_key", 1))
	eng, store := openDeps(t, policies, copyTree(t, "../../data"))
	cand, err := engine.New(t.Context(), candDir, engine.Options{Timeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	const token = "team-demo-admin-token"
	reader, err := store.CreateKey(t.Context(), token, "team-demo", keystore.KeySpec{Name: "reader",
		ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}})
	if err != nil {
		t.Fatal(err)
	}
	drafts, err := store.CreateKey(t.Context(), token, "team-demo", keystore.KeySpec{Name: "drafts",
		ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, GetAllDrafts: true}}})
	if err != nil {
		t.Fatal(err)
	}
	var logged lineBuffer
	l := decision.NewDecisionLog(&logged, decision.DecisionLogOptions{})
	metrics := server.NewMetrics(store.KeyCounts)
	srv := server.New(eng, store, metrics, server.Options{Logger: slog.New(slog.DiscardHandler), DecisionLog: l,
		LegacyHeaders: true, Shadow: decision.ShadowOptions{Policy: cand, Sample: 1}})
	rec := postDecide(t, srv.Handler(), `{"service":"team-demo","method":"GET","path":"/api/v1/blogs",
		"headers":{"X-API-KEY":"`+reader.Secret+`","X-GLOBAL-DRAFT-KEY":"`+drafts.Secret+`"}}`)
	if !strings.Contains(rec.Body.String(), `"allow":true`) || !strings.Contains(rec.Body.String(), `"drafts":true`) {
		t.Fatalf("the serving policy does not judge with the draft key: %s", rec.Body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for shadowResults(t, metrics.Handler())["disagree"] < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	srv.Close()
	l.Close()
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"keyHeader":"X-API-KEY"}`) {
		t.Fatalf("want the decision and the shadow's disagreement naming X-API-KEY, got:\n%s", logged.String())
	}
	var e decision.LoggedDecision
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		note    string
		policy  server.Decider
		changed bool
		header  string
	}{{"the serving policy", eng, false, decision.LegacyDraftKeyHeader}, {"the candidate", cand, true, decision.LegacyAPIKeyHeader}} {
		out, err := decision.NewReplayer(tc.policy, store).Replay(t.Context(), &e)
		if err != nil || out.Changed != tc.changed || out.KeyHeader != tc.header || !out.Decision.Allow {
			t.Errorf("%s: replay %+v (%v), want changed %v with the key of %s", tc.note, out, err, tc.changed, tc.header)
		}
	}
}
