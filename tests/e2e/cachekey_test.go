package e2e

import (
	"net/http"
	"regexp"
	"strconv"
	"testing"
)

// TestDecisionCacheKeys on the real binary: the same question asked again is a cache hit
// whatever order Go's map iteration gives its JSON query object (issue 10: the key depended
// on it), and questions about never-seen content ids of one endpoint share an entry (issue 11:
// the content policy does not read the content id), each answered with its own contentId.
func TestDecisionCacheKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	query := map[string]string{}
	for i := range 12 {
		query["p"+strconv.Itoa(i)] = strconv.Itoa(i)
	}
	same := with(contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey), "query", query)
	hits0, misses0 := cacheCounters(t, f)
	for i := range 10 {
		if d := f.decide(t, same); !d.Allow {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	for i := range 10 {
		id := "fresh" + strconv.Itoa(i)
		if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/news/"+id, demoReadKey)); !d.Allow || d.ContentID != id {
			t.Fatalf("content id %s: %+v", id, d)
		}
	}
	hits, misses := cacheCounters(t, f)
	if hits-hits0 != 18 || misses-misses0 != 2 {
		t.Errorf("cache: %d hits and %d misses for 2 distinct questions asked 10 times each, want 18 and 2",
			hits-hits0, misses-misses0)
	}
}

var cacheCounter = regexp.MustCompile(`(?m)^keygate_decision_cache_(hits|misses)_total (\d+)$`)

func cacheCounters(t *testing.T, f *fixture) (hits, misses int) {
	t.Helper()
	r := f.do(t, http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %v", r)
	}
	for _, m := range cacheCounter.FindAllStringSubmatch(string(r.body), -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "hits" {
			hits = n
		} else {
			misses = n
		}
	}
	return hits, misses
}
