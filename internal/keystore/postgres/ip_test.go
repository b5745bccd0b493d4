package postgres_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/pgtest"
)

// planNetworkAuthz is networkAuthz plus the plan rules of data.network: the
// feature only on business, advanced and enterprise, at most 3 entries per
// list. It records the plans it was asked about.
type planNetworkAuthz struct {
	networkAuthz
	mu    sync.Mutex
	plans []string
}

func (a *planNetworkAuthz) AuthorizeIPRestrictions(ctx context.Context, req keystore.NetworkRequest) (keystore.NetworkDecision, error) {
	a.mu.Lock()
	a.plans = append(a.plans, req.Service.Plan)
	a.mu.Unlock()
	dec, err := a.networkAuthz.AuthorizeIPRestrictions(ctx, req)
	if err != nil || !dec.Allow || req.Settings == nil {
		return dec, err
	}
	if !slices.Contains([]string{"business", "advanced", "enterprise"}, req.Service.Plan) {
		return keystore.NetworkDecision{Status: 403, Code: "plan_feature_unavailable", Message: "not on the " + req.Service.Plan + " plan"}, nil
	}
	for _, l := range append([][]string{req.Settings.Default}, mapsValues(req.Settings.APIs)...) {
		if len(l) > 3 {
			return keystore.NetworkDecision{Status: 422, Code: "ip_entry_limit_exceeded", Message: "too many", Limit: 3}, nil
		}
	}
	return dec, nil
}

func mapsValues(m map[string][]string) [][]string {
	var out [][]string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// ipDataDir is the repository's data/ plus an ip-restrictions.json seed.
func ipDataDir(t *testing.T, seed string) string {
	t.Helper()
	files := map[string]string{"ip-restrictions.json": seed}
	for _, name := range []string{"services.json", "members.json", "keys.json"} {
		b, err := os.ReadFile(filepath.Join(repoDataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	return writeData(t, files)
}

func restricts(s *keystore.Store, service, want string) bool {
	r, _, ok := s.IPRestrictions(service)
	if want == "" {
		return !ok
	}
	return ok && strings.Join(r.Default, ",") == want
}

// TestPostgresIPRestrictions: the settings live in PostgreSQL. data/ seeds
// them once; a PUT on one replica is in its own memory when it returns and
// reaches the other through the change feed (generation moved); a refused
// PUT — a plan without the feature, too many entries, a plan changed in the
// database since the screening — leaves no change row and uses no revision;
// a resync and a fresh replica load the setting.
func TestPostgresIPRestrictions(t *testing.T) {
	c := pgtest.Start(t)
	ctx := t.Context()
	authz := &planNetworkAuthz{}
	data := ipDataDir(t, `{"enterprise-demo":{"default":["192.0.2.0/24"],"apis":{}}}`)
	withIP := func(o *pgOpts) { o.Authorizer, o.Network, o.DataDir = authz, authz, data }
	stores, url := pgStores(t, c, 2, withIP)
	a, b := stores[0], stores[1]
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	counts := func() (head, changes, ipChanges int64) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT revision, (SELECT count(*) FROM changes), (SELECT count(*) FROM changes WHERE op = 'ip') FROM head`).Scan(&head, &changes, &ipChanges); err != nil {
			t.Fatal(err)
		}
		return head, changes, ipChanges
	}

	for i, s := range stores {
		if !restricts(s, "enterprise-demo", "192.0.2.0/24") || !restricts(s, "business-demo", "") {
			t.Fatalf("replica %d: seed not loaded", i)
		}
	}

	const admin = "business-demo-admin-token"
	set := keystore.IPRestrictions{Default: []string{"203.0.113.0/24"}, APIs: map[string][]string{"blogs": {"2001:db8::1"}}}
	gen := b.Generation()
	if _, err := a.PutIPRestrictions(ctx, admin, "business-demo", set); err != nil {
		t.Fatal(err)
	}
	if !restricts(a, "business-demo", "203.0.113.0/24") {
		t.Fatal("the writer's memory lacks the setting it just wrote")
	}
	took := eventually(t, time.Second, "setting reaches B", func() bool { return restricts(b, "business-demo", "203.0.113.0/24") })
	t.Logf("B applied the setting %s after A's PUT returned", took)
	if b.Generation() == gen {
		t.Fatal("B's generation did not move: decision caches would not see the setting")
	}
	if got, err := b.GetIPRestrictions(ctx, admin, "business-demo"); err != nil || strings.Join(got.APIs["blogs"], ",") != "2001:db8::1" {
		t.Fatalf("B GET: %+v, %v", got, err)
	}
	head, changes, ipChanges := counts()
	if ipChanges != 1 {
		t.Fatalf("%d change rows of op ip, want 1", ipChanges)
	}
	var row string
	if err := conn.QueryRow(ctx, `SELECT settings::text FROM ip_restrictions WHERE service = 'business-demo'`).Scan(&row); err != nil || !strings.Contains(row, "203.0.113.0/24") {
		t.Fatalf("ip_restrictions row %q, %v", row, err)
	}

	// Refusals leave nothing behind. The last one: the plan changed in the
	// database behind the replicas' backs; the screening on memory still
	// sees business, the locked row says team.
	for _, tc := range []struct {
		name, token, service string
		settings             keystore.IPRestrictions
		prepare              string
		status               int
		code                 string
	}{
		{"plan without the feature", "team-demo-admin-token", "team-demo", keystore.IPRestrictions{Default: []string{"203.0.113.7"}}, "", http.StatusForbidden, "plan_feature_unavailable"},
		{"too many entries", admin, "business-demo", keystore.IPRestrictions{Default: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}}, "", http.StatusUnprocessableEntity, "ip_entry_limit_exceeded"},
		{"editor", "business-demo-editor-token", "business-demo", set, "", http.StatusForbidden, "forbidden"},
		{"plan changed under the lock", admin, "business-demo", keystore.IPRestrictions{Default: []string{"198.51.100.1"}}, `UPDATE services SET plan = 'team' WHERE id = 'business-demo'`, http.StatusForbidden, "plan_feature_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prepare != "" {
				if _, err := conn.Exec(ctx, tc.prepare); err != nil {
					t.Fatal(err)
				}
			}
			_, err := a.PutIPRestrictions(ctx, tc.token, tc.service, tc.settings)
			var ke *keystore.Error
			if !errors.As(err, &ke) || ke.Status != tc.status || ke.Code != tc.code {
				t.Fatalf("PUT: %v, want %d %s", err, tc.status, tc.code)
			}
			if h, ch, _ := counts(); h != head || ch != changes {
				t.Fatalf("head %d, %d change rows after a refused PUT; want %d and %d", h, ch, head, changes)
			}
		})
	}
	if !restricts(a, "business-demo", "203.0.113.0/24") {
		t.Fatal("a refused PUT changed the setting")
	}
	if _, err := conn.Exec(ctx, `UPDATE services SET plan = 'business' WHERE id = 'business-demo'`); err != nil {
		t.Fatal(err)
	}

	// A full resync (a new epoch) and a fresh replica keep the setting.
	if _, err := conn.Exec(ctx, `UPDATE head SET epoch = 'restored'`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "B resyncs", func() bool { return b.Status().Resyncs > 0 })
	if !restricts(b, "business-demo", "203.0.113.0/24") || !restricts(b, "enterprise-demo", "192.0.2.0/24") {
		t.Fatal("B lost a setting in the resync")
	}
	fresh := pgOpen(t, url, 1, withIP)[0]
	if !restricts(fresh, "business-demo", "203.0.113.0/24") || !restricts(fresh, "enterprise-demo", "192.0.2.0/24") {
		t.Fatal("a fresh replica lacks a setting")
	}

	// Cleared on A: no restriction on B, and no row left.
	if _, err := a.PutIPRestrictions(ctx, admin, "business-demo", keystore.IPRestrictions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "clear reaches B", func() bool { return restricts(b, "business-demo", "") })
	var rows int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM ip_restrictions WHERE service = 'business-demo'`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d rows after clearing, %v", rows, err)
	}
}

// TestPostgresIPSeedUnknownService: a seed setting for a service data/ does
// not have stops the seeding with the file and the service named.
func TestPostgresIPSeedUnknownService(t *testing.T) {
	c := pgtest.Start(t)
	url, err := c.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	data := ipDataDir(t, `{"nowhere":{"default":["192.0.2.1"],"apis":{}}}`)
	_, err = openPG(t.Context(), url, pgOpts{Options: keystore.Options{DataDir: data, Authorizer: &planNetworkAuthz{}}})
	if err == nil || !strings.Contains(err.Error(), "ip-restrictions.json") || !strings.Contains(err.Error(), `unknown service "nowhere"`) {
		t.Fatalf("Open: %v, want the seed file and the unknown service named", err)
	}
}

// TestPostgresIPMigrationUpgradesAVersion1Database: a database of the
// previous schema (version 1 only, with key change rows) gets migration 3
// at the next start; its change rows satisfy the new constraints, and IP
// restriction writes work at once.
func TestPostgresIPMigrationUpgradesAVersion1Database(t *testing.T) {
	c := pgtest.Start(t)
	ctx := t.Context()
	authz := &planNetworkAuthz{}
	withIP := func(o *pgOpts) { o.Authorizer, o.Network = authz, authz }
	db, url, err := c.NewNamedDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := pgOpen(t, url, 1, withIP)[0]
	k, err := old.CreateKey(ctx, teamAdmin, "team-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := old.DeleteKey(ctx, teamAdmin, "team-demo", k.ID); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	// Back to version 1 exactly as 0001_init.sql left it.
	if err := c.Exec(ctx, db, `DROP TABLE ip_restrictions;
		ALTER TABLE changes DROP CONSTRAINT changes_op_check, DROP CONSTRAINT changes_check;
		ALTER TABLE changes ADD CONSTRAINT changes_op_check CHECK (op IN ('put', 'delete')),
			ADD CONSTRAINT changes_check CHECK ((op = 'put') = (row IS NOT NULL));
		DELETE FROM schema_migrations WHERE version = 3`); err != nil {
		t.Fatal(err)
	}
	res, err := postgres.Migrate(ctx, postgres.MigrateOptions{URL: url, DataDir: repoDataDir, Authorizer: authz})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Applied, []int{3}) || res.Seeded {
		t.Fatalf("Migrate on a version-1 database: %+v, want migration 3 applied, no seeding", res)
	}
	s := pgOpen(t, url, 1, withIP)[0]
	if _, err := s.PutIPRestrictions(ctx, "business-demo-admin-token", "business-demo", keystore.IPRestrictions{Default: []string{"192.0.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if !restricts(s, "business-demo", "192.0.2.0/24") {
		t.Fatal("setting not served after the upgrade")
	}
}
