package keystore_test

import (
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/pgtest"
)

const (
	apisServices = `[{"id":"svc","plan":"team","apis":["blogs","news"]},{"id":"bare","plan":"team"},{"id":"none","plan":"team","apis":[]}]`
	apisMembers  = `[{"id":"svc-admin","service":"svc","role":"admin","token":"t-svc"},` +
		`{"id":"bare-admin","service":"bare","role":"admin","token":"t-bare"},` +
		`{"id":"none-admin","service":"none","role":"admin","token":"t-none"}]`
)

// serviceAPIsCases: what each service of apisServices lists, and what the
// keys policy input of a create on it carries.
var serviceAPIsCases = []struct {
	service, token string
	want           []string
}{
	{"svc", "t-svc", []string{"blogs", "news"}},
	{"bare", "t-bare", nil},
	{"none", "t-none", []string{}},
}

// checkServiceAPIs: the store keeps each service's APIs as data lists them
// (nil when it does not, empty when it lists none), and a create's keys
// policy input carries them as service.apis.
func checkServiceAPIs(t *testing.T, s *keystore.Store, authz *keystoretest.Authorizer) {
	t.Helper()
	for _, tc := range serviceAPIsCases {
		svc, ok := s.Service(tc.service)
		if !ok {
			t.Fatalf("service %s not found", tc.service)
		}
		if !slices.Equal(svc.APIs, tc.want) || (svc.APIs == nil) != (tc.want == nil) {
			t.Errorf("service %s: APIs %#v, want %#v", tc.service, svc.APIs, tc.want)
		}
		if _, err := s.CreateKey(t.Context(), tc.token, tc.service, readSpec()); err != nil {
			t.Fatalf("create on %s: %v", tc.service, err)
		}
		reqs := authz.Requests()
		last := reqs[len(reqs)-1]
		if last.Action != keystore.ActionCreate || !slices.Equal(last.Service.APIs, tc.want) || (last.Service.APIs == nil) != (tc.want == nil) {
			t.Errorf("create on %s: policy input service %+v, want apis %#v", tc.service, last.Service, tc.want)
		}
	}
}

func TestServiceAPIsLocal(t *testing.T) {
	authz := &keystoretest.Authorizer{}
	dir := writeData(t, map[string]string{"services.json": apisServices, "members.json": apisMembers})
	s, err := keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}),
		keystore.Options{DataDir: dir, Authorizer: authz, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	checkServiceAPIs(t, s, authz)
}

// TestServiceAPIsPostgres: PostgreSQL stores the APIs with the service, and
// a database made before services had APIs opens (the migration adds the
// column; its services list none).
func TestServiceAPIsPostgres(t *testing.T) {
	c := pgtest.Start(t)
	url, err := c.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dir := writeData(t, map[string]string{"services.json": apisServices, "members.json": apisMembers})
	open := func(authz *keystoretest.Authorizer) *keystore.Store {
		t.Helper()
		s, err := keystore.New(t.Context(), postgres.New(url, postgres.Options{}),
			keystore.Options{DataDir: dir, Authorizer: authz, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}
	authz := &keystoretest.Authorizer{}
	s := open(authz)
	checkServiceAPIs(t, s, authz)
	s.Close()

	// The database as a keygate before service APIs left it.
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER TABLE services DROP COLUMN apis`, `DELETE FROM schema_migrations WHERE version = 4`} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close(t.Context())

	authz = &keystoretest.Authorizer{}
	s = open(authz)
	defer s.Close()
	for _, tc := range serviceAPIsCases {
		svc, ok := s.Service(tc.service)
		if !ok || svc.APIs != nil {
			t.Errorf("old database, service %s: %+v %v, want no APIs", tc.service, svc, ok)
		}
		if _, err := s.CreateKey(t.Context(), tc.token, tc.service, readSpec()); err != nil {
			t.Fatalf("old database, create on %s: %v", tc.service, err)
		}
	}
}
