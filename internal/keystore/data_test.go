package keystore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/local"
)

const (
	goodServices = `[{"id":"svc","plan":"team"}]`
	goodMembers  = `[{"id":"svc-admin","service":"svc","role":"admin","token":"t1"}]`
)

func TestOpenRejectsMalformedData(t *testing.T) {
	tests := []struct {
		note  string
		files map[string]string
		file  string
		field string
	}{
		{"services missing", map[string]string{"members.json": goodMembers}, "services.json", ""},
		{"services not JSON", map[string]string{"services.json": `[{"id":"svc",}]`, "members.json": goodMembers}, "services.json", "line 1"},
		{"capitalised plan", map[string]string{"services.json": `[{"id":"svc","plan":"Team"}]`, "members.json": goodMembers}, "services.json", "[0].plan"},
		{"empty plan", map[string]string{"services.json": `[{"id":"svc"}]`, "members.json": goodMembers}, "services.json", "[0].plan"},
		{"plan not a token", map[string]string{"services.json": `[{"id":"svc","plan":"gold plan"}]`, "members.json": goodMembers}, "services.json", "[0].plan"},
		{"duplicate service", map[string]string{"services.json": `[{"id":"svc","plan":"team"},{"id":"svc","plan":"hobby"}]`, "members.json": goodMembers}, "services.json", "[1].id"},
		{"service id not a DNS label", map[string]string{"services.json": `[{"id":"Svc_1","plan":"team"}]`, "members.json": goodMembers}, "services.json", "[0].id"},
		{"unknown field", map[string]string{"services.json": `[{"id":"svc","plan":"team","limit":3}]`, "members.json": goodMembers}, "services.json", "limit"},
		{"wrong type", map[string]string{"services.json": `[{"id":"svc","plan":3}]`, "members.json": goodMembers}, "services.json", "plan"},
		{"api name capitalised", map[string]string{"services.json": `[{"id":"svc","plan":"team","apis":["blogs","Contact"]}]`, "members.json": goodMembers}, "services.json", "[0].apis[1]"},
		{"api name empty", map[string]string{"services.json": `[{"id":"svc","plan":"team","apis":[""]}]`, "members.json": goodMembers}, "services.json", "[0].apis[0]"},
		{"api name too long", map[string]string{"services.json": `[{"id":"svc","plan":"team","apis":["` + strings.Repeat("a", 65) + `"]}]`, "members.json": goodMembers}, "services.json", "[0].apis[0]"},
		{"api listed twice", map[string]string{"services.json": `[{"id":"svc","plan":"team","apis":["blogs","news","blogs"]}]`, "members.json": goodMembers}, "services.json", "[0].apis[2]"},
		{"apis not a list", map[string]string{"services.json": `[{"id":"svc","plan":"team","apis":"blogs"}]`, "members.json": goodMembers}, "services.json", "apis"},
		{"member of unknown service", map[string]string{"services.json": goodServices, "members.json": `[{"id":"m","service":"nope","role":"admin","token":"t"}]`}, "members.json", "[0].service"},
		{"capitalised role", map[string]string{"services.json": goodServices, "members.json": `[{"id":"m","service":"svc","role":"Admin","token":"t"}]`}, "members.json", "[0].role"},
		{"empty token", map[string]string{"services.json": goodServices, "members.json": `[{"id":"m","service":"svc","role":"admin","token":""}]`}, "members.json", "[0].token"},
		{"bad token hash", map[string]string{"services.json": goodServices, "members.json": `[{"id":"m","service":"svc","role":"admin","token":"sha256:abc"}]`}, "members.json", "[0].token"},
		{"shared token", map[string]string{"services.json": goodServices, "members.json": `[{"id":"a","service":"svc","role":"admin","token":"t"},{"id":"b","service":"svc","role":"editor","token":"t"}]`}, "members.json", "[1].token"},
		{"key of unknown service", map[string]string{"services.json": goodServices, "members.json": goodMembers, "keys.json": `[{"id":"k","service":"nope","secret":"s"}]`}, "keys.json", "[0].service"},
		{"key drafts without get", map[string]string{"services.json": goodServices, "members.json": goodMembers, "keys.json": `[{"id":"k","service":"svc","secret":"s","contentApi":{"default":{"getAllClosed":true}}}]`}, "keys.json", "[0].contentApi.default.getAllClosed"},
		{"key flag typo", map[string]string{"services.json": goodServices, "members.json": goodMembers, "keys.json": `[{"id":"k","service":"svc","secret":"s","contentApi":{"default":{"gett":true}}}]`}, "keys.json", "gett"},
		{"duplicate key secret", map[string]string{"services.json": goodServices, "members.json": goodMembers, "keys.json": `[{"id":"a","service":"svc","secret":"s"},{"id":"b","service":"svc","secret":"sha256:043a718774c572bd8a25adbeb1bfcd5c0256ae11cecf9f9c3f925d0e52beaf89"}]`}, "keys.json", "[1].secret"},
		{"keys truncated", map[string]string{"services.json": goodServices, "members.json": goodMembers, "keys.json": `[{"id":"a","serv`}, "keys.json", ""},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			dir := writeData(t, tc.files)
			state := filepath.Join(t.TempDir(), "state.json")
			_, err := keystore.New(t.Context(), local.New(local.Options{StatePath: state}), keystore.Options{DataDir: dir, Authorizer: newFixtureAuthz()})
			var de *keystore.DataError
			if !errors.As(err, &de) {
				t.Fatalf("want a DataError, got %v", err)
			}
			if !strings.HasSuffix(de.File, tc.file) || !strings.Contains(de.Field, tc.field) {
				t.Errorf("error names %q field %q; want file %s field %q: %v", de.File, de.Field, tc.file, tc.field, err)
			}
			if _, statErr := os.Stat(state); statErr == nil {
				t.Error("a failed Open wrote state")
			}
		})
	}
}

func TestSeedHashedSecret(t *testing.T) {
	dir := writeData(t, map[string]string{"services.json": goodServices, "members.json": `[{"id":"a","service":"svc","role":"admin","token":"sha256:043a718774c572bd8a25adbeb1bfcd5c0256ae11cecf9f9c3f925d0e52beaf89"}]`,
		"keys.json": `[{"id":"k","service":"svc","secret":"sha256:043a718774c572bd8a25adbeb1bfcd5c0256ae11cecf9f9c3f925d0e52beaf89","contentApi":{"default":{"get":true}}}]`})
	f := newFixture(t, func(o *storeOpts) { o.DataDir = dir })
	if k, ok := f.store.KeyBySecret("s"); !ok || k.ID != "k" {
		t.Errorf("sha256 seed secret: %+v %v", k, ok)
	}
	if m, ok := f.store.MemberByToken("s"); !ok || m.ID != "a" {
		t.Errorf("sha256 seed token: %+v %v", m, ok)
	}
}

func TestReloadData(t *testing.T) {
	dir := writeData(t, map[string]string{"services.json": goodServices, "members.json": goodMembers})
	f := newFixture(t, func(o *storeOpts) { o.DataDir = dir })
	c, err := f.store.CreateKey(t.Context(), "t1", "svc", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("malformed file keeps previous data", func(t *testing.T) {
		gen := f.store.Generation()
		write("services.json", `[{"id":"svc","plan":"team"},{"id":"new","plan":"business"}]`)
		write("members.json", `[{"id":"x","service":"svc","role":"admin","token":"t2"},{"id":"y","service":"gone","role":"admin","token":"t3"}]`)
		err := f.store.ReloadData(t.Context())
		if err == nil || !strings.Contains(err.Error(), "members.json") || !strings.Contains(err.Error(), "[1].service") {
			t.Fatalf("ReloadData error = %v", err)
		}
		if _, ok := f.store.Service("new"); ok {
			t.Error("half-reloaded: new service visible")
		}
		if _, ok := f.store.MemberByToken("t1"); !ok {
			t.Error("previous member lost")
		}
		if f.store.Generation() != gen {
			t.Error("Generation changed on a failed reload")
		}
	})
	t.Run("valid files swap in", func(t *testing.T) {
		gen := f.store.Generation()
		write("members.json", `[{"id":"x","service":"svc","role":"admin","token":"t2"}]`)
		if err := f.store.ReloadData(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.store.MemberByToken("t1"); ok {
			t.Error("removed member still resolves")
		}
		if _, ok := f.store.Service("new"); !ok {
			t.Error("new service missing")
		}
		if _, ok := f.store.KeyBySecret(c.Secret); !ok {
			t.Error("keys were lost on reload")
		}
		if f.store.Generation() == gen {
			t.Error("Generation unchanged")
		}
	})
}

// TestPlanNamesComeFromPolicyData: a plan the security team adds to
// policies/plans/data.json can be used in services.json without rebuilding
// keygate; Go checks only the name's shape. A plan the policy data does not
// know gets no keys (the keys policy's limit is 0), at start and on reload.
func TestPlanNamesComeFromPolicyData(t *testing.T) {
	dir := writeData(t, map[string]string{
		"services.json": `[{"id":"svc","plan":"startup"}]`,
		"members.json":  goodMembers,
	})
	authz := newFixtureAuthz()
	authz.Limits = map[string]int{"startup": 2} // as if policies/plans/data.json had it
	s, err := keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}), keystore.Options{DataDir: dir, Authorizer: authz})
	if err != nil {
		t.Fatalf("Open with a plan known only to the policy data: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateKey(t.Context(), "t1", "svc", readSpec()); err != nil {
		t.Fatalf("create on the new plan: %v", err)
	}

	// A plan the policy data lacks: loads, but no key can be created.
	if err := os.WriteFile(filepath.Join(dir, "services.json"), []byte(`[{"id":"svc","plan":"platinum"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadData(t.Context()); err != nil {
		t.Fatalf("reload with a plan the policy does not know: %v", err)
	}
	_, err = s.CreateKey(t.Context(), "t1", "svc", readSpec())
	var ke *keystore.Error
	if !errors.As(err, &ke) || ke.Status != 409 || ke.Limit != 0 {
		t.Fatalf("create on an unknown plan = %v, want 409 with limit 0", err)
	}
}
