package keystoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// Config is what the contract suite asks a driver to open a store with.
type Config struct {
	// DataDir holds the seed: services.json, members.json, keys.json and
	// (optionally) ip-restrictions.json, written by the suite.
	DataDir string
	// Authorizer decides key writes; Network decides IP restriction
	// settings (nil: every such request fails closed).
	Authorizer keystore.Authorizer
	Network    keystore.NetworkAuthorizer
	Logger     *slog.Logger
	Now        func() time.Time
}

// Instance is one store of a driver opened by an OpenFunc, on storage of
// its own (a fresh state directory, a fresh database).
type Instance struct {
	Store *keystore.Store
	// Reopen closes Store and opens the same storage again, as a restart
	// of keygate would.
	Reopen func(t *testing.T) *keystore.Store
	// Replica opens another store on the same storage, as another replica
	// sharing it would; nil for a driver that is single-node.
	Replica func(t *testing.T) *keystore.Store
}

// OpenFunc opens a store of one driver for one contract test. It closes
// whatever it opened when t ends.
type OpenFunc func(t *testing.T, cfg Config) Instance

// Tokens and secrets of the suite's seed data.
const (
	teamAdmin  = "team-demo-admin-token"
	teamEditor = "team-demo-editor-token"
	hobbyAdmin = "hobby-demo-admin-token"
	demoSecret = "team-demo-read-key"
	demoKeyID  = "team-demo-read"
)

const seedServices = `[
  {"id": "hobby-demo", "plan": "hobby"},
  {"id": "team-demo", "plan": "team"},
  {"id": "business-demo", "plan": "business"},
  {"id": "advanced-demo", "plan": "advanced"},
  {"id": "enterprise-demo", "plan": "enterprise"}
]`

const seedMembers = `[
  {"id": "hobby-demo-admin", "service": "hobby-demo", "role": "admin", "token": "hobby-demo-admin-token"},
  {"id": "hobby-demo-editor", "service": "hobby-demo", "role": "editor", "token": "hobby-demo-editor-token"},
  {"id": "team-demo-admin", "service": "team-demo", "role": "admin", "token": "team-demo-admin-token"},
  {"id": "team-demo-editor", "service": "team-demo", "role": "editor", "token": "team-demo-editor-token"},
  {"id": "business-demo-admin", "service": "business-demo", "role": "admin", "token": "business-demo-admin-token"},
  {"id": "business-demo-editor", "service": "business-demo", "role": "editor", "token": "business-demo-editor-token"},
  {"id": "advanced-demo-admin", "service": "advanced-demo", "role": "admin", "token": "advanced-demo-admin-token"},
  {"id": "advanced-demo-editor", "service": "advanced-demo", "role": "editor", "token": "advanced-demo-editor-token"},
  {"id": "enterprise-demo-admin", "service": "enterprise-demo", "role": "admin", "token": "enterprise-demo-admin-token"},
  {"id": "enterprise-demo-editor", "service": "enterprise-demo", "role": "editor", "token": "enterprise-demo-editor-token"}
]`

const seedKeys = `[{"id": "team-demo-read", "service": "team-demo", "name": "Demo read-only key", "secret": "team-demo-read-key",
  "contentApi": {"default": {"get": true}, "individual": {}}, "managementApi": {}, "createdBy": "seed", "createdAt": "2025-01-01T00:00:00Z"}]`

// seedIP restricts business-demo; the IP restriction tests use it.
const seedIP = `{"business-demo":{"default":["203.0.113.0/24"],"apis":{"blogs":[]}}}`

// env is one contract test's store and what the suite gave it.
type env struct {
	Instance
	authz *Authorizer
	logs  *logBuffer
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start opens a store of the driver on the suite's seed data.
func start(t *testing.T, open OpenFunc, network bool) *env {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"services.json": seedServices, "members.json": seedMembers, "keys.json": seedKeys, "ip-restrictions.json": seedIP} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{authz: &Authorizer{}, logs: &logBuffer{}}
	clock := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	cfg := Config{
		DataDir: dir, Authorizer: e.authz,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			clock = clock.Add(time.Second)
			return clock
		},
	}
	if network {
		cfg.Network = &NetworkAuthorizer{}
	}
	e.Instance = open(t, cfg)
	return e
}

// NetworkAuthorizer is a fake network policy: admins of the service may
// read and replace its setting; a default list with an entry containing
// "bad" is refused with 422 invalid_ip_entry.
type NetworkAuthorizer struct{}

var _ keystore.NetworkAuthorizer = (*NetworkAuthorizer)(nil)

// AuthorizeIPRestrictions implements keystore.NetworkAuthorizer.
func (*NetworkAuthorizer) AuthorizeIPRestrictions(_ context.Context, req keystore.NetworkRequest) (keystore.NetworkDecision, error) {
	switch {
	case req.Member == nil:
		return keystore.NetworkDecision{Status: 401, Code: "unauthenticated"}, nil
	case req.Member.Service != req.Service.ID || req.Member.Role != "admin":
		return keystore.NetworkDecision{Status: 403, Code: "forbidden"}, nil
	case req.Settings != nil && strings.Contains(strings.Join(req.Settings.Default, ","), "bad"):
		return keystore.NetworkDecision{Status: 422, Code: "invalid_ip_entry", Message: "bad",
			Violations: []keystore.Violation{{Endpoint: "default", Entry: "bad", Message: "bad"}}}, nil
	}
	return keystore.NetworkDecision{Allow: true, Status: 200, Code: "allowed"}, nil
}

// RunContract runs the behaviour every key store driver must have against
// the stores open opens, through keystore.Store's methods only: the seed,
// the order of refusals, the key lifecycle, refusals of invalid writes,
// failing closed, plan limits under concurrent creates, idempotent retries,
// IP restriction settings, the audit trail (and its bounds) and staleness.
func RunContract(t *testing.T, open OpenFunc) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, open OpenFunc)
	}{
		{"Seed", contractSeed},
		{"AuthorizationOrder", contractAuthorizationOrder},
		{"KeyLifecycle", contractKeyLifecycle},
		{"WriteRefusals", contractWriteRefusals},
		{"KeyNameCharacters", contractKeyNameCharacters},
		{"FailClosed", contractFailClosed},
		{"ViolationsOnlyOn422", contractViolationsOnlyOn422},
		{"ConcurrentCreatesHoldPlanLimit", contractConcurrentCreates},
		{"IdempotencyKey", contractIdempotency},
		{"IPRestrictions", contractIPRestrictions},
		{"AuditTrail", contractAuditTrail},
		{"AuditConcurrent", contractAuditConcurrent},
		{"AuditFieldsBounded", contractAuditBounded},
		{"TextNoStoreKeeps", contractUnstorableText},
		{"Staleness", contractStaleness},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open) })
	}
}

// WantStatus fails t unless err is a *keystore.Error of status and code
// (status 0: unless err is nil).
func WantStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ke *keystore.Error
	if !errors.As(err, &ke) {
		t.Fatalf("error %v (%T), want *keystore.Error %d %s", err, err, status, code)
	}
	if ke.Status != status || ke.Code != code {
		t.Fatalf("got %d %s (%s), want %d %s", ke.Status, ke.Code, ke.Message, status, code)
	}
}

func isStatus(err error, status int) bool {
	var ke *keystore.Error
	return errors.As(err, &ke) && ke.Status == status
}

func readSpec() keystore.KeySpec {
	return keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func keyCount(t *testing.T, s *keystore.Store, service string) int {
	t.Helper()
	keys, err := s.ListKeys(t.Context(), service+"-admin-token", service)
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func contractSeed(t *testing.T, open OpenFunc) {
	s := start(t, open, false).Store
	k, ok := s.KeyBySecret(demoSecret)
	if !ok || k.ID != demoKeyID || k.Service != "team-demo" || !k.ContentAPI.Default.Get || k.ContentAPI.Default.Post {
		t.Fatalf("demo key: %+v %v", k, ok)
	}
	for _, svc := range []string{"hobby-demo", "team-demo", "business-demo", "enterprise-demo"} {
		got, ok := s.Service(svc)
		if !ok || got.Plan != strings.TrimSuffix(svc, "-demo") {
			t.Errorf("service %s: %+v %v", svc, got, ok)
		}
		for role, tok := range map[string]string{"admin": svc + "-admin-token", "editor": svc + "-editor-token"} {
			m, ok := s.MemberByToken(tok)
			if !ok || m.Role != role || m.Service != svc {
				t.Errorf("member %s: %+v %v", tok, m, ok)
			}
		}
	}
	for _, bad := range []string{"", "nope", "sha256:" + strings.Repeat("0", 64)} {
		if _, ok := s.KeyBySecret(bad); ok {
			t.Errorf("KeyBySecret(%q) found a key", bad)
		}
		if _, ok := s.MemberByToken(bad); ok {
			t.Errorf("MemberByToken(%q) found a member", bad)
		}
	}
	if got := s.KeyCounts(); got["team-demo"] != 1 || got["hobby-demo"] != 0 || len(got) != 5 {
		t.Errorf("KeyCounts = %v", got)
	}
}

func contractAuthorizationOrder(t *testing.T, open OpenFunc) {
	s := start(t, open, false).Store
	tests := []struct {
		note    string
		token   string
		service string
		id      string
		status  int
		code    string
	}{
		{"no token", "", "team-demo", demoKeyID, 401, "unauthenticated"},
		{"unknown token", "nope", "team-demo", demoKeyID, 401, "unauthenticated"},
		{"editor", teamEditor, "team-demo", demoKeyID, 403, "forbidden"},
		{"admin of another service", hobbyAdmin, "team-demo", demoKeyID, 403, "forbidden"},
		{"editor probing a missing key gets 403, not 404", teamEditor, "team-demo", "missing", 403, "forbidden"},
		{"admin, unknown service: policy forbids first", teamAdmin, "nope", demoKeyID, 403, "forbidden"},
		{"admin, missing key", teamAdmin, "team-demo", "missing", 404, keystore.CodeKeyNotFound},
		{"admin, key of another service", hobbyAdmin, "hobby-demo", demoKeyID, 404, keystore.CodeKeyNotFound},
		{"admin", teamAdmin, "team-demo", demoKeyID, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			_, err := s.GetKey(t.Context(), tc.token, tc.service, tc.id)
			WantStatus(t, err, tc.status, tc.code)
			_, err = s.UpdateKey(t.Context(), tc.token, tc.service, tc.id, readSpec())
			WantStatus(t, err, tc.status, tc.code)
			_, err = s.RotateKey(t.Context(), tc.token, tc.service, tc.id+"-not-this-one")
			if tc.status == 0 {
				WantStatus(t, err, 404, keystore.CodeKeyNotFound)
			} else {
				WantStatus(t, err, tc.status, tc.code)
			}
			err = s.DeleteKey(t.Context(), tc.token, tc.service, tc.id+"-not-this-one")
			if tc.status == 0 {
				WantStatus(t, err, 404, keystore.CodeKeyNotFound)
			} else {
				WantStatus(t, err, tc.status, tc.code)
			}
		})
	}
}

func contractKeyLifecycle(t *testing.T, open OpenFunc) {
	e := start(t, open, false)
	s := e.Store
	ctx := t.Context()
	gen := s.Generation()

	spec := keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{
		Default:    keystore.ContentPerms{Get: true, GetAllDrafts: true},
		Individual: map[string]keystore.ContentPerms{"contact": {Post: true}},
	}}
	c, err := s.CreateKey(ctx, teamAdmin, "team-demo", spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.ContentAPI.Individual["contact"] = keystore.ContentPerms{Delete: true} // caller's map must not leak in
	if len(c.Secret) < 43 || c.Revision != 1 || c.CreatedBy != "team-demo-admin" || c.Warnings == nil {
		t.Fatalf("created: %+v", c)
	}
	if s.Generation() == gen {
		t.Error("Generation did not change on create")
	}
	got, ok := s.KeyBySecret(c.Secret)
	if !ok || got.ID != c.ID || !got.ContentAPI.Individual["contact"].Post || got.ContentAPI.Individual["contact"].Delete {
		t.Fatalf("KeyBySecret after create: %+v %v", got, ok)
	}
	kj, _ := json.Marshal(got)
	cj, _ := json.Marshal(c)
	if strings.Contains(strings.ToLower(string(kj)), "secret") || !strings.Contains(string(cj), `"secret":"`+c.Secret+`"`) {
		t.Errorf("key JSON %s / created JSON %s", kj, cj)
	}

	u, err := s.UpdateKey(ctx, teamAdmin, "team-demo", c.ID, keystore.KeySpec{Name: "web2", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, Post: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "web2" || u.Revision != 2 || len(u.ContentAPI.Individual) != 0 || len(u.Warnings) != 1 || u.Warnings[0].Code != "default_write" {
		t.Fatalf("updated: %+v", u)
	}
	r, err := s.RotateKey(ctx, teamAdmin, "team-demo", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Secret == c.Secret || r.Revision != 3 {
		t.Fatalf("rotated: %+v", r)
	}
	if _, ok := s.KeyBySecret(c.Secret); ok {
		t.Error("old secret still works after rotation")
	}
	if k, ok := s.KeyBySecret(r.Secret); !ok || k.Revision != 3 || k.Name != "web2" {
		t.Errorf("new secret: %+v %v", k, ok)
	}
	list, err := s.ListKeys(ctx, teamAdmin, "team-demo")
	if err != nil || len(list) != 2 || list[0].ID != demoKeyID || list[1].ID != c.ID {
		t.Fatalf("ListKeys = %+v, %v", list, err)
	}

	// Durable: a restart serves the same key, with the rotated secret only.
	s = e.Reopen(t)
	if k, ok := s.KeyBySecret(r.Secret); !ok || k.ID != c.ID || k.Revision != 3 || k.Name != "web2" || !k.ContentAPI.Default.Post {
		t.Fatalf("after restart: %+v %v", k, ok)
	}
	if _, ok := s.KeyBySecret(c.Secret); ok {
		t.Error("after restart the old secret works")
	}

	if err := s.DeleteKey(ctx, teamAdmin, "team-demo", c.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.KeyBySecret(r.Secret); ok {
		t.Error("deleted key still authenticates")
	}
	_, err = s.GetKey(ctx, teamAdmin, "team-demo", c.ID)
	WantStatus(t, err, 404, keystore.CodeKeyNotFound)
	WantStatus(t, s.DeleteKey(ctx, teamAdmin, "team-demo", c.ID), 404, keystore.CodeKeyNotFound)
	s = e.Reopen(t)
	if _, ok := s.KeyBySecret(r.Secret); ok {
		t.Error("deleted key authenticates after a restart")
	}
	if strings.Contains(e.logs.String(), c.Secret) || strings.Contains(e.logs.String(), r.Secret) || strings.Contains(e.logs.String(), teamAdmin) {
		t.Error("a secret or token reached the log")
	}
}

func contractWriteRefusals(t *testing.T, open OpenFunc) {
	tests := []struct {
		note    string
		token   string
		service string
		spec    keystore.KeySpec
		status  int
		code    string
		flag    string
	}{
		{"drafts without get", teamAdmin, "team-demo", keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"blogs": {GetAllDrafts: true}}}}, 422, "invalid_key_config", "getAllDrafts"},
		{"hobby has room for one", hobbyAdmin, "hobby-demo", readSpec(), 0, "", ""},
		{"bad endpoint name", teamAdmin, "team-demo", keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"a/b": {Get: true}}}}, 400, keystore.CodeInvalidKeySpec, ""},
		{"upper-case endpoint name", teamAdmin, "team-demo", keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"Contact": {Get: true}}}}, 400, keystore.CodeInvalidKeySpec, ""},
		{"name too long", teamAdmin, "team-demo", keystore.KeySpec{Name: strings.Repeat("x", 201)}, 400, keystore.CodeInvalidKeySpec, ""},
		{"editor", teamEditor, "team-demo", readSpec(), 403, "forbidden", ""},
		{"no member", "", "team-demo", readSpec(), 401, "unauthenticated", ""},
	}
	s := start(t, open, false).Store
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			before := s.KeyCounts()[tc.service]
			_, err := s.CreateKey(t.Context(), tc.token, tc.service, tc.spec)
			WantStatus(t, err, tc.status, tc.code)
			var ke *keystore.Error
			if tc.flag != "" && (!errors.As(err, &ke) || len(ke.Violations) == 0 || ke.Violations[0].Flag != tc.flag) {
				t.Errorf("violations: %+v", ke)
			}
			if after := s.KeyCounts()[tc.service]; tc.status != 0 && after != before {
				t.Errorf("refused write changed key count %d → %d", before, after)
			}
		})
	}
	t.Run("plan limit", func(t *testing.T) {
		_, err := s.CreateKey(t.Context(), hobbyAdmin, "hobby-demo", readSpec())
		WantStatus(t, err, http.StatusConflict, "key_limit_exceeded")
		var ke *keystore.Error
		if errors.As(err, &ke) && ke.Limit != 1 {
			t.Errorf("limit %d, want 1", ke.Limit)
		}
		if !strings.Contains(err.Error(), "hobby") {
			t.Errorf("message does not name the plan: %v", err)
		}
	})
}

func contractKeyNameCharacters(t *testing.T, open OpenFunc) {
	tests := []struct {
		name string
		want string // the character the refusal names; "" when accepted
	}{
		{"ok\nlevel=ERROR forged", "U+000A"},
		{"\x1b[2Jread", "U+001B"},
		{"read\tkey", "U+0009"},
		{"read\x00", "U+0000"},
		{"read\x7f", "U+007F"},
		{"read\u0085", "U+0085"},
		{"read\u202Eetirw", "U+202E"},
		{"\u2067read", "U+2067"},
		{"ブログ読み取り 用キー", ""},
		{"read-only (CDN) — blogs", ""},
	}
	s := start(t, open, false).Store
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.name), func(t *testing.T) {
			before := s.KeyCounts()["team-demo"]
			spec := readSpec()
			spec.Name = tc.name
			k, err := s.CreateKey(t.Context(), teamAdmin, "team-demo", spec)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got, ok := s.KeyBySecret(k.Secret); !ok || got.Name != tc.name {
					t.Fatalf("stored name %q, want %q", got.Name, tc.name)
				}
				if err := s.DeleteKey(t.Context(), teamAdmin, "team-demo", k.ID); err != nil {
					t.Fatal(err)
				}
				return
			}
			WantStatus(t, err, http.StatusBadRequest, keystore.CodeInvalidKeySpec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal does not name %s: %v", tc.want, err)
			}
			if after := s.KeyCounts()["team-demo"]; after != before {
				t.Errorf("refused write changed the key count %d → %d", before, after)
			}
		})
	}
}

func contractFailClosed(t *testing.T, open OpenFunc) {
	e := start(t, open, false)
	e.authz.setErr(errors.New("engine down"))
	_, err := e.Store.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec())
	WantStatus(t, err, 500, keystore.CodeAuthorizerFailed)
	if !errors.Is(err, e.authz.err()) {
		t.Errorf("error does not wrap the cause: %v", err)
	}
	_, err = e.Store.ListKeys(t.Context(), teamAdmin, "team-demo")
	WantStatus(t, err, 500, keystore.CodeAuthorizerFailed)
	err = e.Store.DeleteKey(t.Context(), teamAdmin, "team-demo", demoKeyID)
	WantStatus(t, err, 500, keystore.CodeAuthorizerFailed)
	e.authz.setErr(nil)
	if _, ok := e.Store.KeyBySecret(demoSecret); !ok {
		t.Fatal("a refused delete removed the key")
	}
}

func contractViolationsOnlyOn422(t *testing.T, open OpenFunc) {
	s := start(t, open, false).Store
	bad := keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"blogs": {GetAllDrafts: true}}}}
	for _, tc := range []struct {
		note, token string
		status      int
		violations  int
	}{
		{"no member", "", 401, 0},
		{"unknown token", "nobody", 401, 0},
		{"editor", teamEditor, 403, 0},
		{"other service's admin", hobbyAdmin, 403, 0},
		{"admin", teamAdmin, 422, 1},
	} {
		t.Run(tc.note, func(t *testing.T) {
			for _, op := range []string{"create", "update"} {
				var err error
				if op == "create" {
					_, err = s.CreateKey(t.Context(), tc.token, "team-demo", bad)
				} else {
					_, err = s.UpdateKey(t.Context(), tc.token, "team-demo", demoKeyID, bad)
				}
				var ke *keystore.Error
				if !errors.As(err, &ke) || ke.Status != tc.status || len(ke.Violations) != tc.violations {
					t.Errorf("%s: %+v, want status %d with %d violations", op, ke, tc.status, tc.violations)
				}
			}
		})
	}
}

// contractConcurrentCreates: goroutines race to create keys on services
// with room for a few; exactly that many win, the rest get 409, and a
// restart agrees.
func contractConcurrentCreates(t *testing.T, open OpenFunc) {
	tests := []struct {
		service string
		room    int // limit minus seeded keys
	}{
		{"hobby-demo", 1},
		{"team-demo", 2},
		{"business-demo", 10},
	}
	const goroutines = 64
	e := start(t, open, false)
	s := e.Store
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, limited := 0, 0
			startc := make(chan struct{})
			for range goroutines {
				wg.Go(func() {
					<-startc
					s.KeyBySecret(demoSecret) // readers race the writers too
					_, err := s.CreateKey(t.Context(), tc.service+"-admin-token", tc.service, readSpec())
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case isStatus(err, http.StatusConflict):
						limited++
					default:
						t.Errorf("unexpected error: %v", err)
					}
				})
			}
			close(startc)
			wg.Wait()
			if ok != tc.room || limited != goroutines-tc.room {
				t.Fatalf("%d created, %d refused; want %d and %d", ok, limited, tc.room, goroutines-tc.room)
			}
		})
	}
	before := s.KeyCounts()
	s = e.Reopen(t)
	after := s.KeyCounts()
	for svc, n := range before {
		if after[svc] != n {
			t.Errorf("%s: %d keys before the restart, %d after", svc, n, after[svc])
		}
	}
}

func withIdem(t *testing.T, requestID, key string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: requestID, IdempotencyKey: key})
}

// contractIdempotency: a write retried with the same Idempotency-Key by the
// same member is answered from the first (no second key, no second
// rotation or revision, no 404 for a second delete, no 409 when the first
// create took the plan's last slot), also after a restart; the key reused
// for a different request is 422 idempotency_key_reused.
func contractIdempotency(t *testing.T, open OpenFunc) {
	e := start(t, open, false)
	s := e.Store
	const svc = "hobby-demo" // the hobby plan allows one key
	admin := svc + "-admin-token"
	first, err := s.CreateKey(withIdem(t, "c1", "create-1"), admin, svc, readSpec())
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.CreateKey(withIdem(t, "c2", "create-1"), admin, svc, readSpec())
	if err != nil || !again.Replayed || again.ID != first.ID || again.Secret != "" || first.Replayed {
		t.Fatalf("retried create: %+v %v (first %s)", again, err, first.ID)
	}
	if n := keyCount(t, s, svc); n != 1 {
		t.Fatalf("%d keys after a retried create, want 1", n)
	}
	if _, err := s.CreateKey(withIdem(t, "c3", ""), admin, svc, readSpec()); !isStatus(err, http.StatusConflict) {
		t.Fatalf("create over the limit: %v", err)
	}
	rot, err := s.RotateKey(withIdem(t, "r1", "rotate-1"), admin, svc, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	rot2, err := s.RotateKey(withIdem(t, "r2", "rotate-1"), admin, svc, first.ID)
	if err != nil || !rot2.Replayed || rot2.Revision != rot.Revision || rot2.Secret != "" {
		t.Fatalf("retried rotation: %+v %v", rot2, err)
	}
	eventually(t, 5*time.Second, "the rotated secret works", func() bool {
		k, ok := s.KeyBySecret(rot.Secret)
		return ok && k.ID == first.ID
	})
	up := readSpec()
	up.Name = "renamed"
	u1, err := s.UpdateKey(withIdem(t, "u1", "update-1"), admin, svc, first.ID, up)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := s.UpdateKey(withIdem(t, "u2", "update-1"), admin, svc, first.ID, up)
	if err != nil || !u2.Replayed || u2.Revision != u1.Revision || u2.Name != "renamed" {
		t.Fatalf("retried update: %+v %v", u2, err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"another spec", func() error {
			other := up
			other.Name = "other"
			_, err := s.UpdateKey(withIdem(t, "x1", "update-1"), admin, svc, first.ID, other)
			return err
		}},
		{"another action", func() error {
			_, err := s.RotateKey(withIdem(t, "x2", "update-1"), admin, svc, first.ID)
			return err
		}},
		{"another key", func() error {
			_, err := s.RotateKey(withIdem(t, "x3", "rotate-1"), admin, svc, "no-such-key")
			return err
		}},
	} {
		t.Run("reused for "+tc.name, func(t *testing.T) {
			WantStatus(t, tc.call(), http.StatusUnprocessableEntity, keystore.CodeIdempotencyKeyReused)
		})
	}
	t.Run("another member's key is its own", func(t *testing.T) {
		// The same idempotency key from another service's admin is not a
		// replay of hobby-demo's create.
		c, err := s.CreateKey(withIdem(t, "o1", "create-1"), teamAdmin, "team-demo", readSpec())
		if err != nil || c.Replayed || c.ID == first.ID {
			t.Fatalf("another member's write with the same key: %+v %v", c, err)
		}
	})

	s = e.Reopen(t)
	if err := s.DeleteKey(withIdem(t, "d1", "delete-1"), admin, svc, first.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(withIdem(t, "d2", "delete-1"), admin, svc, first.ID); err != nil {
		t.Fatalf("retried delete: %v, want the first delete's success", err)
	}
	again, err = s.CreateKey(withIdem(t, "c4", "create-1"), admin, svc, readSpec())
	if err != nil || !again.Replayed || again.ID != first.ID {
		t.Fatalf("create retried after restart and delete: %+v %v", again, err)
	}
	if n := keyCount(t, s, svc); n != 0 {
		t.Fatalf("%d keys, want 0", n)
	}
	allowed := map[string]int{}
	for _, en := range FullTrail(t, s, admin, svc, keystore.AuditQuery{}) {
		if en.Outcome == keystore.OutcomeAllowed {
			allowed[en.IdempotencyKey]++
		}
	}
	for _, k := range []string{"create-1", "rotate-1", "update-1", "delete-1"} {
		if allowed[k] != 1 {
			t.Errorf("%d allowed entries with key %s, want 1 (%v)", allowed[k], k, allowed)
		}
	}
}

func contractIPRestrictions(t *testing.T, open OpenFunc) {
	const admin = "business-demo-admin-token"
	t.Run("seeded, replaced, durable, generation moves, cleared", func(t *testing.T) {
		e := start(t, open, true)
		s := e.Store
		r, _, ok := s.IPRestrictions("business-demo")
		if !ok || len(r.Default) != 1 || r.APIs["blogs"] == nil {
			t.Fatalf("seeded setting = %+v, %v", r, ok)
		}
		if _, _, ok := s.IPRestrictions("team-demo"); ok {
			t.Error("team-demo restricts without a setting")
		}
		gen := s.Generation()
		want := keystore.IPRestrictions{Default: []string{"198.51.100.7"}, APIs: map[string][]string{"news": {"2001:db8::/32"}}}
		if _, err := s.PutIPRestrictions(t.Context(), admin, "business-demo", want); err != nil {
			t.Fatal(err)
		}
		if s.Generation() == gen {
			t.Error("a setting write did not move the generation (the decision cache would serve stale answers)")
		}
		if r, _, ok := s.IPRestrictions("business-demo"); !ok || strings.Join(r.Default, ",") != "198.51.100.7" {
			t.Errorf("the writer's own decision path: %+v %v", r, ok)
		}
		s = e.Reopen(t)
		got, err := s.GetIPRestrictions(t.Context(), admin, "business-demo")
		if err != nil || strings.Join(got.Default, ",") != "198.51.100.7" || strings.Join(got.APIs["news"], ",") != "2001:db8::/32" {
			t.Fatalf("after restart: %+v, %v", got, err)
		}
		if _, err := s.PutIPRestrictions(t.Context(), admin, "business-demo", keystore.IPRestrictions{}); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := s.IPRestrictions("business-demo"); ok {
			t.Error("cleared setting still restricts")
		}
		got, err = s.GetIPRestrictions(t.Context(), admin, "business-demo")
		if err != nil || got.Default == nil || len(got.Default) != 0 || got.APIs == nil || len(got.APIs) != 0 {
			t.Errorf("cleared setting reads %+v, %v; want empty lists", got, err)
		}
		if e.Replica != nil {
			other := e.Replica(t)
			if _, _, ok := other.IPRestrictions("business-demo"); ok {
				t.Error("another replica still restricts after the clear")
			}
		}
	})
	t.Run("refusals change nothing", func(t *testing.T) {
		s := start(t, open, true).Store
		for _, tc := range []struct {
			note, token string
			setting     keystore.IPRestrictions
			status      int
			code        string
		}{
			{"no member", "", keystore.IPRestrictions{}, 401, "unauthenticated"},
			{"editor", "business-demo-editor-token", keystore.IPRestrictions{}, 403, "forbidden"},
			{"another service's admin", teamAdmin, keystore.IPRestrictions{}, 403, "forbidden"},
			{"policy refuses an entry", admin, keystore.IPRestrictions{Default: []string{"bad"}}, 422, "invalid_ip_entry"},
			{"API name", admin, keystore.IPRestrictions{APIs: map[string][]string{"a/b": {}}}, 400, "invalid_ip_restrictions"},
			{"entry too long", admin, keystore.IPRestrictions{Default: []string{strings.Repeat("1", 65)}}, 400, "invalid_ip_restrictions"},
		} {
			t.Run(tc.note, func(t *testing.T) {
				gen := s.Generation()
				_, err := s.PutIPRestrictions(t.Context(), tc.token, "business-demo", tc.setting)
				var ke *keystore.Error
				if !errors.As(err, &ke) || ke.Status != tc.status || ke.Code != tc.code {
					t.Fatalf("err = %v, want %d %s", err, tc.status, tc.code)
				}
				if tc.status == 422 && (len(ke.Violations) != 1 || ke.Violations[0].Entry != "bad") {
					t.Errorf("violations %+v", ke.Violations)
				}
				if r, _, ok := s.IPRestrictions("business-demo"); !ok || strings.Join(r.Default, ",") != "203.0.113.0/24" || s.Generation() != gen {
					t.Errorf("a refused write changed the setting: %+v %v", r, ok)
				}
			})
		}
		_, err := s.GetIPRestrictions(t.Context(), "business-demo-editor-token", "business-demo")
		WantStatus(t, err, 403, "forbidden")
	})
	t.Run("without a network authorizer every request fails closed", func(t *testing.T) {
		s := start(t, open, false).Store
		_, err := s.PutIPRestrictions(t.Context(), admin, "business-demo", keystore.IPRestrictions{})
		WantStatus(t, err, http.StatusInternalServerError, keystore.CodeAuthorizerFailed)
		_, err = s.GetIPRestrictions(t.Context(), admin, "business-demo")
		WantStatus(t, err, http.StatusInternalServerError, keystore.CodeAuthorizerFailed)
		if _, _, ok := s.IPRestrictions("business-demo"); !ok {
			t.Error("the seeded setting was lifted")
		}
	})
}

func caller(t *testing.T, id string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: id})
}

// FullTrail reads every page of service's trail with q's filters.
func FullTrail(t *testing.T, s *keystore.Store, token, service string, q keystore.AuditQuery) []keystore.AuditEntry {
	t.Helper()
	var all []keystore.AuditEntry
	for {
		p, err := s.Audit(t.Context(), token, service, q)
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		all = append(all, p.Entries...)
		if p.Next == 0 {
			return all
		}
		q.Before = p.Next
	}
}

func summary(entries []keystore.AuditEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Action+"/"+e.Outcome+"/"+http.StatusText(e.Status)+"/"+e.Code+"/"+e.Actor+"/"+e.RequestID)
	}
	return out
}

// contractAuditTrail: every write and every refused attempt recorded with
// actor, key, action, outcome, status, code, configuration before and
// after, policy revision, address and request id; served newest first with
// filters and a cursor; kept across a restart (and visible from another
// replica where there is one).
func contractAuditTrail(t *testing.T, open OpenFunc) {
	e := start(t, open, false)
	s := e.Store
	const svc = "team-demo"
	admin, editor := svc+"-admin-token", svc+"-editor-token"

	created, err := s.CreateKey(caller(t, "r1"), admin, svc, readSpec())
	if err != nil {
		t.Fatal(err)
	}
	up := readSpec()
	up.Name, up.ContentAPI.Default.Post = "web2", true
	if _, err := s.UpdateKey(caller(t, "r2"), admin, svc, created.ID, up); err != nil {
		t.Fatal(err)
	}
	rotated, err := s.RotateKey(caller(t, "r3"), admin, svc, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		id     string
		status int
		call   func(ctx context.Context) error
	}{
		{"r4", http.StatusForbidden, func(ctx context.Context) error {
			_, err := s.CreateKey(ctx, editor, svc, readSpec())
			return err
		}},
		{"r5", http.StatusUnauthorized, func(ctx context.Context) error {
			_, err := s.RotateKey(ctx, "no-such-token", svc, created.ID)
			return err
		}},
		{"r6", http.StatusUnprocessableEntity, func(ctx context.Context) error {
			bad := readSpec()
			bad.ContentAPI.Default = keystore.ContentPerms{GetAllDrafts: true}
			_, err := s.UpdateKey(ctx, admin, svc, created.ID, bad)
			return err
		}},
		{"r7", http.StatusNotFound, func(ctx context.Context) error {
			return s.DeleteKey(ctx, admin, svc, "no-such-key")
		}},
		{"r8", http.StatusConflict, func(ctx context.Context) error {
			for range 3 { // team allows 3 keys; the demo key is one
				if _, err := s.CreateKey(ctx, admin, svc, readSpec()); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, r := range refusals {
		if err := r.call(caller(t, r.id)); !isStatus(err, r.status) {
			t.Fatalf("%s: %v, want %d", r.id, err, r.status)
		}
	}
	if err := s.DeleteKey(caller(t, "r9"), admin, svc, created.ID); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, s *keystore.Store) {
		all := FullTrail(t, s, admin, svc, keystore.AuditQuery{Limit: 2})
		got := strings.Join(summary(all), "\n")
		want := strings.Join([]string{
			"delete/allowed/No Content/allowed/team-demo-admin/r9",
			"create/refused/Conflict/key_limit_exceeded/team-demo-admin/r8",
			"create/allowed/Created/allowed/team-demo-admin/r8",
			"delete/refused/Not Found/key_not_found/team-demo-admin/r7",
			"update/refused/Unprocessable Entity/invalid_key_config/team-demo-admin/r6",
			"rotate/refused/Unauthorized/unauthenticated//r5",
			"create/refused/Forbidden/forbidden/team-demo-editor/r4",
			"rotate/allowed/OK/allowed/team-demo-admin/r3",
			"update/allowed/OK/allowed/team-demo-admin/r2",
			"create/allowed/Created/allowed/team-demo-admin/r1",
		}, "\n")
		if got != want {
			t.Fatalf("trail, newest first:\n%s\nwant\n%s", got, want)
		}
		for i, e := range all {
			if i > 0 && e.ID >= all[i-1].ID {
				t.Errorf("ids not descending: %d after %d", e.ID, all[i-1].ID)
			}
			if i > 0 && e.At.After(all[i-1].At) {
				t.Errorf("entry %d is later than the entry after it", e.ID)
			}
			if e.ClientIP != "192.0.2.7" || e.Service != svc || e.At.IsZero() {
				t.Errorf("entry %d: address %q service %q at %v", e.ID, e.ClientIP, e.Service, e.At)
			}
			if e.Status != http.StatusNotFound && e.PolicyRevision != Revision {
				t.Errorf("entry %d (%s %d): policy revision %q", e.ID, e.Action, e.Status, e.PolicyRevision)
			}
		}
		upd, rot, del := all[8], all[7], all[0]
		if upd.Before == nil || upd.Before.Name != "web" || upd.After == nil || upd.After.Name != "web2" || !upd.After.ContentAPI.Default.Post ||
			upd.After.Revision != 2 || upd.KeyID != created.ID {
			t.Errorf("update entry: %+v before %+v after %+v", upd, upd.Before, upd.After)
		}
		if rot.Before == nil || rot.After == nil || rot.Before.Name != "web2" || rot.After.Revision != rot.Before.Revision+1 {
			t.Errorf("rotate entry before %+v after %+v", rot.Before, rot.After)
		}
		if del.Before == nil || del.After != nil || del.KeyID != created.ID || del.StoreRevision == 0 {
			t.Errorf("delete entry %+v", del)
		}
		if r6 := all[4]; r6.After == nil || !r6.After.ContentAPI.Default.GetAllDrafts || r6.Before == nil {
			t.Errorf("refused update entry before %+v after %+v", r6.Before, r6.After)
		}
		raw, _ := json.Marshal(all)
		for _, secret := range []string{created.Secret, rotated.Secret} {
			h := sha256.Sum256([]byte(secret))
			if strings.Contains(string(raw), secret) || strings.Contains(string(raw), hex.EncodeToString(h[:])) {
				t.Fatal("a secret or its hash is in the audit trail")
			}
		}
		for _, tc := range []struct {
			name string
			q    keystore.AuditQuery
			want []string
		}{
			{"by action", keystore.AuditQuery{Action: "rotate"}, []string{"r5", "r3"}},
			{"by actor", keystore.AuditQuery{Actor: "team-demo-editor"}, []string{"r4"}},
			{"by key", keystore.AuditQuery{KeyID: created.ID, Action: "update"}, []string{"r6", "r2"}},
			{"time range", keystore.AuditQuery{Since: all[2].At, Until: all[1].At.Add(time.Microsecond)}, []string{"r8", "r8"}},
			{"nothing before the first", keystore.AuditQuery{Until: all[len(all)-1].At}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var ids []string
				for _, e := range FullTrail(t, s, admin, svc, tc.q) {
					ids = append(ids, e.RequestID)
				}
				if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
					t.Errorf("request ids %v, want %v", ids, tc.want)
				}
			})
		}
		for _, token := range []string{editor, hobbyAdmin, ""} {
			_, err := s.Audit(t.Context(), token, svc, keystore.AuditQuery{})
			if !isStatus(err, http.StatusForbidden) && !isStatus(err, http.StatusUnauthorized) {
				t.Errorf("Audit with %q: %v, want 401/403", token, err)
			}
		}
		if p, err := s.Audit(t.Context(), hobbyAdmin, "hobby-demo", keystore.AuditQuery{}); err != nil || len(p.Entries) != 0 {
			t.Errorf("another service's trail: %v %v", p.Entries, err)
		}
	}
	t.Run("served", func(t *testing.T) { check(t, s) })
	if e.Replica != nil {
		t.Run("another replica", func(t *testing.T) { check(t, e.Replica(t)) })
	}
	s = e.Reopen(t)
	t.Run("after restart", func(t *testing.T) { check(t, s) })
}

// contractAuditConcurrent: writes, refusals and trail reads at once: every
// answered attempt has exactly one entry, ids are unique and ordered.
func contractAuditConcurrent(t *testing.T, open OpenFunc) {
	s := start(t, open, false).Store
	const svc = "enterprise-demo"
	admin := svc + "-admin-token"
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for range 10 {
				c, err := s.CreateKey(caller(t, ""), admin, svc, readSpec())
				if err != nil {
					continue // the plan's limit: refused, and audited as such
				}
				allowed.Add(1)
				if err := s.DeleteKey(caller(t, ""), admin, svc, c.ID); err == nil {
					allowed.Add(1)
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 15 {
				if _, err := s.CreateKey(caller(t, ""), "no-such-token", svc, readSpec()); err != nil {
					refused.Add(1)
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				if _, err := s.Audit(t.Context(), admin, svc, keystore.AuditQuery{Limit: 5}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	all := FullTrail(t, s, admin, svc, keystore.AuditQuery{Limit: 100})
	var a, r int64
	seen := map[uint64]bool{}
	for i, e := range all {
		if seen[e.ID] || (i > 0 && e.ID >= all[i-1].ID) {
			t.Fatalf("entry id %d repeated or out of order", e.ID)
		}
		seen[e.ID] = true
		switch {
		case e.Outcome == keystore.OutcomeAllowed:
			a++
		case e.Status == http.StatusUnauthorized:
			r++
		}
	}
	if a != allowed.Load() || r != refused.Load() {
		t.Fatalf("%d allowed and %d 401 entries, want %d and %d", a, r, allowed.Load(), refused.Load())
	}
}

// Bounds every text field of an audit entry must respect, whatever the
// request carried: the trail stores a sentence, not a caller's payload.
const (
	maxEntryField   = 512
	maxEntryMessage = 512
)

// contractAuditBounded: a request whose key id, service, request id,
// address or idempotency key is 60 KB is refused and recorded with every
// field bounded (the message names the key, cut), on every driver.
func contractAuditBounded(t *testing.T, open OpenFunc) {
	s := start(t, open, false).Store
	huge := strings.Repeat("k", 60<<10)
	ctx := keystore.WithCaller(t.Context(), keystore.Caller{Address: strings.Repeat("a", 60<<10), RequestID: "big-" + huge, IdempotencyKey: huge})
	for _, tc := range []struct {
		name   string
		status int
		call   func() error
	}{
		{"delete of a 60 KB key id", http.StatusNotFound, func() error { return s.DeleteKey(ctx, teamAdmin, "team-demo", huge) }},
		{"rotate of a 60 KB key id", http.StatusNotFound, func() error { _, err := s.RotateKey(ctx, teamAdmin, "team-demo", huge); return err }},
		{"update of a 60 KB key id", http.StatusNotFound, func() error {
			_, err := s.UpdateKey(ctx, teamAdmin, "team-demo", huge, readSpec())
			return err
		}},
		{"delete by nobody", http.StatusUnauthorized, func() error { return s.DeleteKey(ctx, "", "team-demo", huge) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !isStatus(err, tc.status) {
				t.Fatalf("%v, want %d", err, tc.status)
			}
		})
	}
	all := FullTrail(t, s, teamAdmin, "team-demo", keystore.AuditQuery{})
	if len(all) != 4 {
		t.Fatalf("%d entries, want 4: %v", len(all), summary(all))
	}
	for _, e := range all {
		for name, v := range map[string]string{"service": e.Service, "keyId": e.KeyID, "action": e.Action, "actor": e.Actor,
			"outcome": e.Outcome, "code": e.Code, "policyRevision": e.PolicyRevision, "clientIp": e.ClientIP,
			"requestId": e.RequestID, "idempotencyKey": e.IdempotencyKey} {
			if len(v) > maxEntryField {
				t.Errorf("entry %d: %s holds %d bytes", e.ID, name, len(v))
			}
		}
		if len(e.Message) > maxEntryMessage {
			t.Errorf("entry %d: message holds %d bytes", e.ID, len(e.Message))
		}
		if e.Status == http.StatusNotFound && !strings.Contains(e.Message, "kkkk") {
			t.Errorf("entry %d: message %q does not name the key", e.ID, e.Message)
		}
		if b, _ := json.Marshal(e); len(b) > 4<<10 {
			t.Errorf("entry %d is %d bytes of JSON", e.ID, len(b))
		}
	}
	// A bounded request id still finds its entry.
	if !strings.HasPrefix(all[0].RequestID, "big-kkk") {
		t.Errorf("request id %q", all[0].RequestID)
	}
}

// contractUnstorableText: a key id, a service or an audit filter holding a
// NUL byte or bytes that are not UTF-8 (text no store can hold) is answered
// as the unknown key or service it is, audited, on every driver; never as
// a store failure.
func contractUnstorableText(t *testing.T, open OpenFunc) {
	s := start(t, open, false).Store
	for _, tc := range []struct {
		name   string
		status int
		call   func(ctx context.Context) error
	}{
		{"delete a\\x00b", http.StatusNotFound, func(ctx context.Context) error { return s.DeleteKey(ctx, teamAdmin, "team-demo", "a\x00b") }},
		{"rotate \\xff", http.StatusNotFound, func(ctx context.Context) error {
			_, err := s.RotateKey(ctx, teamAdmin, "team-demo", "k\xffey")
			return err
		}},
		{"update in team\\x00demo", http.StatusForbidden, func(ctx context.Context) error {
			_, err := s.UpdateKey(ctx, teamAdmin, "team\x00demo", demoKeyID, readSpec())
			return err
		}},
		{"create with idempotency key a\\x00b", 0, func(ctx context.Context) error {
			_, err := s.CreateKey(keystore.WithCaller(ctx, keystore.Caller{RequestID: "n4", IdempotencyKey: "i\x00k"}), teamAdmin, "team-demo", readSpec())
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(caller(t, "n-"+tc.name))
			if tc.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !isStatus(err, tc.status) {
				t.Fatalf("%v, want %d", err, tc.status)
			}
		})
	}
	trail := FullTrail(t, s, teamAdmin, "team-demo", keystore.AuditQuery{})
	if len(trail) != 3 {
		t.Fatalf("%d entries, want the two refusals and the create: %v", len(trail), summary(trail))
	}
	if got := trail[1].KeyID; got != "k\uFFFDey" {
		t.Errorf("key id recorded as %q", got)
	}
	if got := trail[2].KeyID; got != `a\u0000b` {
		t.Errorf("key id recorded as %q, want the NUL escaped", got)
	}
	for _, q := range []keystore.AuditQuery{{KeyID: "a\x00b"}, {Actor: "\xff"}, {Action: "de\x00lete"}} {
		p, err := s.Audit(t.Context(), teamAdmin, "team-demo", q)
		if err != nil || len(p.Entries) != 0 {
			t.Errorf("Audit(%+v) = %d entries, %v; want none", q, len(p.Entries), err)
		}
	}
}

// contractStaleness: an opened store is ready and not stale, whatever the
// bound, and says which kind it is.
func contractStaleness(t *testing.T, open OpenFunc) {
	s := start(t, open, false).Store
	st := s.Status()
	if !st.Ready || st.Kind == "" {
		t.Fatalf("status %+v, want ready with a kind", st)
	}
	for _, max := range []time.Duration{0, time.Hour} {
		if s.Stale(max) {
			t.Errorf("Stale(%s) of a freshly opened store", max)
		}
	}
	if _, err := s.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec()); err != nil {
		t.Fatal(err)
	}
	if s.Stale(time.Hour) {
		t.Error("stale after its own write")
	}
	if st2 := s.Status(); st2.Applied < st.Applied {
		t.Errorf("applied revision went back: %d → %d", st.Applied, st2.Applied)
	}
}
