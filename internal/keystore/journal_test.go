package keystore_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

// history performs a create, update, rotate and delete, leaving the log with
// several records, and returns the surviving key and its current secret.
func history(t *testing.T, f *fixture) (keystore.Key, string) {
	t.Helper()
	ctx := t.Context()
	a, err := f.store.CreateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.store.CreateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.UpdateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", a.ID, keystore.KeySpec{Name: "renamed"}); err != nil {
		t.Fatal(err)
	}
	r, err := f.store.RotateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.DeleteKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", b.ID); err != nil {
		t.Fatal(err)
	}
	return r.Key, r.Secret
}

func listAll(t *testing.T, s *keystore.Store) []keystore.Key {
	t.Helper()
	keys, err := s.ListKeys(t.Context(), "enterprise-demo-admin-token", "enterprise-demo")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestStateSurvivesReopen(t *testing.T) {
	f := newFixture(t)
	k, secret := history(t, f)
	// Deleting the seeded demo key must stick: state present means no re-seeding.
	if err := f.store.DeleteKey(t.Context(), teamAdmin, "team-demo", demoKeyID); err != nil {
		t.Fatal(err)
	}
	want := listAll(t, f.store)
	f.reopen(t)
	got := listAll(t, f.store)
	if len(got) != 1 || len(want) != 1 || !keysEqual(got[0], want[0]) || got[0].Revision != 3 || got[0].Name != "renamed" {
		t.Fatalf("after reopen %+v, want %+v", got, want)
	}
	if g, ok := f.store.KeyBySecret(secret); !ok || g.ID != k.ID {
		t.Error("rotated secret lost")
	}
	if _, ok := f.store.KeyBySecret(demoSecret); ok {
		t.Error("deleted demo key came back")
	}
}

func keysEqual(a, b keystore.Key) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Revision == b.Revision && a.CreatedAt.Equal(b.CreatedAt) &&
		a.UpdatedAt.Equal(b.UpdatedAt) && a.ContentAPI.Default == b.ContentAPI.Default && a.ManagementAPI == b.ManagementAPI
}

func TestCorruptState(t *testing.T) {
	tests := []struct {
		note string
		// damage edits the state files; keys is what survives (-1: Open fails).
		damage  func(t *testing.T, snap, log string)
		keys    int
		errFile string
		warn    string
	}{
		{"clean", func(*testing.T, string, string) {}, 1, "", ""},
		{"log tail truncated mid-record", func(t *testing.T, _, log string) { truncateBy(t, log, 5) }, 2, "", "torn"},
		{"log tail truncated mid-header", func(t *testing.T, _, log string) { chopLastRecordTo(t, log, 3) }, 2, "", "torn record header"},
		{"zero-filled tail", func(t *testing.T, _, log string) { appendBytes(t, log, make([]byte, 4096)) }, 1, "", "zero-filled"},
		{"last record bit flip", func(t *testing.T, _, log string) { flipFromEnd(t, log, 3) }, 2, "", "checksum mismatch in last record"},
		{"first record bit flip", func(t *testing.T, _, log string) { flipAt(t, log, 20) }, -1, "state.json.log", ""},
		{"snapshot truncated", func(t *testing.T, snap, _ string) { truncateBy(t, snap, 10) }, -1, "state.json", ""},
		{"snapshot emptied", func(t *testing.T, snap, _ string) { writeFile(t, snap, nil) }, -1, "state.json", ""},
		{"snapshot garbage", func(t *testing.T, snap, _ string) { writeFile(t, snap, []byte("{\"format\":\"nope\"}")) }, -1, "state.json", ""},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			f := newFixture(t)
			// Three enterprise writes in the log after Open's compaction: create, create, delete.
			ctx := t.Context()
			a, _ := f.store.CreateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", readSpec())
			b, _ := f.store.CreateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", readSpec())
			if err := f.store.DeleteKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", b.ID); err != nil {
				t.Fatal(err)
			}
			f.store.Close()
			tc.damage(t, f.opts.StatePath, f.opts.StatePath+".log")

			s, err := keystore.Open(t.Context(), f.opts)
			if tc.keys < 0 {
				var de *keystore.DataError
				if !errors.As(err, &de) || !strings.HasSuffix(de.File, tc.errFile) {
					t.Fatalf("want an error naming %s, got %v", tc.errFile, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			if got := len(listAll(t, s)); got != tc.keys {
				t.Errorf("%d keys survive, want %d", got, tc.keys)
			}
			if _, ok := s.KeyBySecret(a.Secret); !ok {
				t.Error("first acknowledged write lost")
			}
			if tc.warn != "" && !strings.Contains(f.logs.String(), tc.warn) {
				t.Errorf("no warning %q in log: %s", tc.warn, f.logs.String())
			}
			// The recovered state was compacted: a second Open needs no recovery.
			s.Close()
			if _, err := keystore.Open(t.Context(), f.opts); err != nil {
				t.Fatalf("second Open: %v", err)
			}
		})
	}
}

func TestCompaction(t *testing.T) {
	f := newFixture(t, func(o *keystore.Options) { o.CompactAfter = 2 })
	k, secret := history(t, f) // 5 writes: compacts twice
	if fi, err := os.Stat(f.opts.StatePath + ".log"); err != nil || fi.Size() > 2048 {
		t.Fatalf("log not compacted: %v %v", fi, err)
	}
	want := listAll(t, f.store)
	f.reopen(t)
	if got := listAll(t, f.store); !slices.EqualFunc(got, want, keysEqual) {
		t.Fatalf("after compaction+reopen %+v, want %+v", got, want)
	}
	if g, ok := f.store.KeyBySecret(secret); !ok || g.ID != k.ID {
		t.Error("secret lost across compaction")
	}
}

// TestStaleLogAfterSnapshot: a crash after the snapshot rename but before the
// log is emptied leaves records the snapshot already holds; they are skipped.
func TestStaleLogAfterSnapshot(t *testing.T) {
	f := newFixture(t)
	history(t, f)
	want := listAll(t, f.store)
	f.store.Close()
	stale, err := os.ReadFile(f.opts.StatePath + ".log")
	if err != nil || len(stale) == 0 {
		t.Fatalf("log: %v (%d bytes)", err, len(stale))
	}
	f.store = f.open(t) // compacts
	f.store.Close()
	writeFile(t, f.opts.StatePath+".log", stale)
	f.store = f.open(t)
	if got := listAll(t, f.store); !slices.EqualFunc(got, want, keysEqual) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func truncateBy(t *testing.T, path string, n int) {
	t.Helper()
	b := readFile(t, path)
	writeFile(t, path, b[:len(b)-n])
}

func appendBytes(t *testing.T, path string, extra []byte) {
	t.Helper()
	writeFile(t, path, append(readFile(t, path), extra...))
}

func flipAt(t *testing.T, path string, off int) {
	t.Helper()
	b := readFile(t, path)
	b[off] ^= 0x40
	writeFile(t, path, b)
}

func flipFromEnd(t *testing.T, path string, n int) {
	t.Helper()
	b := readFile(t, path)
	flipAt(t, path, len(b)-n)
}

// chopLastRecordTo cuts the log inside the last record's 8-byte header.
func chopLastRecordTo(t *testing.T, path string, keep int) {
	t.Helper()
	b := readFile(t, path)
	off, last := 0, 0
	for off < len(b) {
		last = off
		n := int(b[off]) | int(b[off+1])<<8 | int(b[off+2])<<16 | int(b[off+3])<<24
		off += 8 + n
	}
	writeFile(t, path, b[:last+keep])
}
