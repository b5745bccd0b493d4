package decision

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/open-policy-agent/opa/v1/ast"
)

// TestKeyValueMatchesKeyJSON: the interned permission terms must give the
// policy exactly the key's JSON shape (every flag, the right values), for
// random permission sets.
func TestKeyValueMatchesKeyJSON(t *testing.T) {
	perms := newPermTerms()
	rng := rand.New(rand.NewPCG(3, 5))
	flip := func() bool { return rng.IntN(2) == 0 }
	randContent := func() keystore.ContentPerms {
		return keystore.ContentPerms{Get: flip(), GetAllDrafts: flip(), GetAllClosed: flip(), Post: flip(), Put: flip(), Patch: flip(), Delete: flip()}
	}
	for i := range 500 {
		k := keystore.Key{ID: "k", Service: "s", Name: "n",
			ContentAPI: keystore.ContentAPI{Default: randContent(), Individual: map[string]keystore.ContentPerms{"blogs": randContent(), "news": randContent()}},
			ManagementAPI: keystore.ManagementPerms{GetContents: flip(), PatchContentCreatedBy: flip(), PatchContentStatus: flip(), GetMedia: flip(),
				PostMedia: flip(), DeleteMedia: flip(), GetMembers: flip(), GetApis: flip(), GetService: flip()}}
		raw, err := json.Marshal(struct {
			ID            string                   `json:"id"`
			Service       string                   `json:"service"`
			Name          string                   `json:"name"`
			ContentAPI    keystore.ContentAPI      `json:"contentApi"`
			ManagementAPI keystore.ManagementPerms `json:"managementApi"`
		}{k.ID, k.Service, k.Name, k.ContentAPI, k.ManagementAPI})
		if err != nil {
			t.Fatal(err)
		}
		want := ast.MustParseTerm(string(raw)).Value
		if got := keyValue(perms, &k); got.Compare(want) != 0 {
			t.Fatalf("case %d:\n got  %v\n want %v", i, got, want)
		}
	}
}
