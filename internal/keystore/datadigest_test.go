package keystore_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDataDigest: the digest changes with any field of a service or member
// (the token too), and not with formatting or with keys.
func TestDataDigest(t *testing.T) {
	dir := writeData(t, map[string]string{"services.json": goodServices, "members.json": goodMembers})
	f := newFixture(t, func(o *storeOpts) { o.DataDir = dir })
	for _, tc := range []struct {
		note               string
		services, members  string
		createKey, changed bool
	}{
		{"nothing changed", goodServices, goodMembers, false, false},
		{"formatting only", "[\n  {\"plan\": \"team\", \"id\": \"svc\"}\n]\n", goodMembers, false, false},
		{"a key created", goodServices, goodMembers, true, false},
		{"a plan", `[{"id":"svc","plan":"business"}]`, goodMembers, false, true},
		{"a service added", `[{"id":"svc","plan":"team"},{"id":"other","plan":"team"}]`, goodMembers, false, true},
		{"a role", goodServices, `[{"id":"svc-admin","service":"svc","role":"editor","token":"t1"}]`, false, true},
		{"a token", goodServices, `[{"id":"svc-admin","service":"svc","role":"admin","token":"t2"}]`, false, true},
		{"a member renamed", goodServices, `[{"id":"admin","service":"svc","role":"admin","token":"t1"}]`, false, true},
	} {
		t.Run(tc.note, func(t *testing.T) {
			for name, content := range map[string]string{"services.json": goodServices, "members.json": goodMembers} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.store.ReloadData(t.Context()); err != nil {
				t.Fatal(err)
			}
			before := f.store.DataDigest()
			for name, content := range map[string]string{"services.json": tc.services, "members.json": tc.members} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.store.ReloadData(t.Context()); err != nil {
				t.Fatal(err)
			}
			if tc.createKey {
				if _, err := f.store.CreateKey(t.Context(), "t1", "svc", readSpec()); err != nil {
					t.Fatal(err)
				}
			}
			if changed := f.store.DataDigest() != before; changed != tc.changed {
				t.Errorf("digest changed: %v, want %v", changed, tc.changed)
			}
		})
	}
}
