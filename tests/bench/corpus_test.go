package main

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestScaleCorpusNamesDistinctKeys: the scale check's corpus (fresh mix,
// keys drawn without replacement) names min(requests, keys) distinct keys
// and is half list GETs, half detail GETs; drawn with replacement it names
// noticeably fewer.
func TestScaleCorpusNamesDistinctKeys(t *testing.T) {
	ds := generate(5000, rand.New(rand.NewPCG(1, 5000)))
	for _, tc := range []struct {
		name         string
		requests     int
		distinct     bool
		wantDistinct func(got int) bool
	}{
		{"fewer requests than keys", 2000, true, func(got int) bool { return got == 2000 }},
		{"more requests than keys", 12000, true, func(got int) bool { return got == len(ds.keys) }},
		// 2,000 draws from 5,001 keys with replacement: ≈ 1,650 distinct.
		{"with replacement", 2000, false, func(got int) bool { return got < 1900 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, err := corpus(ds, tc.requests, rand.New(rand.NewPCG(1, 2)), "fresh", tc.distinct)
			if err != nil {
				t.Fatal(err)
			}
			keys := map[string]bool{}
			kinds := map[string]int{}
			for _, r := range reqs {
				var b struct{ APIKey string }
				if err := json.Unmarshal(r.decide, &b); err != nil {
					t.Fatal(err)
				}
				keys[b.APIKey] = true
				kinds[r.kind]++
			}
			if !tc.wantDistinct(len(keys)) {
				t.Errorf("%d requests name %d distinct keys", tc.requests, len(keys))
			}
			if len(kinds) != 2 || kinds["get-list"] < tc.requests*4/10 || kinds["get-detail"] < tc.requests*4/10 {
				t.Errorf("kinds %v, want about half get-list and half get-detail", kinds)
			}
		})
	}
}
