package server_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
)

// TestDecisionLogLineOfUnknownAndForeignKeys: what the answer and the
// decision-log line say of the key a secret names. A secret that matches
// no key gives an empty keyId in both; a key of another service stays
// anonymous in the answer (the asking service must not learn its id) while
// the log records it for the audit trail; the service's own key is named
// in both. The secret appears in neither, whichever header carried it.
func TestDecisionLogLineOfUnknownAndForeignKeys(t *testing.T) {
	eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
	foreign, err := store.CreateKey(t.Context(), "business-demo-admin-token", "business-demo",
		keystore.KeySpec{Name: "reader", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}})
	if err != nil {
		t.Fatal(err)
	}
	const unknown = "no-key-has-this-secret-8f3a61c2d9"
	for _, tc := range []struct {
		note, secret, header string
		legacy               bool
		answerKey, logKey    string
		code                 string
	}{
		{"an unknown secret", unknown, "", false, "", "", "invalid_api_key"},
		{"an unknown secret in the header", unknown, decision.APIKeyHeader, false, "", "", "invalid_api_key"},
		{"an unknown secret in an old header", unknown, decision.LegacyAPIKeyHeader, true, "", "", "invalid_api_key"},
		{"a key of another service", foreign.Secret, "", false, "", foreign.ID, "invalid_api_key"},
		{"a key of another service in an old header", foreign.Secret, decision.LegacyAPIKeyHeader, true, "", "", "invalid_api_key"},
		{"the service's own key", "team-demo-read-key", "", false, "team-demo-read", "team-demo-read", "allowed"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			var logged lineBuffer
			l := decision.NewDecisionLog(&logged, decision.DecisionLogOptions{})
			srv := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{
				Logger: slog.New(slog.DiscardHandler), DecisionLog: l, LegacyHeaders: tc.legacy,
			})
			body := map[string]any{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs"}
			if tc.header == "" {
				body["apiKey"] = tc.secret
			} else {
				body["headers"] = map[string]string{tc.header: tc.secret}
			}
			b, _ := json.Marshal(body)
			rec := postDecide(t, srv.Handler(), string(b))
			l.Close()
			var answer struct {
				Code  string  `json:"code"`
				KeyID *string `json:"keyId"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || rec.Code != 200 {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if answer.Code != tc.code || answer.KeyID == nil || *answer.KeyID != tc.answerKey {
				t.Errorf("answer %s: want code %s, keyId %q", rec.Body, tc.code, tc.answerKey)
			}
			line := strings.TrimSpace(logged.String())
			var e decision.LoggedDecision
			if err := json.Unmarshal([]byte(line), &e); err != nil || strings.Count(line, "\n") != 0 {
				t.Fatalf("want one decision-log line, got %q (%v)", line, err)
			}
			if e.KeyID != tc.logKey {
				t.Errorf("logged keyId %q, want %q", e.KeyID, tc.logKey)
			}
			if tc.legacy {
				// The old header is listed with the key its value
				// matched: none here (unknown), or the foreign key.
				want := ""
				if tc.secret == foreign.Secret {
					want = foreign.ID
				}
				if e.Legacy == nil || len(e.Legacy.Headers) != 1 || e.Legacy.Headers[0].Header != tc.header || e.Legacy.Headers[0].KeyID != want {
					t.Errorf("logged old headers %+v, want %s with key %q", e.Legacy, tc.header, want)
				}
			}
			for _, where := range []string{line, rec.Body.String()} {
				if strings.Contains(where, tc.secret) {
					t.Errorf("the secret is in %s", where)
				}
			}
		})
	}
}
