package local_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		{"log tail truncated mid-record header", func(t *testing.T, _, log string) { chopLastRecordTo(t, log, 3) }, 2, "", "torn record header"},
		{"zero-filled tail", func(t *testing.T, _, log string) { appendBytes(t, log, make([]byte, 4096)) }, 1, "", "zero-filled"},
		// A complete last record under an intact header is not torn: its
		// checksum failing is corruption of an acknowledged write.
		{"last record payload bit flip", func(t *testing.T, _, log string) { flipFromEnd(t, log, 3) }, -1, "state.json.log", ""},
		{"log header damaged", func(t *testing.T, _, log string) { flipAt(t, log, 1) }, -1, "state.json.log", ""},
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

			s, err := openStore(t.Context(), f.opts)
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
			if _, err := openStore(t.Context(), f.opts); err != nil {
				t.Fatalf("second Open: %v", err)
			}
		})
	}
}

func TestCompaction(t *testing.T) {
	f := newFixture(t, func(o *storeOpts) { o.CompactAfter = 2 })
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

// chopLastRecordTo cuts the log inside the last record's header.
func chopLastRecordTo(t *testing.T, path string, keep int) {
	t.Helper()
	b := readFile(t, path)
	offs := recordOffsets(b)
	writeFile(t, path, b[:offs[len(offs)-1]+keep])
}

// logMagic mirrors the journal's log file header (format v3: magic, base
// seq, checksum); firstRecord returns where the first record starts (after
// the header, if any), so the tests below also run against a log without one.
const (
	logMagic      = "KGLOGv3\n"
	logHeaderSize = len(logMagic) + 8 + 4
)

func firstRecord(b []byte) int {
	if strings.HasPrefix(string(b), logMagic) {
		return logHeaderSize
	}
	return 0
}

// threeWrites opens a fixture and leaves create a, create b, delete b in the
// log; it returns the fixture (store closed) and a's secret.
func threeWrites(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	ctx := t.Context()
	a, err := f.store.CreateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.store.CreateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.DeleteKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", b.ID); err != nil {
		t.Fatal(err)
	}
	f.store.Close()
	return f, a.Secret
}

// TestCorruptLengthFailsOpen: a bit flip in the length field of a record is
// corruption of an acknowledged write, not a torn tail. Open must fail naming
// the log and the record's offset, and must not compact the loss away.
func TestCorruptLengthFailsOpen(t *testing.T) {
	for _, tc := range []struct {
		note string
		// bit is OR-ed into byte 2 of the length: 0x40 makes it > 4 MiB
		// (formerly "oversized"), 0x01 makes it run past EOF (formerly "torn").
		bit    byte
		record int // which record's length: 0 first, -1 last
	}{
		{"first record, oversized length", 0x40, 0},
		{"first record, length past EOF", 0x01, 0},
		{"last record, length past EOF", 0x01, -1},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f, _ := threeWrites(t)
			logPath := f.opts.StatePath + ".log"
			orig := readFile(t, logPath)
			offs := recordOffsets(orig)
			if len(offs) != 3 {
				t.Fatalf("%d records in the log, want 3", len(offs))
			}
			off := offs[0]
			if tc.record < 0 {
				off = offs[len(offs)-1]
			}
			damaged := slices.Clone(orig)
			damaged[off+2] |= tc.bit
			writeFile(t, logPath, damaged)

			_, err := openStore(t.Context(), f.opts)
			var de *keystore.DataError
			if !errors.As(err, &de) || !strings.HasSuffix(de.File, "state.json.log") || !strings.Contains(de.Field, fmt.Sprintf("offset %d", off)) {
				t.Fatalf("Open = %v; want an error naming state.json.log at offset %d", err, off)
			}
			if got := readFile(t, logPath); !slices.Equal(got, damaged) {
				t.Error("a failed Open changed the log")
			}
		})
	}
}

// recordOffsets walks the frames of a log (v2 12-byte headers after the
// file header; v1 8-byte headers without one).
func recordOffsets(b []byte) []int {
	hdr := 8
	if firstRecord(b) > 0 {
		hdr = 12
	}
	var offs []int
	for off := firstRecord(b); off+hdr <= len(b); {
		offs = append(offs, off)
		off += hdr + int(binary.LittleEndian.Uint32(b[off:off+4]))
	}
	return offs
}

// TestDroppedTailLeavesEvidence: before a torn tail is dropped (and Open's
// compaction empties the log) the log is copied beside it, and the copy is named
// in the warning.
func TestDroppedTailLeavesEvidence(t *testing.T) {
	f, secret := threeWrites(t)
	logPath := f.opts.StatePath + ".log"
	truncateBy(t, logPath, 5)
	torn := readFile(t, logPath)

	s := f.open(t)
	if _, ok := s.KeyBySecret(secret); !ok {
		t.Error("acknowledged write lost")
	}
	copies, _ := filepath.Glob(logPath + ".corrupt-*")
	if len(copies) != 1 {
		t.Fatalf("evidence copies %v, want one", copies)
	}
	if got := readFile(t, copies[0]); !slices.Equal(got, torn) {
		t.Error("evidence copy differs from the log as found")
	}
	if !strings.Contains(f.logs.String(), copies[0]) {
		t.Errorf("warning does not name %s: %s", copies[0], f.logs.String())
	}
}

// TestVersion1StateRefused: format v1 (no header checksum) is not read; the
// error says what to do.
func TestVersion1StateRefused(t *testing.T) {
	f, _ := threeWrites(t)
	writeFile(t, f.opts.StatePath, []byte(`{"format":"keygate-state","version":1,"seq":0,"keys":[]}`))
	_, err := openStore(t.Context(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("Open of a v1 snapshot = %v, want a version 1 error", err)
	}

	// A log without the v2 header (a v1 log) is refused as well.
	f2, _ := threeWrites(t)
	logPath := f2.opts.StatePath + ".log"
	b := readFile(t, logPath)
	writeFile(t, logPath, b[firstRecord(b):])
	_, err = openStore(t.Context(), f2.opts)
	var de *keystore.DataError
	if !errors.As(err, &de) || !strings.HasSuffix(de.File, "state.json.log") {
		t.Fatalf("Open of a log without header = %v, want an error naming state.json.log", err)
	}
}

// TestTornLogHeaderRefused: the log is written whole into a temp file and
// renamed into place, so no crash leaves a partial header; one is damage,
// and Open refuses it naming the log.
func TestTornLogHeaderRefused(t *testing.T) {
	f, _ := threeWrites(t)
	f.store = f.open(t) // compacts: the log is now just its header
	f.store.Close()
	logPath := f.opts.StatePath + ".log"
	if got := readFile(t, logPath); len(got) != logHeaderSize || !strings.HasPrefix(string(got), logMagic) {
		t.Fatalf("compacted log %q, want the header only", got)
	}
	for _, n := range []int{0, 3, len(logMagic), logHeaderSize - 1} {
		writeFile(t, logPath, []byte(logMagic + "\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")[:n])
		_, err := openStore(t.Context(), f.opts)
		var de *keystore.DataError
		if !errors.As(err, &de) || !strings.HasSuffix(de.File, "state.json.log") || !strings.Contains(err.Error(), "offset 0") {
			t.Errorf("log cut to %d bytes: Open = %v, want a refusal naming state.json.log at offset 0", n, err)
		}
	}
}
