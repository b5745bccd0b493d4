package server

import (
	"strconv"
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

// TestKeyInputsBounded: keys deleted on another replica (or dropped by a resync) are never
// forgotten through the local delete route, so the cache of key inputs is bounded in entries
// instead of growing with every key that ever existed.
func TestKeyInputsBounded(t *testing.T) {
	for _, tc := range []struct {
		note      string
		max, keys int
	}{
		{"below the bound", 100, 50},
		{"at the bound", 100, 100},
		{"churn past the bound", 100, 1000},
	} {
		t.Run(tc.note, func(t *testing.T) {
			c := newKeyInputs()
			c.max = tc.max
			for i := range tc.keys {
				k := keystore.Key{ID: "k" + strconv.Itoa(i), Service: "svc", Revision: 1}
				if got := c.get(&k); got.Compare(keyValue(c.perms, &k)) != 0 {
					t.Fatalf("key %d: wrong input", i)
				}
			}
			if len(c.m) > tc.max {
				t.Fatalf("%d entries after %d keys, bound %d", len(c.m), tc.keys, tc.max)
			}
		})
	}
}
