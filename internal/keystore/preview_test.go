package keystore_test

import (
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

// TestPreview: a preview of a create or an update is decided as the write
// would be (same request to the policy, same refusals), and changes
// nothing: no key, no audit entry, no count.
func TestPreview(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	snapshot := func() (int, int) {
		page, err := f.store.Audit(ctx, teamAdmin, "team-demo", keystore.AuditQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return f.store.KeyCount("team-demo"), len(page.Entries)
	}
	keys0, audit0 := snapshot()
	if keys0 != 1 {
		t.Fatalf("team-demo has %d keys, want the demo key", keys0)
	}
	ok := keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, Post: true}}}
	bad := keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{GetAllDrafts: true}}}
	for _, tc := range []struct {
		note   string
		token  string
		id     string // "" previews a create
		spec   keystore.KeySpec
		status int // 0: allowed
	}{
		{note: "create", token: teamAdmin, spec: ok},
		{note: "update", token: teamAdmin, id: demoKeyID, spec: ok},
		{note: "create by an editor", token: teamEditor, spec: ok, status: http.StatusForbidden},
		{note: "create by nobody", token: "nobody", spec: ok, status: http.StatusUnauthorized},
		{note: "create with a violation", token: teamAdmin, spec: bad, status: http.StatusUnprocessableEntity},
		{note: "update of a missing key", token: teamAdmin, id: "key_missing", spec: ok, status: http.StatusNotFound},
		{note: "bad endpoint name", token: teamAdmin, spec: keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{
			Individual: map[string]keystore.ContentPerms{"Not An Endpoint": {Get: true}}}}, status: http.StatusBadRequest},
	} {
		t.Run(tc.note, func(t *testing.T) {
			var err error
			var key keystore.Key
			if tc.id == "" {
				var c keystore.Created
				c, err = f.store.PreviewCreate(ctx, tc.token, "team-demo", tc.spec)
				key = c.Key
				if err == nil && (c.Secret != "" || c.ID != "" || len(c.Warnings) == 0) {
					t.Errorf("preview of a create: %+v", c)
				}
			} else {
				var u keystore.Updated
				u, err = f.store.PreviewUpdate(ctx, tc.token, "team-demo", tc.id, tc.spec)
				key = u.Key
				if err == nil && (u.ID != tc.id || u.Revision < 2) {
					t.Errorf("preview of an update: %+v", u)
				}
			}
			var ke *keystore.Error
			switch {
			case tc.status == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.status != 0 && (!errors.As(err, &ke) || ke.Status != tc.status):
				t.Fatalf("got %v, want status %d", err, tc.status)
			case tc.status == 0 && !reflect.DeepEqual(key.ContentAPI.Default, tc.spec.ContentAPI.Default):
				t.Errorf("previewed key %+v", key)
			}
		})
	}
	if keys, audit := snapshot(); keys != keys0 || audit != audit0 {
		t.Errorf("previews changed the store: keys %d -> %d, audit %d -> %d", keys0, keys, audit0, audit)
	}
	if k, err := f.store.GetKey(ctx, teamAdmin, "team-demo", demoKeyID); err != nil || k.Revision != 1 || k.ContentAPI.Default.Post {
		t.Errorf("the demo key after previews: %+v, %v", k, err)
	}
}
