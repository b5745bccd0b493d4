package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// TestDecisionCacheKeys on the real binary: the same question asked again is a cache hit
// whatever order Go's map iteration gives its JSON query object (the key must not depend on
// it), and questions about never-seen content ids of one endpoint share an entry (the content
// policy does not read the content id), each answered with its own contentId.
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

// TestCacheKeysOnContentIDOnceThePolicyReadsIt on the real binary: the cache shares one
// entry across content ids only while the policy does not read the id. A reloaded edit
// that denies one content id must be answered for that id at once — never from the
// entry the shared question left — and /v1/policies must show input.request.contentId
// among the paths the content entrypoint now keys on (and not before).
func TestCacheKeysOnContentIDOnceThePolicyReadsIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "--watch=false")
	ask := func(id string) decision {
		return f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs/"+id, demoReadKey))
	}
	if keysOnContentID(t, f) {
		t.Fatal("the shipped content policy keys on input.request.contentId: it does not read it")
	}
	for _, id := range []string{"warm", "embargoed", "other"} {
		if d := ask(id); !d.Allow || d.ContentID != id {
			t.Fatalf("before the edit, %s: %+v", id, d)
		}
	}

	path := filepath.Join(f.work.policies, "content", "content.rego")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "\tnot status_parameter_refused\n}\n"
	if !bytes.Contains(orig, []byte(anchor)) {
		t.Fatalf("content.rego has no %q to extend", anchor)
	}
	edited := bytes.Replace(orig, []byte(anchor), []byte("\tnot status_parameter_refused\n\tnot embargoed\n}\n\n"+
		"embargoed if input.request.contentId == \"embargoed\"\n"), 1)
	writeFile(t, path, edited)
	if r := f.do(t, http.MethodPost, "/v1/policies/reload", nil); r.status != http.StatusOK {
		t.Fatalf("reload: %s", r)
	}
	if !keysOnContentID(t, f) {
		t.Error("after the edit, /v1/policies does not show input.request.contentId for data.content.decision")
	}
	for range 3 { // asked again: a cached answer must be the same
		if d := ask("embargoed"); d.Allow || d.Status != http.StatusForbidden {
			t.Fatalf("after the edit, the embargoed id: %+v", d)
		}
		for _, id := range []string{"warm", "other", "fresh"} {
			if d := ask(id); !d.Allow || d.ContentID != id {
				t.Fatalf("after the edit, %s: %+v", id, d)
			}
		}
	}
}

func keysOnContentID(t *testing.T, f *fixture) bool {
	t.Helper()
	var p struct {
		CacheKeys []struct {
			Entrypoint string   `json:"entrypoint"`
			Cacheable  bool     `json:"cacheable"`
			Paths      []string `json:"paths"`
		} `json:"cacheKeys"`
	}
	f.do(t, http.MethodGet, "/v1/policies", nil).decode(t, &p)
	for _, e := range p.CacheKeys {
		if e.Entrypoint == "data.content.decision" {
			if !e.Cacheable {
				t.Fatalf("data.content.decision is not cacheable: %+v", e)
			}
			return slices.Contains(e.Paths, "input.request.contentId")
		}
	}
	t.Fatal("/v1/policies has no cache keys for data.content.decision")
	return false
}
