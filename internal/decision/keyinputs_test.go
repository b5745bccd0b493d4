package decision

import (
	"maps"
	"reflect"
	"strconv"
	"testing"
	"time"

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
			_ = c.get(keystore.RefOf(lost))

			now := lost
			now.ContentAPI.Individual = lost.ContentAPI.Individual
			tt.change(&now)
			got := c.get(keystore.RefOf(now)).value
			want := keyValue(c.perms, &now)
			if got.Compare(want) != 0 {
				t.Fatalf("input of the key as it is now:\n got %v\nwant %v", got, want)
			}
		})
	}
	t.Run("unchanged key reuses its input", func(t *testing.T) {
		c := newKeyInputs()
		first := c.get(keystore.RefOf(base)).value
		same := base
		same.ContentAPI.Individual = map[string]keystore.ContentPerms{"blogs": {Get: true}}
		if second := c.get(keystore.RefOf(same)).value; second != first {
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
				if got := c.get(keystore.RefOf(k)).value; got.Compare(keyValue(c.perms, &k)) != 0 {
					t.Fatalf("key %d: wrong input", i)
				}
			}
			if len(c.byID) > tc.max {
				t.Fatalf("%d entries after %d keys, bound %d", len(c.byID), tc.keys, tc.max)
			}
		})
	}
}

// TestSameKeyInputSeesEveryField: whatever field keystore.Key gains (allowed client
// addresses, say), a change to it that changes the key's policy input must make
// sameKeyInput false, or the cached input of the old version answers for the new one.
func TestSameKeyInputSeesEveryField(t *testing.T) {
	perms := newPermTerms()
	base := keystore.Key{ID: "k1", Service: "svc", Name: "web", Revision: 2,
		ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"blogs": {Get: true}}}}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			changed := base
			changed.ContentAPI.Individual = maps.Clone(base.ContentAPI.Individual)
			if !mutate(reflect.ValueOf(&changed).Elem().Field(i)) {
				t.Fatalf("the test cannot change a %s: teach mutate", f.Type)
			}
			if keyValue(perms, &base).Compare(keyValue(perms, &changed)) == 0 {
				return // not in the policy input
			}
			if sameKeyInput(&base, &changed) {
				t.Fatalf("a change of %s changes the policy input but sameKeyInput does not see it", f.Name)
			}
		})
	}
}

// mutate changes v in place to another value of its type; false when it
// does not know how.
func mutate(v reflect.Value) bool {
	if tm, ok := v.Addr().Interface().(*time.Time); ok {
		*tm = tm.Add(time.Hour)
		return true
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		k := reflect.New(v.Type().Key()).Elem()
		if !mutate(k) {
			return false
		}
		v.SetMapIndex(k, reflect.Zero(v.Type().Elem()))
	case reflect.Struct:
		// Every exported field in turn would be thorough; one that
		// changes the input is enough to see the struct compared.
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && mutate(v.Field(i)) {
				return true
			}
		}
		return false
	default:
		return false
	}
	return true
}
