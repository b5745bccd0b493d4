package postgres_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/pgtest"
)

// Faults of the PostgreSQL write path that the real server cannot produce
// on demand, injected by a TCP proxy between the store
// and PostgreSQL that reads the frontend protocol: it can cut a connection
// right after a key write's COMMIT was forwarded (the server commits, the
// client never hears), swallow the COMMIT (the server rolls back), and
// refuse new connections (the database unreachable).

// Proxy modes for the next COMMIT of a key write.
const (
	passCommit = iota
	cutAfterCommit
	dropCommit
)

type pgProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32
	// refuseAfterCut makes a cut also refuse every new connection until
	// refuse is cleared.
	refuseAfterCut atomic.Bool
	refuse         atomic.Bool
	cuts           atomic.Int32
	wg             sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool // open client and server sides
}

func (p *pgProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = true
	}
}

// closeAll cuts every open connection (the pool's idle ones too).
func (p *pgProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func startProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *pgProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			_ = client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.track(client, server)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(client, server)
			_ = client.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.forward(client, server)
			_ = client.Close()
			_ = server.Close()
		}()
	}
}

// forward copies the frontend's messages to the server one by one, acting on
// the COMMIT of a transaction that wrote a change row.
func (p *pgProxy) forward(client, server net.Conn) {
	var n [4]byte
	if _, err := io.ReadFull(client, n[:]); err != nil { // the startup message
		return
	}
	startup := make([]byte, binary.BigEndian.Uint32(n[:])-4)
	if _, err := io.ReadFull(client, startup); err != nil {
		return
	}
	if _, err := server.Write(append(n[:], startup...)); err != nil {
		return
	}
	wrote := false
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		if bytes.Contains(body, []byte("INSERT INTO changes")) {
			wrote = true
		}
		msg := append(hdr[:], body...)
		if hdr[0] == 'Q' && wrote && strings.EqualFold(string(bytes.TrimRight(body, "\x00")), "commit") {
			wrote = false
			switch p.mode.Swap(passCommit) {
			case cutAfterCommit:
				if p.refuseAfterCut.Load() {
					p.refuse.Store(true)
				}
				// The client's side closes before the COMMIT goes on, so
				// that the server's answer, copied back by the other
				// goroutine, can never reach it: a fast commit used to
				// be answered before the cut.
				_ = client.Close()
				_, _ = server.Write(msg)
				p.cuts.Add(1)
				if p.refuseAfterCut.Load() {
					// Unreachable: no connection of the pool survives either.
					p.closeAll()
				}
				return
			case dropCommit:
				p.cuts.Add(1)
				return
			}
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}

func (p *pgProxy) url(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.ln.Addr(), db)
}

// proxiedStore opens a store on a fresh database through a proxy.
func proxiedStore(t *testing.T, mutate ...func(*pgOpts)) (*keystore.Store, *pgProxy, *pgtest.Cluster, string) {
	t.Helper()
	c := pgtest.Start(t)
	name, url, err := c.NewNamedDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", c.Port))
	return pgOpen(t, p.url(name), 1, mutate...)[0], p, c, url
}

// allowedRows counts the audit rows of allowed writes with request id id.
func allowedRows(t *testing.T, url, id string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM audit WHERE request_id = $1 AND outcome = 'allowed'`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func keyCount(t *testing.T, s *keystore.Store, service string) int {
	t.Helper()
	keys, err := s.ListKeys(t.Context(), service+"-admin-token", service)
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// TestPostgresCommitAnswerLost: the connection drops between the COMMIT and
// its answer. keygate finds out on another connection whether the write
// committed (it waits for the service's row, which the write held to its
// end, then looks for the write's audit row by request id) and answers
// accordingly: the write's own success when it committed, 503
// store_unavailable when it did not, and 503 outcome_unknown naming the
// request id only when the database cannot be asked — and then the audit
// trail, once reachable, tells, and a retry with the same Idempotency-Key
// is answered from the committed write instead of creating a second key.
func TestPostgresCommitAnswerLost(t *testing.T) {
	const svc = "enterprise-demo"
	admin := svc + "-admin-token"
	for _, tc := range []struct {
		name       string
		mode       int32
		refuse     bool
		wantStatus int // 0: success
		wantCode   string
		committed  bool
	}{
		{"committed, answer lost", cutAfterCommit, false, 0, "", true},
		{"commit never arrived", dropCommit, false, http.StatusServiceUnavailable, keystore.CodeStoreUnavailable, false},
		{"committed, database then unreachable", cutAfterCommit, true, http.StatusServiceUnavailable, keystore.CodeOutcomeUnknown, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, p, _, url := proxiedStore(t)
			before := keyCount(t, s, svc)
			p.refuseAfterCut.Store(tc.refuse)
			p.mode.Store(tc.mode)
			id := "req-" + strings.ReplaceAll(tc.name, " ", "-")
			start := time.Now()
			created, err := s.CreateKey(withIdem(t, id, id), admin, svc, readSpec())
			took := time.Since(start)
			p.refuse.Store(false)
			if p.cuts.Load() != 1 {
				t.Fatalf("the proxy acted on %d commits, want 1", p.cuts.Load())
			}
			if took > 12*time.Second {
				t.Errorf("the answer took %s", took)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("CreateKey = %v, want the write's success", err)
				}
				if created.Secret == "" || created.ID == "" {
					t.Fatalf("created %+v without id or secret", created)
				}
			} else {
				var ke *keystore.Error
				if !errors.As(err, &ke) || ke.Status != tc.wantStatus || ke.Code != tc.wantCode {
					t.Fatalf("CreateKey = %v, want %d %s", err, tc.wantStatus, tc.wantCode)
				}
				if tc.wantCode == keystore.CodeOutcomeUnknown && (ke.RequestID != id || !strings.Contains(ke.Message, id)) {
					t.Errorf("outcome_unknown names request %q (%q), want %q", ke.RequestID, ke.Message, id)
				}
			}
			// The server may still be finishing the COMMIT it received when
			// an unanswered client gave up: wait for its row, not for a moment.
			wantRows := map[bool]int{true: 1, false: 0}[tc.committed]
			eventually(t, 10*time.Second, "the audit row of a committed write", func() bool { return allowedRows(t, url, id) >= wantRows })
			if got := allowedRows(t, url, id); got != wantRows {
				t.Fatalf("%d allowed audit rows for the request, want committed=%v", got, tc.committed)
			}
			want := before
			if tc.committed {
				want++
			}
			eventually(t, 10*time.Second, "the index shows the committed state", func() bool { return keyCount(t, s, svc) == want })
			if tc.committed {
				// The client that was told outcome_unknown finds its write.
				page, err := s.Audit(t.Context(), admin, svc, keystore.AuditQuery{Action: keystore.ActionCreate})
				if err != nil || len(page.Entries) == 0 || page.Entries[0].RequestID != id || page.Entries[0].Outcome != keystore.OutcomeAllowed {
					t.Fatalf("audit after the lost answer: %+v %v", page.Entries, err)
				}
			}
			// The client retries with the same Idempotency-Key: a write that
			// committed is answered from the first, one that did not is made.
			retry, err := s.CreateKey(withIdem(t, id+"-retry", id), admin, svc, readSpec())
			if err != nil || retry.Replayed != tc.committed {
				t.Fatalf("retry: %+v %v, want replayed=%v", retry, err, tc.committed)
			}
			if got := keyCount(t, s, svc); got != before+1 {
				t.Fatalf("%d keys after the retry, want %d: exactly one create", got, before+1)
			}
		})
	}
}

// TestPostgresLockTimeout: another transaction holds the service's row (FOR
// UPDATE) longer than the lock timeout. The write is refused with 503
// store_busy within about the timeout, nothing is applied, the failure is
// in the audit trail, the write holds no lock afterwards, and once the row
// is free writes go through.
func TestPostgresLockTimeout(t *testing.T) {
	const svc = "team-demo"
	admin := svc + "-admin-token"
	c := pgtest.Start(t)
	stores, url := pgStores(t, c, 1, func(o *pgOpts) { o.LockTimeout = 300 * time.Millisecond })
	s := stores[0]
	before := keyCount(t, s, svc)

	holder, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	tx, err := holder.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM services WHERE id = $1 FOR UPDATE`, svc); err != nil {
		t.Fatal(err)
	}
	for _, write := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"create", func(ctx context.Context) error { _, err := s.CreateKey(ctx, admin, svc, readSpec()); return err }},
		{"delete", func(ctx context.Context) error { return s.DeleteKey(ctx, admin, svc, "team-demo-read") }},
	} {
		t.Run(write.name, func(t *testing.T) {
			start := time.Now()
			err := write.call(caller(t, "busy-"+write.name))
			took := time.Since(start)
			var ke *keystore.Error
			if !errors.As(err, &ke) || ke.Status != http.StatusServiceUnavailable || ke.Code != keystore.CodeStoreBusy {
				t.Fatalf("write while the row is locked = %v, want 503 %s", err, keystore.CodeStoreBusy)
			}
			if took > 3*time.Second {
				t.Errorf("refused after %s, want about the 300ms lock timeout", took)
			}
		})
	}
	if got := keyCount(t, s, svc); got != before {
		t.Fatalf("%d keys after the refused writes, want %d", got, before)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	// No lock of the refused writes is left: the row can be locked at once.
	check, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(context.Background())
	var changes, busy int
	if err := check.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM changes), (SELECT count(*) FROM audit WHERE code = $1 AND outcome = 'failed')`,
		keystore.CodeStoreBusy).Scan(&changes, &busy); err != nil {
		t.Fatal(err)
	}
	if changes != 0 || busy != 2 {
		t.Errorf("%d change rows and %d store_busy audit rows, want 0 and 2", changes, busy)
	}
	ltx, err := check.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ltx.Exec(t.Context(), `SELECT 1 FROM services WHERE id = $1 FOR UPDATE NOWAIT`, svc); err != nil {
		t.Fatalf("the service row is still locked after the refused writes: %v", err)
	}
	_ = ltx.Rollback(t.Context())
	if _, err := s.CreateKey(caller(t, "after"), admin, svc, readSpec()); err != nil {
		t.Fatalf("write after the row was freed: %v", err)
	}
}
