package authz_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/keystore"
)

// seedShapes are content API configurations of seed keys; the last one
// is invalid (getAllDrafts without get).
var seedShapes = []keystore.ContentAPI{
	{Default: keystore.ContentPerms{Get: true}},
	{Default: keystore.ContentPerms{Get: true, GetAllDrafts: true, GetAllClosed: true}},
	{Individual: map[string]keystore.ContentPerms{"blogs": {Get: true}, "news": {Get: true}, "contact": {Post: true}}},
	{Default: keystore.ContentPerms{Get: true}, Individual: map[string]keystore.ContentPerms{"contact": {Post: true, Put: true}}},
	{Individual: map[string]keystore.ContentPerms{"blogs": {Get: true}, "news": {GetAllDrafts: true}}},
}

// seedRequests are n requests without a member over 30 services, in
// len(seedShapes) shapes: creates, as a seeding asks, and every 11th a
// read; every key has its own name, and every 7th is named "bad".
func seedRequests(n int) []keystore.KeyRequest {
	reqs := make([]keystore.KeyRequest, n)
	for i := range reqs {
		name := fmt.Sprintf("key %d", i)
		if i%7 == 0 {
			name = "bad"
		}
		shape := seedShapes[i%len(seedShapes)]
		action := keystore.ActionCreate
		if i%11 == 0 {
			action = keystore.ActionRead // reports no violations
		}
		reqs[i] = keystore.KeyRequest{Action: action,
			Service: keystore.ServiceInput{ID: fmt.Sprintf("svc-%d", i%30), Plan: "enterprise"},
			Key:     &keystore.KeySpec{Name: name, ContentAPI: shape.Clone()}}
	}
	return reqs
}

// policyVariant copies the shipped policies (not their tests) with the
// keys policy edited by edit.
func policyVariant(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir("../../policies", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.rego") || !engine.IsPolicyFile(p) || strings.Contains(p, "testdata") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("../../policies", p)
		content := string(b)
		if rel == filepath.Join("keys", "keys.rego") {
			content = edit(content)
		}
		write(t, filepath.Join(dir, rel), content)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// extraViolation makes the violations rule (and so the decision) also
// report a violation when cond holds.
func extraViolation(cond string) func(string) string {
	return func(src string) string {
		src = strings.Replace(src, "violations := array.concat(", "violations := array.concat(extra_violations, array.concat(", 1)
		src = strings.Replace(src, "\t],\n) if {\n\taction in config_actions\n}", "\t],\n)) if {\n\taction in config_actions\n}", 1)
		return src + "\ndefault extra_violations := []\n\nextra_violations := [violation(\"default\", \"get\")] if {\n\t" + cond + "\n}\n"
	}
}

// TestSeedCheckerAgreesWithThePolicy: for the shipped keys policy and for
// edits of it that make the violations read more of the input (the
// service, the key's name, the input as a whole, a non-deterministic
// builtin) or that drop the rule, every seed key's violations from the
// seed checker are those of data.keys.decision for the same request, and
// the checker evaluates the policy once per distinct value of what the
// rule reads, no fewer (asked from 4 goroutines at once).
func TestSeedCheckerAgreesWithThePolicy(t *testing.T) {
	const n = 420
	reqs := seedRequests(n)
	distinct := func(key func(r keystore.KeyRequest, shape int) string) int64 {
		seen := map[string]bool{}
		for i, r := range reqs {
			seen[key(r, i%len(seedShapes))] = true
		}
		return int64(len(seen))
	}
	shapes := distinct(func(r keystore.KeyRequest, s int) string { return fmt.Sprint(r.Action, s) })
	rename := regexp.MustCompile(`\bviolations\b([^"])`)
	for _, tc := range []struct {
		note  string
		edit  func(string) string
		evals int64
	}{
		{"shipped policy: one evaluation per action and shape", func(s string) string { return s }, shapes},
		{"reads the service id", extraViolation(`input.service.id == "svc-3"`),
			distinct(func(r keystore.KeyRequest, s int) string { return fmt.Sprint(r.Action, r.Service.ID, s) })},
		{"reads the plan", extraViolation(`input.service.plan == "enterprise"`), shapes},
		{"reads the key's name", extraViolation(`input.key.name == "bad"`),
			distinct(func(r keystore.KeyRequest, s int) string { return fmt.Sprint(r.Action, r.Key.Name, s) })},
		{"reads one individual flag", extraViolation(`input.key.contentApi.individual.news.getAllDrafts == true`), shapes},
		{"reads the member", extraViolation(`not input.member`), shapes},
		{"reads the input whole", extraViolation(`object.get(input, ["key", "name"], "") == "bad"`), n},
		{"non-deterministic", extraViolation(`time.now_ns() > 0
	input.key.name == "bad"`), n},
		{"no violations rule", func(s string) string { return rename.ReplaceAllString(s, "config_violations$1") }, n},
	} {
		t.Run(tc.note, func(t *testing.T) {
			eng, err := engine.New(t.Context(), policyVariant(t, tc.edit), engine.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			pol := authz.New(eng)
			sc, err := pol.SeedChecker(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got := make([][]keystore.Violation, n)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := w; i < n; i += 4 {
						v, err := sc.SeedViolations(t.Context(), reqs[i])
						if err != nil {
							t.Error(err)
						}
						got[i] = v
					}
				})
			}
			wg.Wait()
			for i, r := range reqs {
				d, err := pol.AuthorizeKeys(t.Context(), r)
				if err != nil {
					t.Fatal(err)
				}
				if len(got[i]) != len(d.Violations) || len(got[i]) > 0 && !reflect.DeepEqual(got[i], d.Violations) {
					t.Fatalf("key %d (%s, %q): seed checker %v, policy %v", i, r.Service.ID, r.Key.Name, got[i], d.Violations)
				}
			}
			if e := sc.(*authz.SeedCheck).Evaluations(); e != tc.evals {
				t.Errorf("%d evaluations for %d keys, want %d", e, n, tc.evals)
			}
		})
	}
}

// TestSeedCheckerKeyCoversTheInput: the memo key models the policy input's
// JSON shape; a field added to one of its types must be added there too,
// or requests differing only in it would share a verdict.
func TestSeedCheckerKeyCoversTheInput(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want []string
	}{
		{keystore.KeyRequest{}, []string{"action", "service", "member", "key"}},
		{keystore.ServiceInput{}, []string{"id", "plan", "keyCount", "apis"}},
		{keystore.Member{}, []string{"id", "service", "role"}},
		{keystore.KeySpec{}, []string{"name", "contentApi", "managementApi"}},
		{keystore.ContentAPI{}, []string{"default", "individual"}},
		{keystore.ContentPerms{}, []string{"get", "getAllDrafts", "getAllClosed", "post", "put", "patch", "delete"}},
		{keystore.ManagementPerms{}, []string{"getContents", "patchContentCreatedBy", "patchContentStatus", "getMedia", "postMedia", "deleteMedia", "getMembers", "getApis", "getService"}},
	} {
		typ := reflect.TypeOf(tc.v)
		var got []string
		for f := range typ.Fields() {
			if f.IsExported() {
				got = append(got, strings.Split(f.Tag.Get("json"), ",")[0])
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s has JSON fields %v; the seed checker's key (internal/authz/seed.go) encodes %v", typ, got, tc.want)
		}
	}
}

// seedCapture is the policy authorizer, keeping the seed checker it gave.
type seedCapture struct {
	authz.Policy
	mu sync.Mutex
	sc *authz.SeedCheck
}

func (c *seedCapture) SeedChecker(ctx context.Context) (keystore.SeedChecker, error) {
	sc, err := c.Policy.SeedChecker(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sc, _ = sc.(*authz.SeedCheck)
	return sc, err
}

// TestLoadSeedKeysEvaluatesEachShapeOnce: seeding 5,000 keys of 5 shapes
// over 250 services with the shipped keys policy makes 5 evaluations, and
// a violation is still reported naming its key (the first of its shape).
func TestLoadSeedKeysEvaluatesEachShapeOnce(t *testing.T) {
	eng, err := engine.New(t.Context(), "../../policies", engine.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	const n, services = 5000, 250
	shapes := []string{
		`{"default":{"get":true}}`,
		`{"default":{"get":true,"getAllDrafts":true,"getAllClosed":true}}`,
		`{"individual":{"blogs":{"get":true},"contact":{"post":true}}}`,
		`{"default":{"get":true},"individual":{"contact":{"post":true,"put":true}}}`,
		`{"individual":{"news":{"get":true,"getAllClosed":true}}}`,
	}
	seed := func(bad int) (*seedCapture, []*keystore.Key, error) {
		data := t.TempDir()
		var svcs, keys []string
		for i := range services {
			svcs = append(svcs, fmt.Sprintf(`{"id":"svc-%d","plan":"enterprise"}`, i))
		}
		for i := range n {
			shape := shapes[i%len(shapes)]
			if i == bad {
				shape = `{"individual":{"blogs":{"getAllDrafts":true}}}`
			}
			keys = append(keys, fmt.Sprintf(`{"id":"k-%d","service":"svc-%d","name":"key %d","secret":"s-%d","contentApi":%s}`, i, i%services, i, i, shape))
		}
		write(t, filepath.Join(data, "services.json"), "["+strings.Join(svcs, ",")+"]")
		write(t, filepath.Join(data, "members.json"), "[]")
		write(t, filepath.Join(data, "keys.json"), "[\n"+strings.Join(keys, ",\n")+"\n]")
		d, err := keystore.LoadDirectory(data)
		if err != nil {
			t.Fatal(err)
		}
		c := &seedCapture{Policy: authz.New(eng)}
		got, err := keystore.LoadSeedKeys(t.Context(), data, d, time.Now().UTC(), c)
		return c, got, err
	}
	c, keys, err := seed(-1)
	if err != nil || len(keys) != n {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	if e := c.sc.Evaluations(); e != int64(len(shapes)) {
		t.Errorf("%d evaluations for %d keys of %d shapes", e, n, len(shapes))
	}
	_, _, err = seed(3777)
	var de *keystore.DataError
	if !errors.As(err, &de) || de.Field != "[3777].contentApi.individual.blogs.getAllDrafts" || de.Reason != "getAllDrafts requires get" {
		t.Errorf("a violating seed key: %v", err)
	}
}
