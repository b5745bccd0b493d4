// Command gen writes a local state and a PostgreSQL database with the code
// of this tree, for fixtures of a later keygate.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/pgtest"
)

type netAuthz struct{ keystoretest.Authorizer }

func (a *netAuthz) AuthorizeIPRestrictions(_ context.Context, req keystore.NetworkRequest) (keystore.NetworkDecision, error) {
	if req.Member == nil || req.Member.Role != "admin" || req.Member.Service != req.Service.ID {
		return keystore.NetworkDecision{Status: 403, Code: "forbidden"}, nil
	}
	return keystore.NetworkDecision{Allow: true, Status: 200, Code: "allowed"}, nil
}

func write(ctx context.Context, s *keystore.Store) {
	c := func(id, idem string) context.Context {
		return keystore.WithCaller(ctx, keystore.Caller{Address: "192.0.2.7", RequestID: id, IdempotencyKey: idem})
	}
	const admin, svc = "team-demo-admin-token", "team-demo"
	spec := keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true},
		Individual: map[string]keystore.ContentPerms{"blogs": {Get: true, GetAllDrafts: true}}}}
	k, err := s.CreateKey(c("g1", "idem-1"), admin, svc, spec)
	must(err)
	fmt.Println("secret web:", k.Secret, k.ID)
	spec.Name = "web2"
	_, err = s.UpdateKey(c("g2", ""), admin, svc, k.ID, spec)
	must(err)
	r, err := s.RotateKey(c("g3", ""), admin, svc, k.ID)
	must(err)
	fmt.Println("secret rotated:", r.Secret)
	k2, err := s.CreateKey(c("g4", ""), admin, svc, keystore.KeySpec{Name: "gone"})
	must(err)
	must(s.DeleteKey(c("g5", ""), admin, svc, k2.ID))
	// Refusals that carried a NUL byte or invalid UTF-8 into the trail.
	_ = s.DeleteKey(c("g6\x00nul", ""), admin, svc, "a\x00b")
	_, _ = s.RotateKey(c("g7", ""), admin, svc, "bad\xffutf8")
	bad := spec
	bad.Name = "read\x00"
	_, _ = s.CreateKey(c("g8", ""), admin, svc, bad)
	_, _ = s.UpdateKey(c("g9", ""), admin, "team\x00demo", k.ID, spec)
	_, _ = s.CreateKey(c("g10", ""), "team-demo-editor-token", svc, spec)
	_, err = s.PutIPRestrictions(ctx, "business-demo-admin-token", "business-demo",
		keystore.IPRestrictions{Default: []string{"203.0.113.0/24"}, APIs: map[string][]string{"news": {"2001:db8::/32"}}})
	must(err)
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func main() {
	ctx := context.Background()
	clock := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	state, data := os.Args[1], os.Args[2]
	s, err := keystore.Open(ctx, keystore.Options{DataDir: data, StatePath: state, Authorizer: &netAuthz{}, Now: now})
	must(err)
	write(ctx, s)
	must(s.Close())
	if len(os.Args) > 3 && os.Args[3] == "pg" {
		bin, err := pgtest.FindBin()
		must(err)
		c, err := pgtest.New(bin)
		must(err)
		must(c.Start())
		defer c.Destroy()
		name, url, err := c.NewNamedDatabase(ctx)
		must(err)
		p, err := keystore.Open(ctx, keystore.Options{DataDir: data, Postgres: url, Authorizer: &netAuthz{}, Now: now})
		must(err)
		write(ctx, p)
		must(p.Close())
		fmt.Println("PGURL", strings.TrimSuffix(c.URL(name), "?sslmode=disable"), name, c.Port)
		fmt.Println("press enter")
		var x string
		fmt.Scanln(&x)
	}
}
