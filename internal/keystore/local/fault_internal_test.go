package local

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// Storage faults injected under the journal. Each test
// asserts what the Store's caller saw and what a restart on the real file
// system finds on disk.

// fault is one injected failure: the nth operation op on a file of kind
// after the faults were armed fails with err.
type fault struct {
	op   string // "read", "write", "sync", "rename", "syncdir"
	kind string // "log", "snapshot", "evidence"; for syncdir ""
	nth  int    // 1-based
	err  error
	// short is how many bytes a failing write still writes (-1: half).
	short int
	// dropUnsynced makes a failing sync lose what was written since the
	// last successful one, as Linux may after a writeback error.
	dropUnsynced bool
}

// faultFS is the real file system plus injected faults, a slow log fsync
// and a record of every operation (with "ack" events the test adds).
type faultFS struct {
	osFS
	mu        sync.Mutex
	faults    []fault
	counts    map[string]int // op/kind → operations since arm
	events    []string       // "write log", "sync log", "rename snapshot", "syncdir", "ack", …
	syncDelay time.Duration  // added to every log fsync
	syncing   atomic.Int32   // log fsyncs in progress (slept in)
}

func newFaultFS() *faultFS { return &faultFS{counts: map[string]int{}} }

// arm resets the counters and sets the faults (Open's own writes come before).
func (f *faultFS) arm(faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults, f.counts, f.events = faults, map[string]int{}, nil
}

func (f *faultFS) setSyncDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncDelay = d
}

func (f *faultFS) note(event string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, event)
}

func (f *faultFS) count(op, kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op+"/"+kind]
}

func (f *faultFS) eventLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

// step records op on kind and returns the fault to inject, if any.
func (f *faultFS) step(op, kind string) (fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := op + "/" + kind
	f.counts[k]++
	f.events = append(f.events, strings.TrimSpace(op+" "+kind))
	for _, ft := range f.faults {
		if ft.op == op && ft.kind == kind && ft.nth == f.counts[k] {
			return ft, true
		}
	}
	return fault{}, false
}

func fileKind(name string) string {
	switch base := filepath.Base(name); {
	case strings.HasPrefix(base, "state.json.log.tmp-") || base == "state.json.log":
		return "log"
	case strings.HasPrefix(base, "state.json.tmp-") || base == "state.json":
		return "snapshot"
	case strings.HasPrefix(base, "state.json.log.corrupt-"):
		return "evidence"
	case base == "state.json.audit" || strings.HasPrefix(base, "state.json.audit.tmp-"):
		return "audit"
	default:
		return "other"
	}
}

func (f *faultFS) CreateTemp(dir, pattern string) (stateFile, error) {
	file, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, kind: fileKind(file.Name())}, nil
}

func (f *faultFS) ReadFile(name string) ([]byte, error) {
	if ft, ok := f.step("read", fileKind(name)); ok {
		return nil, &os.PathError{Op: "read", Path: name, Err: ft.err}
	}
	return os.ReadFile(name)
}

func (f *faultFS) Open(name string) (io.ReadCloser, error) {
	if ft, ok := f.step("read", fileKind(name)); ok {
		return nil, &os.PathError{Op: "read", Path: name, Err: ft.err}
	}
	return os.Open(name)
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (stateFile, error) {
	file, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	ff := &faultFile{File: file, fs: f, kind: fileKind(name)}
	if flag&os.O_APPEND != 0 {
		// Appends go after what is already there (and durable).
		if fi, err := file.Stat(); err == nil {
			ff.written, ff.synced = fi.Size(), fi.Size()
		}
	}
	return ff, nil
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	if ft, ok := f.step("rename", fileKind(oldpath)); ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: ft.err}
	}
	return os.Rename(oldpath, newpath)
}

func (f *faultFS) SyncDir(dir string) error {
	if ft, ok := f.step("syncdir", ""); ok {
		return fmt.Errorf("sync dir %s: %w", dir, ft.err)
	}
	return f.osFS.SyncDir(dir)
}

type faultFile struct {
	*os.File
	fs      *faultFS
	kind    string
	written int64 // bytes written through this handle
	synced  int64 // bytes durable at the last successful sync
}

func (ff *faultFile) Write(p []byte) (int, error) {
	if ft, ok := ff.fs.step("write", ff.kind); ok {
		n := ft.short
		if n < 0 {
			n = len(p) / 2
		}
		n, _ = ff.File.Write(p[:n])
		ff.written += int64(n)
		return n, ft.err
	}
	n, err := ff.File.Write(p)
	ff.written += int64(n)
	return n, err
}

func (ff *faultFile) Sync() error {
	ft, ok := ff.fs.step("sync", ff.kind)
	if ff.kind == "log" {
		ff.fs.mu.Lock()
		d := ff.fs.syncDelay
		ff.fs.mu.Unlock()
		ff.fs.syncing.Add(1)
		time.Sleep(d)
		ff.fs.syncing.Add(-1)
	}
	if ok {
		if ft.dropUnsynced {
			// The pages the failed fsync could not write are gone.
			if err := ff.File.Truncate(ff.synced); err != nil {
				panic(err)
			}
		}
		return &os.PathError{Op: "sync", Path: ff.Name(), Err: ft.err}
	}
	if err := ff.File.Sync(); err != nil {
		return err
	}
	ff.synced = ff.written
	return nil
}

// allowAdmins is a minimal keys policy for the internal tests (keystoretest
// imports this package): an admin of the service may do anything.
type allowAdmins struct{}

func (allowAdmins) AuthorizeKeys(_ context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	switch {
	case req.Member == nil:
		return keystore.KeyDecision{Status: http.StatusUnauthorized, Code: "unauthenticated"}, nil
	case req.Member.Role != "admin" || req.Member.Service != req.Service.ID:
		return keystore.KeyDecision{Status: http.StatusForbidden, Code: "forbidden"}, nil
	}
	return keystore.KeyDecision{Allow: true}, nil
}

const (
	faultAdmin   = "enterprise-demo-admin-token"
	faultService = "enterprise-demo"
)

type faultFixture struct {
	fs    *faultFS
	opts  testOptions
	store *keystore.Store
	logs  *strings.Builder
	mu    sync.Mutex
}

// newFaultFixture opens a store on data/ and fresh state through a faultFS.
func newFaultFixture(t *testing.T, compactAfter int) *faultFixture {
	t.Helper()
	f := &faultFixture{fs: newFaultFS(), logs: &strings.Builder{}}
	f.opts = testOptions{storeOptions: keystore.Options{DataDir: "../../../data", Authorizer: allowAdmins{}, Logger: slog.New(slog.NewTextHandler(lockedWriter{&f.mu, f.logs}, nil))}, Options: Options{StatePath: filepath.Join(t.TempDir(), "state", "state.json"), CompactAfter: compactAfter, fsys: f.fs}}
	s, err := openTest(t.Context(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f.store = s
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// create makes a key named name and notes its acknowledgement.
func (f *faultFixture) create(t *testing.T, name string) (keystore.Created, error) {
	t.Helper()
	c, err := f.store.CreateKey(t.Context(), faultAdmin, faultService, keystore.KeySpec{Name: name, ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}})
	if err == nil {
		f.fs.note("ack")
	}
	return c, err
}

func (f *faultFixture) mustCreate(t *testing.T, name string) keystore.Created {
	t.Helper()
	c, err := f.create(t, name)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return c
}

// names lists the names of the service's keys in s.
func names(t *testing.T, s *keystore.Store) map[string]bool {
	t.Helper()
	keys, err := s.ListKeys(t.Context(), faultAdmin, faultService)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, k := range keys {
		out[k.Name] = true
	}
	return out
}

// restart closes the store and opens the state on the real file system.
func (f *faultFixture) restart(t *testing.T) *keystore.Store {
	t.Helper()
	if err := f.store.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	opts := f.opts
	opts.fsys = nil
	s, err := openTest(t.Context(), opts)
	if err != nil {
		t.Fatalf("state does not open after the fault: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// assertInternal checks the client was refused with a 500 whose message says msg.
func assertInternal(t *testing.T, err error, msg string) {
	t.Helper()
	var ke *keystore.Error
	if !errors.As(err, &ke) || ke.Status != http.StatusInternalServerError || ke.Code != keystore.CodeInternal || !strings.Contains(ke.Message, msg) {
		t.Fatalf("write = %v; want 500 %s %q", err, keystore.CodeInternal, msg)
	}
}

// TestFaultLogSyncFails: a failed fsync of the log refuses the write (500);
// the key is not in memory; the store is read-only until restart and never
// retries the fsync (after a failed fsync the page cache cannot be
// trusted); lookups keep working. After a restart every acknowledged key is
// there, and the refused one is either whole or absent, depending on
// whether its bytes reached the disk.
func TestFaultLogSyncFails(t *testing.T) {
	for _, tc := range []struct {
		note        string
		drop        bool
		refusedKept bool
	}{
		{"pages dropped by the failed fsync", true, false},
		{"pages written despite the error", false, true},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f := newFaultFixture(t, 1000)
			a := f.mustCreate(t, "a")
			b := f.mustCreate(t, "b")
			f.fs.arm(fault{op: "sync", kind: "log", nth: 1, err: syscall.EIO, dropUnsynced: tc.drop})

			_, err := f.create(t, "refused")
			assertInternal(t, err, "state write failed")
			if got := names(t, f.store); got["refused"] || !got["a"] || !got["b"] {
				t.Fatalf("keys in memory after the refused write: %v", got)
			}
			for _, name := range []string{"again", "later"} {
				_, err := f.create(t, name)
				assertInternal(t, err, "read-only after a failed state write; restart keygate")
			}
			if err := f.store.DeleteKey(t.Context(), faultAdmin, faultService, a.ID); err == nil {
				t.Fatal("delete accepted by a read-only store")
			}
			if n, m := f.fs.count("write", "log"), f.fs.count("sync", "log"); n != 1 || m != 1 {
				t.Errorf("%d log writes and %d log fsyncs after the fault, want 1 and 1 (no retry)", n, m)
			}
			if k, ok := f.store.KeyBySecret(a.Secret); !ok || k.ID != a.ID {
				t.Error("lookup broken by the failed write")
			}

			s := f.restart(t)
			got := names(t, s)
			if !got["a"] || !got["b"] || got["again"] || got["later"] || got["refused"] != tc.refusedKept {
				t.Fatalf("after restart %v; want a, b and refused=%v", got, tc.refusedKept)
			}
			for _, c := range []keystore.Created{a, b} {
				if k, ok := s.KeyBySecret(c.Secret); !ok || k.ID != c.ID {
					t.Errorf("acknowledged key %s lost its secret", c.Name)
				}
			}
		})
	}
}

// TestFaultLogWriteFails: ENOSPC or EIO on the append, with nothing or part
// of the record written, refuses the write; nothing is half-applied in
// memory; the store turns read-only without attempting an fsync. The log
// stays replayable: a restart drops the partial frame (keeping a copy) and
// keeps every acknowledged key.
func TestFaultLogWriteFails(t *testing.T) {
	for _, tc := range []struct {
		note  string
		err   error
		short int
	}{
		{"ENOSPC, nothing written", syscall.ENOSPC, 0},
		{"ENOSPC after half the record", syscall.ENOSPC, -1},
		{"EIO after 5 bytes (inside the frame header)", syscall.EIO, 5},
		{"short write without an error", nil, 20},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f := newFaultFixture(t, 1000)
			a := f.mustCreate(t, "a")
			f.fs.arm(fault{op: "write", kind: "log", nth: 1, err: tc.err, short: tc.short})
			_, err := f.create(t, "refused")
			assertInternal(t, err, "state write failed")
			if got := names(t, f.store); got["refused"] || !got["a"] {
				t.Fatalf("keys in memory: %v", got)
			}
			_, err = f.create(t, "again")
			assertInternal(t, err, "read-only after a failed state write")
			if n := f.fs.count("sync", "log"); n != 0 {
				t.Errorf("%d log fsyncs after a failed append, want 0", n)
			}

			s := f.restart(t)
			if got := names(t, s); !got["a"] || got["refused"] || got["again"] {
				t.Fatalf("after restart %v; want a only", got)
			}
			if k, ok := s.KeyBySecret(a.Secret); !ok || k.ID != a.ID {
				t.Error("acknowledged key lost")
			}
			if torn := strings.Contains(f.logs.String(), "dropping torn tail"); torn != (tc.short != 0) {
				t.Errorf("torn tail dropped at restart: %v, want %v (a partial record was written: %v)", torn, tc.short != 0, tc.short != 0)
			}
		})
	}
}

// TestFaultCompaction: a failure while a write folds the log into a new
// snapshot never costs an acknowledged key. A failure before a rename
// (writing the temp file, the rename itself) changes nothing on disk and the
// store goes on writing to its current log; a failed directory fsync after a
// rename leaves the disk in doubt, and the store turns read-only. In every
// case the state on disk, as the fault left it, opens with every
// acknowledged key.
func TestFaultCompaction(t *testing.T) {
	for _, tc := range []struct {
		note     string
		fault    fault
		readOnly bool
		// snapSeq and logRecords describe the disk right after the failed
		// compaction (3 writes acknowledged).
		snapSeq, logRecords int
	}{
		{"snapshot temp file: ENOSPC", fault{op: "write", kind: "snapshot", nth: 1, err: syscall.ENOSPC, short: -1}, false, 0, 3},
		{"snapshot rename fails", fault{op: "rename", kind: "snapshot", nth: 1, err: syscall.EIO}, false, 0, 3},
		{"log rename fails (new snapshot beside the old log)", fault{op: "rename", kind: "log", nth: 1, err: syscall.EIO}, false, 3, 3},
		{"log temp file: fsync fails", fault{op: "sync", kind: "log", nth: 4, err: syscall.EIO}, false, 3, 3},
		{"directory fsync after the snapshot rename", fault{op: "syncdir", nth: 1, err: syscall.EIO}, true, 3, 3},
		{"directory fsync after the log rename", fault{op: "syncdir", nth: 2, err: syscall.EIO}, true, 3, 0},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f := newFaultFixture(t, 3)
			f.fs.arm(tc.fault)
			var acked []keystore.Created
			for _, name := range []string{"a", "b", "c"} { // the third write compacts, and fails to
				acked = append(acked, f.mustCreate(t, name))
			}
			if !strings.Contains(f.logs.String(), "state compaction failed") {
				t.Fatalf("the fault did not hit the compaction; log: %s", f.logs.String())
			}
			snap, log := readState(t, f.opts.StatePath)
			if snap != tc.snapSeq || log != tc.logRecords {
				t.Errorf("on disk after the failed compaction: snapshot seq %d, %d log records; want %d and %d", snap, log, tc.snapSeq, tc.logRecords)
			}
			// The state exactly as the fault left it opens (as after a crash
			// now), with every acknowledged key.
			diskCopy := copyState(t, f.opts.StatePath)
			opts := f.opts
			opts.StatePath, opts.fsys = diskCopy, nil
			s, err := openTest(t.Context(), opts)
			if err != nil {
				t.Fatalf("state left by the failed compaction does not open: %v", err)
			}
			if got := names(t, s); len(got) != 3 {
				t.Errorf("state left by the failed compaction holds %v", got)
			}
			s.Close()

			d, err := f.create(t, "d")
			if tc.readOnly {
				assertInternal(t, err, "state write failed")
			} else if err != nil {
				t.Fatalf("write after a compaction that changed nothing: %v", err)
			} else {
				acked = append(acked, d)
			}
			s = f.restart(t)
			for _, c := range acked {
				if k, ok := s.KeyBySecret(c.Secret); !ok || k.ID != c.ID {
					t.Errorf("acknowledged key %s lost", c.Name)
				}
			}
		})
	}
}

// readState returns the snapshot's seq and the number of records in the log.
func readState(t *testing.T, path string) (snapSeq, logRecords int) {
	t.Helper()
	j := newJournal(nil, path, 1, slog.New(slog.DiscardHandler))
	snapData, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seq, _, err := j.decodeSnapshot(snapData)
	if err != nil {
		t.Fatal(err)
	}
	logData, err := os.ReadFile(path + ".log")
	if err != nil {
		t.Fatal(err)
	}
	for off := logHeaderSize; off+frameHeader <= len(logData); logRecords++ {
		off += frameHeader + int(binary.LittleEndian.Uint32(logData[off:]))
	}
	return int(seq), logRecords
}

// copyState copies the snapshot and the log into a new directory.
func copyState(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "state.json")
	for _, suffix := range []string{"", ".log"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestAckOnlyAfterSync: a write is acknowledged only after its log record
// was fsynced: 5 creates make at least 5 log fsyncs, and before each
// acknowledgement the log's last operation is an fsync that follows a
// write of this record.
func TestAckOnlyAfterSync(t *testing.T) {
	f := newFaultFixture(t, 1000)
	f.fs.arm()
	for i := range 5 {
		f.mustCreate(t, fmt.Sprintf("k%d", i))
	}
	if n := f.fs.count("sync", "log"); n < 5 {
		t.Errorf("5 acknowledged creates made %d log fsyncs, want at least 5", n)
	}
	written, synced := false, false
	for i, e := range f.fs.eventLog() {
		switch e {
		case "write log":
			written, synced = true, false
		case "sync log":
			synced = written
		case "ack":
			if !written || !synced {
				t.Fatalf("acknowledgement %d not preceded by a write and an fsync of the log: %v", i, f.fs.eventLog())
			}
			written, synced = false, false
		}
	}
}

// TestSlowSyncDoesNotDelayLookups: while writes wait 200 ms on each log
// fsync (holding the write lock), lookups by secret hash — the hot path of
// every decision — go on at full speed: they never wait on the journal.
func TestSlowSyncDoesNotDelayLookups(t *testing.T) {
	const delay = 200 * time.Millisecond
	f := newFaultFixture(t, 1000)
	known := f.mustCreate(t, "known")
	h := sha256.Sum256([]byte(known.Secret))
	f.fs.setSyncDelay(delay)

	done := make(chan struct{})
	var writeTimes []time.Duration
	go func() {
		defer close(done)
		for i := range 4 {
			start := time.Now()
			if _, err := f.create(t, fmt.Sprintf("slow%d", i)); err != nil {
				t.Error(err)
				return
			}
			writeTimes = append(writeTimes, time.Since(start))
		}
	}()
	var mu sync.Mutex
	var maxLatency time.Duration
	lookups, during := 0, 0
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var worst time.Duration
			n, inSync := 0, 0
			for {
				select {
				case <-done:
					mu.Lock()
					maxLatency, lookups, during = max(maxLatency, worst), lookups+n, during+inSync
					mu.Unlock()
					return
				default:
				}
				start := time.Now()
				syncingBefore := f.fs.syncing.Load() > 0
				if _, ok := f.store.KeyBySecretHash(h); !ok {
					t.Error("lookup failed")
				}
				// Begun and answered while a write sat in its fsync: a
				// lookup that waited on the write could not be.
				if syncingBefore && f.fs.syncing.Load() > 0 {
					inSync++
				}
				worst = max(worst, time.Since(start))
				n++
				if n%64 == 0 {
					time.Sleep(100 * time.Microsecond) // leave the writer a core
				}
			}
		}()
	}
	wg.Wait()
	for _, d := range writeTimes {
		if d < delay {
			t.Fatalf("a write took %v, less than the injected fsync delay %v: the delay was not applied", d, delay)
		}
	}
	t.Logf("%d lookups during %d writes of ≥%v each, %d of them begun and answered inside an fsync; slowest lookup %v",
		lookups, len(writeTimes), delay, during, maxLatency)
	// The proof is structural: lookups are answered while a write holds its
	// fsync. The latency bound is a sanity check only, loose enough for a
	// loaded machine under -race (a GC pause is not a wait on the journal).
	if during < 100 {
		t.Errorf("only %d lookups answered inside the slow fsyncs: lookups wait on the journal", during)
	}
	if maxLatency >= delay {
		t.Errorf("slowest lookup %v during slow fsyncs; want below the %v fsync", maxLatency, delay)
	}
	if lookups < 1000 {
		t.Errorf("only %d lookups during the writes", lookups)
	}
}

// TestFaultAtOpen: a state that cannot be read, or a torn tail whose
// evidence copy cannot be written, fails Open naming the file, and leaves
// the state as it was for the next try.
func TestFaultAtOpen(t *testing.T) {
	for _, tc := range []struct {
		note  string
		fault fault
		torn  bool // cut the log inside its last record first
		says  string
	}{
		{"snapshot read fails (EIO)", fault{op: "read", kind: "snapshot", nth: 1, err: syscall.EIO}, false, "state.json: cannot read state"},
		{"log read fails (EIO)", fault{op: "read", kind: "log", nth: 1, err: syscall.EIO}, false, "state.json.log: cannot read state log"},
		{"evidence copy of a torn tail: ENOSPC", fault{op: "write", kind: "evidence", nth: 1, err: syscall.ENOSPC}, true, "no copy of the log could be kept"},
		{"evidence copy of a torn tail: fsync fails", fault{op: "sync", kind: "evidence", nth: 1, err: syscall.EIO}, true, "no copy of the log could be kept"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f := newFaultFixture(t, 1000)
			a := f.mustCreate(t, "a")
			f.mustCreate(t, "b")
			if err := f.store.Close(); err != nil {
				t.Fatal(err)
			}
			logPath := f.opts.StatePath + ".log"
			if tc.torn {
				b, err := os.ReadFile(logPath)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(logPath, b[:len(b)-5], 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(logPath)
			f.fs.arm(tc.fault)
			if _, err := openTest(t.Context(), f.opts); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Open = %v; want an error saying %q", err, tc.says)
			}
			if after, _ := os.ReadFile(logPath); string(after) != string(before) {
				t.Error("the failed Open changed the log")
			}
			if copies, _ := filepath.Glob(logPath + ".corrupt-*"); len(copies) != 0 {
				t.Errorf("a failed evidence copy was left behind: %v", copies)
			}
			f.fs.arm() // the fault is gone: the next start succeeds
			f.store = f.restart(t)
			if k, ok := f.store.KeyBySecret(a.Secret); !ok || k.ID != a.ID {
				t.Error("acknowledged key lost")
			}
		})
	}
}
