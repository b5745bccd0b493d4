package server

import (
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

// TestKeyInputsFollowTheKey: the cached input of a key is the key the store
// returned, whatever came before under the same id and revision. A shared
// store restored from an older backup reuses revisions (the lost revision 2
// and the next write after the restore are both revision 2): the input built
// for the lost one must not answer for the new one, or a permission taken
// away keeps being granted.
func TestKeyInputsFollowTheKey(t *testing.T) {
	base := keystore.Key{ID: "k1", Service: "svc", Name: "web", Revision: 2,
		ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true},
			Individual: map[string]keystore.ContentPerms{"blogs": {Get: true}}}}
	tests := []struct {
		name   string
		change func(k *keystore.Key)
	}{
		{"default permissions", func(k *keystore.Key) { k.ContentAPI.Default.Post = false }},
		{"individual entry", func(k *keystore.Key) {
			k.ContentAPI.Individual = map[string]keystore.ContentPerms{"blogs": {Get: true, Delete: false}}
		}},
		{"individual entry removed", func(k *keystore.Key) { k.ContentAPI.Individual = nil }},
		{"management permissions", func(k *keystore.Key) { k.ManagementAPI.GetMembers = false }},
		{"name", func(k *keystore.Key) { k.Name = "renamed" }},
		{"service", func(k *keystore.Key) { k.Service = "other" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newKeyInputs()
			// The lost revision: broader than what the store says now.
			lost := base
			lost.ContentAPI.Default.Post = true
			lost.ContentAPI.Individual = map[string]keystore.ContentPerms{"blogs": {Get: true, Delete: true}, "news": {Get: true}}
			lost.ManagementAPI.GetMembers = true
			lost.Name = "lost"
			_ = c.get(&lost)

			now := lost
			now.ContentAPI.Individual = lost.ContentAPI.Individual
			tt.change(&now)
			got := c.get(&now)
			want := keyValue(c.perms, &now)
			if got.Compare(want) != 0 {
				t.Fatalf("input of the key as it is now:\n got %v\nwant %v", got, want)
			}
		})
	}
	t.Run("unchanged key reuses its input", func(t *testing.T) {
		c := newKeyInputs()
		first := c.get(&base)
		same := base
		same.ContentAPI.Individual = map[string]keystore.ContentPerms{"blogs": {Get: true}}
		if second := c.get(&same); second != first {
			t.Fatal("an equal key built its input again")
		}
	})
}
