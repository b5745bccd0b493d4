package decision

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestAppendJSONMatchesEncodingJSON: the hand-written encoders must write
// exactly what encoding/json writes, for any string content.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	nasty := []string{"", "plain", `quo"te`, `back\slash`, "new\nline\ttab\rcr", "\x00\x01\x1f\x7f",
		"日本語の下書き", "bad\xffutf8\xc3", "line\u2028sep\u2029", "<script>&amp;</script>", strings.Repeat("x", 300)}
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func() string {
		if rng.IntN(3) == 0 {
			b := make([]byte, rng.IntN(12))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			return string(b)
		}
		return nasty[rng.IntN(len(nasty))]
	}
	for i := range 2000 {
		d := Decision{
			DecisionID: pick(), Allow: rng.IntN(2) == 0, Status: rng.IntN(600), Code: pick(), Message: pick(),
			Permission: pick(), Endpoint: pick(), ContentID: pick(), KeyID: pick(),
			Visibility:     Visibility{Published: rng.IntN(2) == 0, Drafts: rng.IntN(2) == 0, Closed: rng.IntN(2) == 0, DraftKey: rng.IntN(2) == 0, FilterOn: pick()},
			PolicyRevision: pick(),
		}
		want, err := json.Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		// encoding/json escapes <, > and & for HTML; both forms are the same JSON value.
		want = []byte(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(want)))
		if got := AppendDecision(nil, &d); string(got) != string(want) {
			t.Fatalf("case %d:\n got  %s\n want %s", i, got, want)
		}

		e := DecisionEntry{Time: time.Unix(int64(rng.IntN(2e9)), int64(rng.IntN(1e9))), DecisionID: d.DecisionID,
			Service: pick(), KeyID: pick(), API: pick(), Method: pick(), Path: pick(), Allow: d.Allow,
			Status: d.Status, Code: d.Code, PolicyRevision: d.PolicyRevision, Latency: time.Duration(rng.IntN(1e7))}
		line := appendDecisionEntry(nil, &e)
		var back map[string]any
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatalf("case %d: decision log line is not JSON: %v\n%s", i, err, line)
		}
		if back["path"] != viaJSON(t, e.Path) || back["allow"] != e.Allow || back["status"] != float64(e.Status) {
			t.Fatalf("case %d: decision log line %s does not round-trip %+v", i, line, e)
		}
	}
}

// viaJSON is s as encoding/json round-trips it (invalid UTF-8 replaced).
func viaJSON(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
