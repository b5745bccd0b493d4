package keystore_test

import (
	"encoding/json"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
)

func wantStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	keystoretest.WantStatus(t, err, status, code)
}

func TestKeyRequestInput(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec()); err != nil {
		t.Fatal(err)
	}
	_, _ = f.store.ListKeys(t.Context(), "nobody", "team-demo")
	reqs := f.authz.Requests()
	// seed validation; the create's screening (outside the write lock) and its
	// authoritative decision (inside it), identical here; the list.
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	// The first is the seed key's validation: a create with no member.
	if seed := reqs[0]; seed.Action != keystore.ActionCreate || seed.Member != nil || seed.Key == nil || seed.Key.Name != "Demo read-only key" {
		t.Fatalf("seed validation request %+v", seed)
	}
	reqs = reqs[1:]
	tests := []struct {
		note string
		req  keystore.KeyRequest
		want string
	}{
		{"create screened", reqs[0], `{"action":"create","service":{"id":"team-demo","plan":"team","keyCount":1,"apis":["blogs","news","contact","categories"]},"member":{"id":"team-demo-admin","service":"team-demo","role":"admin"},"key":{"name":"web","contentApi":{"default":{"get":true,"getAllDrafts":false,"getAllClosed":false,"post":false,"put":false,"patch":false,"delete":false},"individual":{}},"managementApi":{"getContents":false,"patchContentCreatedBy":false,"patchContentStatus":false,"getMedia":false,"postMedia":false,"deleteMedia":false,"getMembers":false,"getApis":false,"getService":false}}}`},
		{"create", reqs[1], `{"action":"create","service":{"id":"team-demo","plan":"team","keyCount":1,"apis":["blogs","news","contact","categories"]},"member":{"id":"team-demo-admin","service":"team-demo","role":"admin"},"key":{"name":"web","contentApi":{"default":{"get":true,"getAllDrafts":false,"getAllClosed":false,"post":false,"put":false,"patch":false,"delete":false},"individual":{}},"managementApi":{"getContents":false,"patchContentCreatedBy":false,"patchContentStatus":false,"getMedia":false,"postMedia":false,"deleteMedia":false,"getMembers":false,"getApis":false,"getService":false}}}`},
		{"list by nobody", reqs[2], `{"action":"list","service":{"id":"team-demo","plan":"team","keyCount":2,"apis":["blogs","news","contact","categories"]}}`},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			got, err := json.Marshal(tc.req)
			if err != nil || string(got) != tc.want {
				t.Errorf("input\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestCreatedMarshalsFlat(t *testing.T) {
	f := newFixture(t)
	c, err := f.store.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	b, _ := json.Marshal(c)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"id", "service", "name", "contentApi", "managementApi", "createdBy", "createdAt", "updatedAt", "revision", "secret", "warnings"} {
		if _, ok := m[field]; !ok {
			t.Errorf("created JSON lacks %q: %s", field, b)
		}
	}
}
