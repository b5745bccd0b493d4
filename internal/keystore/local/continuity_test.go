package local_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// stateRefusal is what a refused Open must say: the file, where (a field or an
// offset, when there is one) and phrases of the reason and the advice.
type stateRefusal struct {
	file  string
	where string
	says  []string
}

func assertRefused(t *testing.T, err error, want stateRefusal) {
	t.Helper()
	var de *keystore.DataError
	if !errors.As(err, &de) {
		t.Fatalf("Open = %v; want a refusal naming %s", err, want.file)
	}
	if !strings.HasSuffix(de.File, "/"+want.file) || (want.where != "" && de.Field != want.where) {
		t.Errorf("refusal names %s at %q; want %s at %q (%v)", de.File, de.Field, want.file, want.where, err)
	}
	for _, s := range want.says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not say %q", err, s)
		}
	}
}

// TestStateContinuity: a state that is not provably the one keygate
// acknowledged refuses to start, naming the file, the
// offset and what to do; and a failed Open leaves both files as they were.
// threeWrites leaves a snapshot at seq 0 and a log based on seq 0 holding
// records 1 (create a), 2 (create b) and 3 (delete b).
func TestStateContinuity(t *testing.T) {
	const restore = "restore state.json and state.json.log together from the same backup"
	for _, tc := range []struct {
		note   string
		damage func(t *testing.T, snap, log string)
		want   stateRefusal
	}{
		{"state.json deleted, log kept", func(t *testing.T, snap, _ string) { remove(t, snap) },
			stateRefusal{"state.json", "", []string{"missing, but state.json.log exists", "following a snapshot at seq 0", restore}}},
		{"state.json.log deleted, snapshot kept", func(t *testing.T, _, log string) { remove(t, log) },
			stateRefusal{"state.json.log", "", []string{"missing beside state.json (seq 0)", restore}}},
		{"first record missing (log starts at seq 2)", func(t *testing.T, _, log string) { cutRecord(t, log, 0) },
			stateRefusal{"state.json.log", "offset 20", []string{"record seq 2 where 1 was expected", "gap", "truncate the log at this offset"}}},
		{"middle record missing (gap)", func(t *testing.T, _, log string) { cutRecord(t, log, 1) },
			stateRefusal{"state.json.log", "", []string{"record seq 3 where 2 was expected", "gap"}}},
		{"record repeated", func(t *testing.T, _, log string) { repeatRecord(t, log, 0) },
			stateRefusal{"state.json.log", "", []string{"record seq 1 where 2 was expected", "repeat"}}},
		{"log header checksum", func(t *testing.T, _, log string) { flipAt(t, log, 9) },
			stateRefusal{"state.json.log", "offset 8", []string{"log header checksum mismatch"}}},
		{"version 2 log beside a version 4 snapshot, no upgrade backup", func(t *testing.T, _, log string) {
			b := readFile(t, log)
			writeFile(t, log, append([]byte("KGLOGv2\n"), b[logHeaderSize:]...))
		}, stateRefusal{"state.json.log", "offset 0", []string{"a format-2 log beside a format-4 state.json", "no backup pair", restore}}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f, _ := threeWrites(t)
			snap, log := f.opts.StatePath, f.opts.StatePath+".log"
			tc.damage(t, snap, log)
			before := snapshotFiles(t, snap, log)
			_, err := openStore(t.Context(), f.opts)
			assertRefused(t, err, tc.want)
			if after := snapshotFiles(t, snap, log); !slices.Equal(before, after) {
				t.Error("a refused Open changed the state files")
			}
		})
	}
}

// TestSnapshotRestoredBesideNewerLog: A backup of
// state.json taken at seq 1, restored beside the log of seq 3, would bring
// back the secret rotated away at seq 2 (and 3). It is refused, whether or
// not the newer log holds records yet; the same snapshot beside its own
// log opens.
func TestSnapshotRestoredBesideNewerLog(t *testing.T) {
	for _, tc := range []struct {
		note        string
		moreRecords bool
	}{
		{"log with records after the newer snapshot", true},
		{"log just compacted (no records)", false},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f := newFixture(t)
			ctx := t.Context()
			snap, log := f.opts.StatePath, f.opts.StatePath+".log"
			a, err := f.store.CreateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", readSpec()) // seq 1
			if err != nil {
				t.Fatal(err)
			}
			f.reopen(t) // snapshot at seq 1, empty log based on 1
			backupSnap, backupLog := readFile(t, snap), readFile(t, log)
			if _, err := f.store.RotateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", a.ID); err != nil { // seq 2
				t.Fatal(err)
			}
			f.reopen(t) // snapshot at seq 2, empty log based on 2
			if tc.moreRecords {
				if _, err := f.store.RotateKey(ctx, "enterprise-demo-admin-token", "enterprise-demo", a.ID); err != nil { // seq 3
					t.Fatal(err)
				}
			}
			f.store.Close()

			writeFile(t, snap, backupSnap)
			_, err = openStore(ctx, f.opts)
			assertRefused(t, err, stateRefusal{"state.json", "seq", []string{
				"snapshot at seq 1 is older than state.json.log, which follows a snapshot at seq 2 (offset 8)",
				"rotated-away secrets", "restore state.json and state.json.log together"}})

			// Restored as a pair, the same backup opens.
			writeFile(t, log, backupLog)
			writeFile(t, snap, backupSnap)
			s, err := openStore(ctx, f.opts)
			if err != nil {
				t.Fatalf("the backup pair (snapshot and log of seq 1) does not open: %v", err)
			}
			if _, ok := s.KeyBySecret(a.Secret); !ok {
				t.Error("the backup pair lost the key of seq 1")
			}
			s.Close()
		})
	}
}

// TestOlderLogBesideNewerSnapshot: a log that ends before the snapshot's
// seq is older than it; the writes between are missing.
func TestOlderLogBesideNewerSnapshot(t *testing.T) {
	f, _ := threeWrites(t) // snapshot seq 0, log base 0 with records 1..3
	log := f.opts.StatePath + ".log"
	old := readFile(t, log)
	offs := recordOffsets(old)
	f.store = f.open(t) // snapshot at seq 3
	f.store.Close()
	writeFile(t, log, old[:offs[2]]) // records 1 and 2 only
	_, err := openStore(t.Context(), f.opts)
	assertRefused(t, err, stateRefusal{"state.json.log", "", []string{"log ends at seq 2, before the seq 3 of state.json"}})
}

// TestFirstStateInterrupted: the very first state writes its empty log
// (based on seq 0) before its snapshot. A crash between the two leaves that
// log alone, which holds no write: Open starts from data/keys.json again.
func TestFirstStateInterrupted(t *testing.T) {
	f := newFixture(t)
	f.store.Close()
	remove(t, f.opts.StatePath)
	f.store = f.open(t)
	if _, ok := f.store.KeyBySecret(demoSecret); !ok {
		t.Error("seed key missing after an interrupted first start")
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// cutRecord removes record i from the log.
func cutRecord(t *testing.T, path string, i int) {
	t.Helper()
	b := readFile(t, path)
	offs := append(recordOffsets(b), len(b))
	writeFile(t, path, slices.Concat(b[:offs[i]], b[offs[i+1]:]))
}

// repeatRecord writes record i twice.
func repeatRecord(t *testing.T, path string, i int) {
	t.Helper()
	b := readFile(t, path)
	offs := append(recordOffsets(b), len(b))
	writeFile(t, path, slices.Concat(b[:offs[i+1]], b[offs[i]:offs[i+1]], b[offs[i+1]:]))
}

// snapshotFiles returns the contents of paths ("" for a missing file).
func snapshotFiles(t *testing.T, paths ...string) []string {
	t.Helper()
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestSnapshotChecksum: a one-bit flip in any part of a format-4 snapshot
// (a field of a key record, the header line, a frame header, the end
// frame) fails start-up naming state.json and what is wrong, instead of
// silently killing a key (a secret hash bit) or orphaning it (a service
// id). TestSnapshotBitFlips covers every bit of a snapshot.
func TestSnapshotChecksum(t *testing.T) {
	const restore = "restore state.json and state.json.log together"
	demoHash := sha256.Sum256([]byte(demoSecret))
	demoCreated, _ := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).MarshalBinary()
	after := func(text string) func([]byte) int {
		return func(b []byte) int {
			if i := bytes.Index(b, []byte(text)); i >= 0 {
				return i + len(text)
			}
			return -1
		}
	}
	at := func(text string) func([]byte) int {
		return func(b []byte) int { return bytes.Index(b, []byte(text)) }
	}
	firstFrame := func(b []byte) int { return bytes.IndexByte(b, '\n') + 1 }
	for _, tc := range []struct {
		note string
		at   func([]byte) int // the byte flipped
		bit  byte             // 0: replace the byte by 'x'
		want stateRefusal
	}{
		{"secret hash bit", at(string(demoHash[:])), 0x01, stateRefusal{"state.json", "", []string{"frame checksum mismatch", restore}}},
		{"service id", after("\tteam-demo"), 0x01, stateRefusal{"state.json", "", []string{"frame checksum mismatch"}}},
		{"key name", at("Demo read-only key"), 0x01, stateRefusal{"state.json", "", []string{"frame checksum mismatch"}}},
		{"createdAt", at(string(demoCreated[1:])), 0x01, stateRefusal{"state.json", "", []string{"frame checksum mismatch"}}},
		{"frame length", firstFrame, 0x01, stateRefusal{"state.json", "", []string{"frame header checksum mismatch"}}},
		{"header seq", after(`"seq":`), 0x01, stateRefusal{"state.json", "header", []string{"header checksum mismatch", restore}}},
		{"header key count", after(`"keys":`), 0x01, stateRefusal{"state.json", "header", []string{"header checksum mismatch"}}},
		// A flipped digit is a mismatch; a digit flipped out of hex, a header line that no longer parses.
		{"header stored checksum", after(`"checksum":"crc32c:`), 0x01, stateRefusal{"state.json", "header", []string{"header checksum mismatch"}}},
		{"header stored checksum, out of hex", after(`"checksum":"crc32c:`), 0, stateRefusal{"state.json", "header", []string{"no crc32c checksum at the end of the header line"}}},
		{"end frame stored checksum", func(b []byte) int { return len(b) - 8 }, 0x01, stateRefusal{"state.json", "", []string{"frame header checksum mismatch"}}},
		{"end frame header checksum", func(b []byte) int { return len(b) - 1 }, 0x01, stateRefusal{"state.json", "", []string{"frame header checksum mismatch"}}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f, _ := threeWrites(t)
			f.store = f.open(t) // the keys are in the snapshot now
			f.store.Close()
			b := readFile(t, f.opts.StatePath)
			i := tc.at(b)
			if i < 0 {
				t.Fatalf("nothing to flip for %s in %q", tc.note, b)
			}
			if tc.bit == 0 {
				b[i] = 'x' // not a hex digit, still a JSON string
			} else {
				b[i] ^= tc.bit
			}
			writeFile(t, f.opts.StatePath, b)
			_, err := openStore(t.Context(), f.opts)
			assertRefused(t, err, tc.want)
		})
	}
}

// TestSnapshotCut: a snapshot cut short, or with bytes after its end,
// is refused (a snapshot is renamed into place whole: neither is a crash).
func TestSnapshotCut(t *testing.T) {
	for _, tc := range []struct {
		note   string
		damage func([]byte) []byte
		says   string
	}{
		{"end frame missing", func(b []byte) []byte { return b[:len(b)-12] }, "truncated: the file ends after 2 of its 2 keys, without its end frame"},
		{"cut inside a frame", func(b []byte) []byte { return b[:len(b)-20] }, "truncated: the file ends inside a frame"},
		{"cut inside the end frame", func(b []byte) []byte { return b[:len(b)-5] }, "truncated"},
		{"bytes after the end", func(b []byte) []byte { return append(b, 0) }, "data after the end frame"},
		{"header line only", func(b []byte) []byte { return b[:bytes.IndexByte(b, '\n')+1] }, "truncated: the file ends after 0 of its 2 keys"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f, _ := threeWrites(t)
			f.store = f.open(t)
			f.store.Close()
			writeFile(t, f.opts.StatePath, tc.damage(readFile(t, f.opts.StatePath)))
			_, err := openStore(t.Context(), f.opts)
			assertRefused(t, err, stateRefusal{"state.json", "", []string{tc.says, "restore state.json and state.json.log together"}})
		})
	}
}
