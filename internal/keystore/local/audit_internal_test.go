package local

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

// The local audit trail under faults and crashes: what the client saw, and
// what the trail holds after a restart.

// trail reads the whole audit trail of the fault fixture's service.
func trail(t *testing.T, s *keystore.Store) []keystore.AuditEntry {
	t.Helper()
	var all []keystore.AuditEntry
	q := keystore.AuditQuery{Limit: keystore.MaxAuditLimit}
	for {
		p, err := s.Audit(t.Context(), faultAdmin, faultService, q)
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

// describe is a compact form of entries, oldest first.
func describe(entries []keystore.AuditEntry) string {
	var b strings.Builder
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		name := ""
		if e.After != nil {
			name = e.After.Name
		} else if e.Before != nil {
			name = e.Before.Name
		}
		fmt.Fprintf(&b, "%d:%s/%s/%d/%s", e.ID, e.Action, e.Outcome, e.Status, name)
		if e.Recovered {
			b.WriteString("/recovered")
		}
		b.WriteString(" ")
	}
	return strings.TrimSpace(b.String())
}

// TestAuditFaultWriteFails: the audit entry of a write whose state record is
// durable cannot be written (ENOSPC with nothing written, EIO after a short
// write, a failed fsync). The client is answered 500, the store turns
// read-only (also for refusals, which could not be recorded either), and the
// restart records the change as recovered: the trail never misses a change.
func TestAuditFaultWriteFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    fault
		// recovered: the entry did not reach the disk whole.
		recovered bool
	}{
		{"ENOSPC nothing written", fault{op: "write", kind: "audit", nth: 1, err: syscall.ENOSPC, short: 0}, true},
		{"EIO half written", fault{op: "write", kind: "audit", nth: 1, err: syscall.EIO, short: -1}, true},
		{"fsync fails, pages lost", fault{op: "sync", kind: "audit", nth: 1, err: syscall.EIO, dropUnsynced: true}, true},
		{"fsync fails, pages written", fault{op: "sync", kind: "audit", nth: 1, err: syscall.EIO}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFaultFixture(t, 1000)
			f.mustCreate(t, "a")
			f.fs.arm(tc.f)
			_, err := f.create(t, "b")
			assertInternal(t, err, "audit trail write failed")
			_, err = f.create(t, "c")
			assertInternal(t, err, "read-only after a failed audit trail write")
			// A refusal that cannot be recorded is not answered as a refusal.
			_, err = f.store.CreateKey(t.Context(), "enterprise-demo-editor-token", faultService, keystore.KeySpec{Name: "x"})
			var ke *keystore.Error
			if !errors.As(err, &ke) || ke.Status != http.StatusInternalServerError {
				t.Fatalf("refusal with a broken audit trail = %v, want 500", err)
			}

			s := f.restart(t)
			if got := names(t, s); !got["a"] || !got["b"] || got["c"] {
				t.Fatalf("keys after restart %v, want a and b (b's state record was durable)", got)
			}
			want := "1:create/allowed/201/a 2:create/allowed/201/b"
			if tc.recovered {
				want += "/recovered"
			}
			if got := describe(trail(t, s)); got != want {
				t.Fatalf("trail after restart:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestAuditAckOnlyAfterSync: every acknowledged write is preceded by a write
// and an fsync of its audit entry, after those of its state record.
func TestAuditAckOnlyAfterSync(t *testing.T) {
	f := newFaultFixture(t, 1000)
	f.fs.arm()
	for i := range 4 {
		f.mustCreate(t, fmt.Sprintf("k%d", i))
	}
	if n := f.fs.count("sync", "audit"); n < 4 {
		t.Errorf("4 acknowledged creates made %d audit fsyncs, want at least 4", n)
	}
	logSynced, written, synced := false, false, false
	for i, e := range f.fs.eventLog() {
		switch e {
		case "sync log":
			logSynced = true
		case "write audit":
			if !logSynced {
				t.Fatalf("audit entry written before the state record was durable: %v", f.fs.eventLog()[:i+1])
			}
			written, synced = true, false
		case "sync audit":
			synced = written
		case "ack":
			if !written || !synced {
				t.Fatalf("acknowledgement %d not preceded by a write and an fsync of the audit entry: %v", i, f.fs.eventLog())
			}
			logSynced, written, synced = false, false, false
		}
	}
}

// TestAuditCrashBetweenRecordAndEntry: a crash after the state record of a
// write and before its audit entry (simulated by cutting the trail back to
// its size before the write) is reconciled at Open: the change gets an entry
// marked recovered, with the key's configuration before and after, and the
// entries that follow continue the ids.
func TestAuditCrashBetweenRecordAndEntry(t *testing.T) {
	f := newFaultFixture(t, 1000)
	a := f.mustCreate(t, "a")
	path := auditPath(f.opts.StatePath)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := fi.Size()
	spec := keystore.KeySpec{Name: "a2", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, Post: true}}}
	if _, err := f.store.UpdateKey(t.Context(), faultAdmin, faultService, a.ID, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.RotateKey(t.Context(), faultAdmin, faultService, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	s := f.restart(t)
	entries := trail(t, s)
	if got, want := describe(entries), "1:create/allowed/201/a 2:update/allowed/200/a2/recovered 3:rotate/allowed/200/a2/recovered"; got != want {
		t.Fatalf("trail:\n got %s\nwant %s", got, want)
	}
	up := entries[1]
	if up.Before == nil || up.Before.Name != "a" || up.Before.ContentAPI.Default.Post || up.After == nil || !up.After.ContentAPI.Default.Post {
		t.Errorf("recovered update before/after = %+v / %+v", up.Before, up.After)
	}
	if up.Service != faultService || up.KeyID != a.ID || up.StoreRevision == 0 {
		t.Errorf("recovered update = %+v", up)
	}
	// Not recovered twice, and the ids go on.
	f.store = s
	f.mustCreate(t, "b")
	s = f.restart(t)
	if got, want := describe(trail(t, s)), "1:create/allowed/201/a 2:update/allowed/200/a2/recovered 3:rotate/allowed/200/a2/recovered 4:create/allowed/201/b"; got != want {
		t.Fatalf("trail after a second restart:\n got %s\nwant %s", got, want)
	}
}

// TestAuditTornTail: a torn final entry (never acknowledged) is dropped at
// Open after an evidence copy, and appends continue after the valid prefix;
// a damaged entry that is not the torn tail refuses the start.
func TestAuditTornTail(t *testing.T) {
	f := newFaultFixture(t, 1000)
	f.mustCreate(t, "a")
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	path := auditPath(f.opts.StatePath)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(append([]byte{}, whole...), frame([]byte(`{"id":2,"action":"create"`))[:20]...)
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	s := f.restart(t)
	if copies, _ := filepath.Glob(path + ".corrupt-*"); len(copies) != 1 {
		t.Errorf("evidence copies %v, want one", copies)
	}
	f.store = s
	f.mustCreate(t, "b")
	s = f.restart(t)
	if got, want := describe(trail(t, s)), "1:create/allowed/201/a 2:create/allowed/201/b"; got != want {
		t.Fatalf("trail:\n got %s\nwant %s", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A bit flip inside the first entry's payload is corruption.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(auditMagic)+frameHeader+3] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := f.opts
	opts.fsys = nil
	if _, err := openTest(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "entry checksum mismatch") {
		t.Fatalf("Open with a damaged audit entry = %v, want a checksum refusal", err)
	}
}

// TestAuditRefusedStartChangesNothing: a start-up the state refuses neither
// creates the trail nor rewrites a torn one.
func TestAuditRefusedStartChangesNothing(t *testing.T) {
	f := newFaultFixture(t, 1000)
	f.mustCreate(t, "a")
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	path := auditPath(f.opts.StatePath)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(append([]byte{}, whole...), 1, 2, 3)
	for _, tc := range []struct {
		name  string
		trail []byte // nil: no trail
	}{{"no trail", nil}, {"torn trail", torn}} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(path)
			if tc.trail != nil {
				if err := os.WriteFile(path, tc.trail, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Rename(f.opts.StatePath+".log", f.opts.StatePath+".log.away"); err != nil {
				t.Fatal(err)
			}
			defer os.Rename(f.opts.StatePath+".log.away", f.opts.StatePath+".log")
			opts := f.opts
			opts.fsys = nil
			if _, err := openTest(t.Context(), opts); err == nil {
				t.Fatal("Open without the state log succeeded")
			}
			got, err := os.ReadFile(path)
			switch {
			case tc.trail == nil && !errors.Is(err, os.ErrNotExist):
				t.Fatalf("a refused start created the trail (%v)", err)
			case tc.trail != nil && string(got) != string(tc.trail):
				t.Fatalf("a refused start rewrote the trail (%d bytes, had %d)", len(got), len(tc.trail))
			}
		})
	}
}
