package local

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

// The format-2 fixture in testdata/v2 was written by the real keygate of
// the last format-2 release (23de829; testdata/v2/gen.sh says how): a
// snapshot at seq 3 (seed key, alpha, bravo, charlie) and a log with
// records 4-9 (rotate bravo, delete charlie, delete the seed key, create
// delta, update alpha, rotate bravo).

const v2Fixture = "testdata/v2"

type v2Expected struct {
	Seq  uint64 `json:"seq"`
	Live []struct {
		ID, Service, Name, Secret string
		Revision                  uint64
	} `json:"live"`
	DeadSecrets []struct{ Why, Secret string } `json:"deadSecrets"`
	DeletedIDs  []string                       `json:"deletedIDs"`
}

func loadV2Expected(t *testing.T) v2Expected {
	t.Helper()
	var e v2Expected
	if err := json.Unmarshal(v2Read(t, filepath.Join(v2Fixture, "expected.json")), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func v2Read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func v2Write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// v2StateDir copies the fixture into a fresh state directory and returns the
// snapshot's path.
func v2StateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"state.json", "state.json.log"} {
		v2Write(t, filepath.Join(dir, name), v2Read(t, filepath.Join(v2Fixture, name)))
	}
	return filepath.Join(dir, "state.json")
}

func v2Options(statePath string, logs *strings.Builder, mu *sync.Mutex) testOptions {
	return testOptions{storeOptions: keystore.Options{DataDir: "../../../data", Authorizer: allowAdmins{}, Logger: slog.New(slog.NewTextHandler(lockedWriter{mu, logs}, nil))}, Options: Options{StatePath: statePath}}
}

// v2Frames splits a format-2 log into its header and its frames.
func v2Frames(t *testing.T, log []byte) [][]byte {
	t.Helper()
	var frames [][]byte
	for off := len(v2LogMagic); off < len(log); {
		n := int(binary.LittleEndian.Uint32(log[off:]))
		frames = append(frames, log[off:off+frameHeader+n])
		off += frameHeader + n
	}
	return frames
}

// assertFixtureKeys checks s holds exactly the fixture's keys: live
// secrets authenticate as their key, rotated-away and deleted ones do not.
func assertFixtureKeys(t *testing.T, s *keystore.Store, e v2Expected) {
	t.Helper()
	for _, k := range e.Live {
		got, ok := s.KeyBySecret(k.Secret)
		if !ok || got.ID != k.ID || got.Service != k.Service || got.Name != k.Name || got.Revision != k.Revision {
			t.Errorf("secret of %s (%s): got %+v, %v", k.ID, k.Name, got, ok)
		}
	}
	for _, d := range e.DeadSecrets {
		if got, ok := s.KeyBySecret(d.Secret); ok {
			t.Errorf("%s: its secret still authenticates as %s", d.Why, got.ID)
		}
	}
	for _, id := range e.DeletedIDs {
		for _, svc := range []string{"business-demo", "team-demo"} {
			if _, err := s.GetKey(t.Context(), svc+"-admin-token", svc, id); err == nil {
				t.Errorf("deleted key %s is back in %s", id, svc)
			}
		}
	}
	keys, err := s.ListKeys(t.Context(), "business-demo-admin-token", "business-demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(e.Live) {
		t.Errorf("business-demo has %d keys, want %d", len(keys), len(e.Live))
	}
}

// assertSnapshotKeys checks s holds the keys of the fixture's snapshot
// alone (seq 3, before the log's records).
func assertSnapshotKeys(t *testing.T, s *keystore.Store, e v2Expected) {
	t.Helper()
	for _, secret := range []string{"team-demo-read-key", e.DeadSecrets[0].Secret, e.DeadSecrets[2].Secret, e.Live[0].Secret} {
		if _, ok := s.KeyBySecret(secret); !ok {
			t.Errorf("a key of the snapshot (secret %.6s…) is missing", secret)
		}
	}
	if _, ok := s.KeyBySecret(e.Live[2].Secret); ok {
		t.Error("delta, created in the log only, is there")
	}
}

// assertV3 checks the pair on disk is the current format (a format-4
// snapshot, a format-3 log), the log based on seq.
func assertV3(t *testing.T, statePath string, seq uint64) {
	t.Helper()
	snap := v2Read(t, statePath)
	j := newJournal(nil, statePath, DefaultCompactAfter, slog.New(slog.DiscardHandler))
	got, _, err := j.decodeSnapshot(snap)
	if err != nil || got != seq || !isSnapshotV4Head(snap) {
		t.Errorf("state.json: seq %d, %v; want a format-4 snapshot at seq %d", got, err, seq)
	}
	log := v2Read(t, statePath+".log")
	if base, err := j.logHeader(log); err != nil || base != seq || len(log) != logHeaderSize {
		t.Errorf("state.json.log: base %d, %d bytes, %v; want an empty format-3 log based on %d", base, len(log), err, seq)
	}
}

// backupsOf lists the backup pairs beside statePath whose snapshot and log
// are byte-identical to snap and log (log nil: no log backup).
func backupsOf(t *testing.T, statePath string, snap, log []byte) (matching, all int) {
	t.Helper()
	j := newJournal(nil, statePath, DefaultCompactAfter, slog.New(slog.DiscardHandler))
	for _, b := range j.backupPairs() {
		all++
		s, err := os.ReadFile(b.snap)
		if err != nil {
			t.Fatal(err)
		}
		l, err := os.ReadFile(b.log)
		logOK := (log == nil && errors.Is(err, fs.ErrNotExist)) || (err == nil && bytes.Equal(l, log))
		if bytes.Equal(s, snap) && logOK {
			matching++
		}
	}
	return matching, all
}

// TestUpgradeV2Fixture: Open on the state the real format-2 keygate wrote
// gives the same keys, writes format 3, keeps the format-2 pair byte for
// byte as a backup and says so at WARN; the next Open is an ordinary one.
func TestUpgradeV2Fixture(t *testing.T) {
	e := loadV2Expected(t)
	statePath := v2StateDir(t)
	v2Write(t, statePath+".lock", nil) // format-2 keygate left its lock file (not held)
	snap0, log0 := v2Read(t, statePath), v2Read(t, statePath+".log")
	var logs strings.Builder
	var mu sync.Mutex
	s, err := openTest(t.Context(), v2Options(statePath, &logs, &mu))
	if err != nil {
		t.Fatal(err)
	}
	assertFixtureKeys(t, s, e)
	// The upgrade took format-2 keygate's lock and let it go when done.
	unlock, err := lockV2(statePath + ".lock")
	if err != nil {
		t.Errorf("format-2 lock still held after the upgrade: %v", err)
	} else {
		unlock()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertV3(t, statePath, e.Seq)
	if m, all := backupsOf(t, statePath, snap0, log0); m != 1 || all != 1 {
		t.Errorf("%d backup pairs (%d identical to the format-2 pair), want exactly 1 identical", all, m)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, want := range []string{"level=WARN msg=\"state format 2 found", "level=WARN msg=\"state upgraded from format 2 to format 4",
		"backup=" + statePath + ".v2-backup-", "log_backup=" + statePath + ".log.v2-backup-", "seq=9", "keys=3", "from_snapshot_seq=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not say %q:\n%s", want, out)
		}
	}

	// The upgraded state is an ordinary format-3 state: it takes writes,
	// and the next Open neither upgrades nor copies again.
	logs.Reset()
	s, err = openTest(t.Context(), v2Options(statePath, &logs, &mu))
	if err != nil {
		t.Fatal(err)
	}
	assertFixtureKeys(t, s, e)
	c, err := s.CreateKey(t.Context(), "business-demo-admin-token", "business-demo", keystore.KeySpec{Name: "after", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = openTest(t.Context(), v2Options(statePath, &logs, &mu))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.KeyBySecret(c.Secret); !ok {
		t.Error("key written after the upgrade lost")
	}
	if strings.Contains(logs.String(), "format 2") {
		t.Errorf("a format-3 start mentions format 2:\n%s", logs.String())
	}
	if _, all := backupsOf(t, statePath, nil, nil); all != 1 {
		t.Errorf("%d backup pairs after three starts, want 1", all)
	}
}

// TestUpgradeV2Variants: format-2 states the old release could leave
// after a crash upgrade with the keys it would have served.
func TestUpgradeV2Variants(t *testing.T) {
	e := loadV2Expected(t)
	frames := v2Frames(t, v2Read(t, filepath.Join(v2Fixture, "state.json.log")))
	snapKeys := func(t *testing.T, s *keystore.Store) { assertSnapshotKeys(t, s, e) }
	for _, tc := range []struct {
		note     string
		damage   func(t *testing.T, snap, log string)
		seq      uint64
		check    func(t *testing.T, s *keystore.Store)
		evidence bool // a torn tail: an evidence copy of the log is kept
	}{
		{"torn final record (half a frame appended)", func(t *testing.T, _, log string) {
			v2Write(t, log, append(v2Read(t, log), frames[0][:len(frames[0])/2]...))
		}, 9, func(t *testing.T, s *keystore.Store) { assertFixtureKeys(t, s, e) }, true},
		{"torn record header", func(t *testing.T, _, log string) {
			v2Write(t, log, append(v2Read(t, log), frames[0][:7]...))
		}, 9, func(t *testing.T, s *keystore.Store) { assertFixtureKeys(t, s, e) }, true},
		{"zero-filled tail", func(t *testing.T, _, log string) {
			v2Write(t, log, append(v2Read(t, log), make([]byte, 300)...))
		}, 9, func(t *testing.T, s *keystore.Store) { assertFixtureKeys(t, s, e) }, true},
		{"torn log header (crash after format 2 truncated the log)", func(t *testing.T, _, log string) {
			v2Write(t, log, []byte("KGL"))
		}, 3, snapKeys, true},
		{"empty log", func(t *testing.T, _, log string) { v2Write(t, log, nil) }, 3, snapKeys, true},
		{"header-only log", func(t *testing.T, _, log string) { v2Write(t, log, []byte(v2LogMagic)) }, 3, snapKeys, false},
		{"no log (format 2 started, crashed before creating it)", func(t *testing.T, _, log string) {
			if err := os.Remove(log); err != nil {
				t.Fatal(err)
			}
		}, 3, snapKeys, false},
		{"log of records at or below the snapshot's seq (crash before the log was truncated)", func(t *testing.T, snap, _ string) {
			v2Write(t, snap, bytes.Replace(v2Read(t, snap), []byte(`"seq":3,`), []byte(`"seq":9,`), 1))
		}, 9, snapKeys, false},
	} {
		t.Run(tc.note, func(t *testing.T) {
			statePath := v2StateDir(t)
			tc.damage(t, statePath, statePath+".log")
			snap0 := v2Read(t, statePath)
			log0, err := os.ReadFile(statePath + ".log")
			if err != nil {
				log0 = nil
			}
			var logs strings.Builder
			var mu sync.Mutex
			s, err := openTest(t.Context(), v2Options(statePath, &logs, &mu))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
			s.Close()
			assertV3(t, statePath, tc.seq)
			if m, all := backupsOf(t, statePath, snap0, log0); m != 1 || all != 1 {
				t.Errorf("%d backup pairs (%d identical to the format-2 pair), want exactly 1 identical", all, m)
			}
			copies, _ := filepath.Glob(statePath + ".log.corrupt-*")
			if tc.evidence != (len(copies) == 1) {
				t.Errorf("evidence copies %v, want one: %v", copies, tc.evidence)
			}
			if len(copies) == 1 && !bytes.Equal(v2Read(t, copies[0]), log0) {
				t.Error("the evidence copy is not the log as found")
			}
		})
	}
}

// TestUpgradeV2Refusals: a format-2 pair that is not one format 2 could
// have left is refused, naming the file, the offset and what to do, and
// nothing is written: neither the pair nor a backup.
func TestUpgradeV2Refusals(t *testing.T) {
	frames := v2Frames(t, v2Read(t, filepath.Join(v2Fixture, "state.json.log")))
	withFrames := func(fr ...[]byte) []byte { return slices.Concat(append([][]byte{[]byte(v2LogMagic)}, fr...)...) }
	offsetOf := func(i int) string { // offset of frame i in the fixture log
		off := len(v2LogMagic)
		for _, f := range frames[:i] {
			off += len(f)
		}
		return fmt.Sprintf("offset %d", off)
	}
	for _, tc := range []struct {
		note   string
		damage func(t *testing.T, snap, log string)
		file   string
		where  string
		says   []string
	}{
		{"a record missing above the snapshot (gap)", func(t *testing.T, _, log string) {
			v2Write(t, log, withFrames(frames[0], frames[2], frames[3]))
		}, "state.json.log", offsetOf(1), []string{"record seq 6 where 5 was expected", "a gap", "truncate the log at this offset"}},
		{"the first record after the snapshot missing", func(t *testing.T, _, log string) {
			v2Write(t, log, withFrames(frames[1:]...))
		}, "state.json.log", offsetOf(0), []string{"record seq 5 where at most 4 was expected", "after the snapshot at seq 3 are missing"}},
		{"a record repeated", func(t *testing.T, _, log string) {
			v2Write(t, log, withFrames(frames[0], frames[0], frames[1]))
		}, "state.json.log", offsetOf(1), []string{"record seq 4 where 5 was expected", "a repeat"}},
		{"log ends before the snapshot's seq", func(t *testing.T, snap, _ string) {
			v2Write(t, snap, bytes.Replace(v2Read(t, snap), []byte(`"seq":3,`), []byte(`"seq":12,`), 1))
		}, "state.json.log", "", []string{"log ends at seq 9, before the seq 12 of state.json"}},
		{"damaged record length", func(t *testing.T, _, log string) {
			b := v2Read(t, log)
			b[len(v2LogMagic)+len(frames[0])+1] ^= 0x04
			v2Write(t, log, b)
		}, "state.json.log", offsetOf(1), []string{"record header checksum mismatch"}},
		{"damaged record payload", func(t *testing.T, _, log string) {
			b := v2Read(t, log)
			b[len(v2LogMagic)+frameHeader+5] ^= 0x01
			v2Write(t, log, b)
		}, "state.json.log", offsetOf(0), []string{"record checksum mismatch"}},
		{"unknown field in the snapshot", func(t *testing.T, snap, _ string) {
			v2Write(t, snap, bytes.Replace(v2Read(t, snap), []byte(`"seq":3,`), []byte(`"seq":3,"extra":1,`), 1))
		}, "state.json", "extra", []string{"unknown field"}},
		{"a format-3 log beside a format-2 snapshot", func(t *testing.T, _, log string) {
			v2Write(t, log, encodeLogHeader(3))
		}, "state.json.log", "offset 0", []string{"a format-3 log beside a format-2 snapshot"}},
		{"format-2 log without a snapshot", func(t *testing.T, snap, _ string) {
			if err := os.Remove(snap); err != nil {
				t.Fatal(err)
			}
		}, "state.json", "", []string{"missing, but a format-2 state.json.log exists", "restore state.json and state.json.log together"}},
		{"version 1 snapshot", func(t *testing.T, snap, _ string) {
			v2Write(t, snap, bytes.Replace(v2Read(t, snap), []byte(`"version":2`), []byte(`"version":1`), 1))
		}, "state.json", "version", []string{"state format version 1 is not read by this keygate"}},
		{"format-2 keygate still running (holds state.json.lock)", func(t *testing.T, snap, _ string) {
			if runtime.GOOS == "windows" {
				t.Skip("no flock: format-2 keygate took no lock there")
			}
			v2Write(t, snap+".lock", nil) // format-2 keygate's lock file, held as it held it
			unlock, err := lockV2(snap + ".lock")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(unlock)
		}, "state.json", "", []string{"a keygate of the previous release (state format 2) is running on this state"}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			statePath := v2StateDir(t)
			tc.damage(t, statePath, statePath+".log")
			before := v2DirContents(t, filepath.Dir(statePath))
			var logs strings.Builder
			var mu sync.Mutex
			_, err := openTest(t.Context(), v2Options(statePath, &logs, &mu))
			var de *keystore.DataError
			if !errors.As(err, &de) {
				t.Fatalf("Open = %v; want a refusal naming %s", err, tc.file)
			}
			if filepath.Base(de.File) != tc.file || (tc.where != "" && de.Field != tc.where) {
				t.Errorf("refusal names %s at %q; want %s at %q (%v)", de.File, de.Field, tc.file, tc.where, err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("refusal %q does not say %q", err, s)
				}
			}
			if after := v2DirContents(t, filepath.Dir(statePath)); !maps.Equal(before, after) {
				t.Errorf("a refused Open changed the state directory:\nbefore %v\nafter  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
			}
		})
	}
}

// v2DirContents maps every file of dir to the SHA-256 of its bytes.
func v2DirContents(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range entries {
		out[e.Name()] = sha256.Sum256(v2Read(t, filepath.Join(dir, e.Name())))
	}
	return out
}

// crashFS is the real file system that, at its nth mutating operation
// (a write, an fsync, a rename, a directory fsync or a removal), either
// fails it with EIO (fail) or stops dead before it, as a crash would:
// it panics, and nothing of the journal's clean-up runs.
type crashFS struct {
	osFS
	n     int
	crash bool
	mu    sync.Mutex
	ops   []string
}

type crashed struct{}

func (c *crashFS) step(op string) error {
	c.mu.Lock()
	c.ops = append(c.ops, op)
	hit := len(c.ops) == c.n
	c.mu.Unlock()
	switch {
	case hit && c.crash:
		panic(crashed{})
	case hit:
		return syscall.EIO
	}
	return nil
}

func (c *crashFS) CreateTemp(dir, pattern string) (stateFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) OpenFile(name string, flag int, perm os.FileMode) (stateFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, fs: c}, nil
}

func (c *crashFS) Rename(oldpath, newpath string) error {
	if err := c.step("rename " + templess(newpath)); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return os.Rename(oldpath, newpath)
}

func (c *crashFS) Remove(name string) error {
	if err := c.step("remove " + templess(name)); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return os.Remove(name)
}

func (c *crashFS) SyncDir(dir string) error {
	if err := c.step("syncdir"); err != nil {
		return err
	}
	return c.osFS.SyncDir(dir)
}

// templess names a file by what it becomes, without the temp file's
// random part or a backup's time.
func templess(name string) string {
	base, tmp := filepath.Base(name), ""
	if i := strings.Index(base, ".tmp-"); i >= 0 {
		base, tmp = base[:i], ".tmp"
	}
	if i := strings.Index(base, backupTag); i >= 0 {
		base = base[:i+len(backupTag)] + "<unix>"
	}
	return base + tmp
}

type crashFile struct {
	*os.File
	fs *crashFS
}

func (f *crashFile) Write(p []byte) (int, error) {
	if err := f.fs.step("write " + templess(f.Name())); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *crashFile) Sync() error {
	if err := f.fs.step("sync " + templess(f.Name())); err != nil {
		return err
	}
	return f.File.Sync()
}

// openCrashing opens statePath through c; crashed reports a simulated crash.
func openCrashing(t *testing.T, statePath string, c *crashFS) (err error, crashedNow bool) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crashed); !ok {
				panic(r)
			}
			crashedNow = true
		}
	}()
	var logs strings.Builder
	var mu sync.Mutex
	opts := v2Options(statePath, &logs, &mu)
	opts.fsys = c
	s, err := openTest(t.Context(), opts)
	if err == nil {
		s.Close()
	}
	return err, false
}

// TestUpgradeV2Crash: the upgrade is interrupted at each of its file
// operations in turn — failed with EIO (Open reports it and cleans up) or
// stopped dead before it, as by a crash or a power cut right then (nothing
// after it runs) — and then keygate starts again on the real file system.
// Every time, that start gives exactly the fixture's keys, on a format-3
// pair with a byte-identical backup of the format-2 pair beside it. The
// crash points include the one between the format-3 snapshot's rename and
// the log's, which leaves a format-3 snapshot beside the format-2 log.
func TestUpgradeV2Crash(t *testing.T) {
	e := loadV2Expected(t)
	backupOps := func(names ...string) []string {
		var ops []string
		for _, n := range names {
			ops = append(ops, "write "+n+".tmp", "sync "+n+".tmp", "rename "+n)
		}
		return append(ops, "syncdir")
	}
	// The audit trail (state.json.audit) of a state that had none starts
	// empty, after the backups and before format 3: a crash between leaves
	// the format-2 pair and an empty trail, which the next start keeps.
	v3Ops := []string{
		"write state.json.audit.tmp", "sync state.json.audit.tmp", "rename state.json.audit", "syncdir",
		"write state.json.tmp", "sync state.json.tmp", "rename state.json", "syncdir",
		"write state.json.log.tmp", "sync state.json.log.tmp", "rename state.json.log", "syncdir",
	}
	for _, v := range []struct {
		note    string
		prepare func(t *testing.T, statePath string)
		// The backups are durable (file and directory fsynced) before the
		// first byte of format 3 is written; then the snapshot, then the log.
		ops  []string
		seq  uint64
		keys func(t *testing.T, s *keystore.Store)
		logs [][]byte // what a log backup may hold; nil: no log backup
	}{
		{"snapshot and log", func(*testing.T, string) {},
			slices.Concat(backupOps("state.json.v2-backup-<unix>", "state.json.log.v2-backup-<unix>"), v3Ops),
			e.Seq, func(t *testing.T, s *keystore.Store) { assertFixtureKeys(t, s, e) },
			[][]byte{v2Read(t, filepath.Join(v2Fixture, "state.json.log"))}},
		{"snapshot without log", func(t *testing.T, statePath string) {
			if err := os.Remove(statePath + ".log"); err != nil {
				t.Fatal(err)
			}
		},
			slices.Concat(backupOps("state.json.v2-backup-<unix>"), // then the empty format-2 log
				[]string{"write state.json.log.tmp", "sync state.json.log.tmp", "rename state.json.log", "syncdir"}, v3Ops),
			3, func(t *testing.T, s *keystore.Store) { assertSnapshotKeys(t, s, e) },
			[][]byte{nil, []byte(v2LogMagic)}},
	} {
		t.Run(v.note, func(t *testing.T) {
			snap0 := v2Read(t, filepath.Join(v2Fixture, "state.json"))
			fresh := func(t *testing.T) string {
				statePath := v2StateDir(t)
				v.prepare(t, statePath)
				return statePath
			}
			clean := &crashFS{}
			if err, _ := openCrashing(t, fresh(t), clean); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(clean.ops, v.ops) {
				t.Fatalf("upgrade operations:\n%s\nwant\n%s", strings.Join(clean.ops, ", "), strings.Join(v.ops, ", "))
			}
			midway := 0 // interruptions that left a format-3 snapshot beside the format-2 log
			for _, crash := range []bool{false, true} {
				for n := 1; n <= len(v.ops); n++ {
					mode := "fail"
					if crash {
						mode = "crash"
					}
					t.Run(fmt.Sprintf("%s before %d %s", mode, n, v.ops[n-1]), func(t *testing.T) {
						statePath := fresh(t)
						err, crashedNow := openCrashing(t, statePath, &crashFS{n: n, crash: crash})
						if crash && !crashedNow {
							t.Fatalf("no crash at operation %d (err %v)", n, err)
						}
						if !crash && err == nil {
							t.Fatalf("Open succeeded despite the failed %s", v.ops[n-1])
						}
						left := v2Read(t, statePath)
						leftLog, _ := os.ReadFile(statePath + ".log")
						if !isV2Snapshot(left) && bytes.HasPrefix(leftLog, []byte(v2LogMagic)) {
							midway++
						}
						done := !isV2Snapshot(left) && bytes.HasPrefix(leftLog, []byte(logMagic)) // only the last directory fsync missed

						var logs strings.Builder
						var mu sync.Mutex
						s, err := openTest(t.Context(), v2Options(statePath, &logs, &mu))
						if err != nil {
							t.Fatalf("the state the interruption left does not open: %v", err)
						}
						v.keys(t, s)
						s.Close()
						assertV3(t, statePath, v.seq)
						matching, all := 0, 0
						for _, l := range v.logs {
							m, a := backupsOf(t, statePath, snap0, l)
							matching, all = matching+m, a
						}
						if matching != 1 || all != 1 {
							t.Errorf("%d backup pairs (%d identical to the format-2 pair), want exactly 1 identical", all, matching)
						}
						if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(statePath), "*.tmp-*")); len(tmps) > 0 {
							t.Errorf("temp files left: %v", tmps)
						}
						if !done && !strings.Contains(logs.String(), "state upgraded from format 2 to format 4") {
							t.Errorf("the start after the interruption does not report the upgrade:\n%s", logs.String())
						}
					})
				}
			}
			if midway == 0 {
				t.Error("no interruption left a format-3 snapshot beside the format-2 log: the resumed upgrade was not exercised")
			}
		})
	}
}

// TestUpgradeV2ResumeRefused: a format-3 snapshot beside a format-2 log is
// accepted only when a backup pair upgrades to exactly that snapshot.
func TestUpgradeV2ResumeRefused(t *testing.T) {
	for _, tc := range []struct {
		note   string
		damage func(t *testing.T, statePath string)
	}{
		{"backups removed", func(t *testing.T, statePath string) {
			for _, b := range newJournal(nil, statePath, 1, nil).backupPairs() {
				os.Remove(b.snap)
				os.Remove(b.log)
			}
		}},
		{"format-2 log changed after the backup (a record cut)", func(t *testing.T, statePath string) {
			log := v2Read(t, statePath+".log")
			frames := v2Frames(t, log)
			v2Write(t, statePath+".log", log[:len(log)-len(frames[len(frames)-1])])
		}},
		{"a format-3 snapshot at the same seq but not the upgrade (a key missing)", func(t *testing.T, statePath string) {
			j := newJournal(nil, statePath, 1, nil)
			seq, keys, err := j.decodeSnapshot(v2Read(t, statePath))
			if err != nil {
				t.Fatal(err)
			}
			var all []*keystore.Key
			for _, k := range keys {
				all = append(all, k)
			}
			snap, err := encodeSnapshot(seq, all[1:])
			if err != nil {
				t.Fatal(err)
			}
			v2Write(t, statePath, snap)
		}},
		{"a later format-3 snapshot beside the format-2 log", func(t *testing.T, statePath string) {
			// The upgraded state took a write and was compacted: the
			// snapshot is no longer the upgrade of the backup.
			var logs strings.Builder
			var mu sync.Mutex
			log := v2Read(t, statePath+".log")
			if err := os.WriteFile(statePath+".log", encodeLogHeader(9), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := openTest(t.Context(), v2Options(statePath, &logs, &mu))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateKey(t.Context(), "business-demo-admin-token", "business-demo", keystore.KeySpec{Name: "x", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, err = openTest(t.Context(), v2Options(statePath, &logs, &mu))
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			v2Write(t, statePath+".log", log)
		}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			statePath := v2StateDir(t)
			// Stop the upgrade dead before the format-3 log's rename.
			probe := &crashFS{}
			if err, _ := openCrashing(t, v2StateDir(t), probe); err != nil {
				t.Fatal(err)
			}
			n := slices.Index(probe.ops, "rename state.json.log") + 1
			if _, crashedNow := openCrashing(t, statePath, &crashFS{n: n, crash: true}); !crashedNow {
				t.Fatal("no crash")
			}
			tc.damage(t, statePath)
			var logs strings.Builder
			var mu sync.Mutex
			_, err := openTest(t.Context(), v2Options(statePath, &logs, &mu))
			var de *keystore.DataError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), "a format-2 log beside a format-4 state.json, and no backup pair") {
				t.Fatalf("Open = %v; want the format-2 log beside a format-3 snapshot refused", err)
			}
		})
	}
}
