package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// The local store's audit trail: <state>.audit beside the snapshot and its
// log, append-only and never compacted.
//
//	header:  "KGAUDv1\n"
//	entries: [len uint32 LE][crc32c(payload) uint32 LE][crc32c(bytes 0-7) uint32 LE][payload JSON]
//
// the journal's record framing, one AuditEntry per frame with IDs 1, 2, 3, …
// An entry is fsynced before the answer it records is sent. A successful
// write appends its entry after its state log record is durable, under the
// store's write lock; a refusal appends under the trail's own lock only.
// At Open, as for the log, only a torn final frame is dropped (after an
// evidence copy, <state>.audit.corrupt-<unix time>); any other damage
// refuses the start.
//
// Crash between a key record and its audit entry: the change is durable
// and its entry is not. Open finds the state log's records after the seq of
// the last entry that recorded a change (StoreRevision) and appends an entry
// for each, marked recovered (actor, address and policy revision unknown,
// before/after from the state itself), before serving.

const auditMagic = "KGAUDv1\n"

// auditLog is the open audit file and the trail it holds, in memory for
// queries.
type auditLog struct {
	mu      sync.Mutex
	fs      fileSystem
	path    string
	f       stateFile
	entries []keystore.AuditEntry // in file order (ID = index + 1)
	broken  error
	log     *slog.Logger
	// prefix, when set, is the valid part of a trail with a torn final
	// entry: prepare rewrites the file with it.
	prefix []byte
	// idem finds allowed entries by service, actor and idempotency key.
	idem map[string]int // → index in entries
	// fresh: the file did not exist at Open (a new state, or an upgrade from
	// a keygate without audit trail: nothing before it is reconciled).
	fresh bool
}

// openAuditLog reads the audit file, changing nothing but an evidence copy
// of a torn tail: a start-up refused later (by the state) leaves the trail
// as it was. prepare then makes it ready for appends.
func openAuditLog(fsys fileSystem, path string, logger *slog.Logger) (*auditLog, error) {
	if fsys == nil {
		fsys = osFS{}
	}
	a := &auditLog{fs: fsys, path: path, log: logger, idem: map[string]int{}}
	data, err := fsys.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		a.fresh = true
	case err != nil:
		return nil, &keystore.DataError{File: path, Reason: "cannot read audit trail", Err: err}
	default:
		keep, err := a.load(data, a.files())
		if err != nil {
			return nil, err
		}
		if keep < len(data) {
			a.prefix = data[:keep]
		}
	}
	return a, nil
}

// files is the journal's file helpers (temp file, evidence copy, replace),
// which work on any path given to them as the "log".
func (a *auditLog) files() *journal {
	return &journal{fs: a.fs, path: a.path, logPath: a.path, logger: a.log}
}

// prepare creates a missing trail, cuts a torn final entry off (by
// rewriting the valid prefix, so appends continue after it) and opens the
// file for appends.
func (a *auditLog) prepare() error {
	for _, m := range globMatches(filepath.Glob(a.path + ".tmp-*")) {
		_ = os.Remove(m) // a crash while the file was being replaced
	}
	switch {
	case a.fresh:
		if err := a.files().replaceFile(a.path, []byte(auditMagic)); err != nil {
			return fmt.Errorf("create audit trail: %w", err)
		}
	case a.prefix != nil:
		if err := a.files().replaceFile(a.path, a.prefix); err != nil {
			return fmt.Errorf("rewrite audit trail: %w", err)
		}
		a.prefix = nil
	}
	f, err := a.fs.OpenFile(a.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open audit trail: %w", err)
	}
	a.f = f
	return nil
}

// globMatches drops the error of filepath.Glob, which is only ever a bad pattern.
func globMatches(matches []string, _ error) []string { return matches }

// load parses the trail and returns how many bytes of it are kept.
func (a *auditLog) load(data []byte, files *journal) (int, error) {
	if len(data) < len(auditMagic) || string(data[:len(auditMagic)]) != auditMagic {
		return 0, &keystore.DataError{File: a.path, Field: "offset 0", Reason: "not a keygate audit trail (bad header); restore it from the backup taken with the state"}
	}
	off := len(auditMagic)
	torn := func(why string) (int, error) {
		if err := files.dropTail(data, off, why); err != nil {
			return 0, err
		}
		return off, nil
	}
	for off < len(data) {
		at := fmt.Sprintf("offset %d", off)
		payload, size, why, corrupt := readFrame(data[off:], "entry")
		if why != "" {
			return torn(why)
		}
		if corrupt != "" {
			return 0, &keystore.DataError{File: a.path, Field: at, Reason: corrupt}
		}
		var e keystore.AuditEntry
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return 0, &keystore.DataError{File: a.path, Field: at, Reason: "invalid entry", Err: err}
		}
		if want := uint64(len(a.entries)) + 1; e.ID != want {
			return 0, &keystore.DataError{File: a.path, Field: at, Reason: fmt.Sprintf("entry id %d where %d was expected (entries missing or repeated)", e.ID, want)}
		}
		a.index(&e, len(a.entries))
		a.entries = append(a.entries, e)
		off += size
	}
	return off, nil
}

// lastChange is the StoreRevision of the last entry (in file order) that
// recorded a change: every state log record after it has no entry.
func (a *auditLog) lastChange() uint64 {
	for i := len(a.entries) - 1; i >= 0; i-- {
		if e := &a.entries[i]; e.Outcome == keystore.OutcomeAllowed && e.StoreRevision > 0 {
			return e.StoreRevision
		}
	}
	return 0
}

// append makes e durable (written and fsynced) and gives it its ID. A
// failure leaves the file in doubt, so every later append is refused, as
// for the state log: fsync is never retried.
func (a *auditLog) append(e *keystore.AuditEntry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.broken != nil {
		return fmt.Errorf("audit trail unusable after an earlier failure: %w", a.broken)
	}
	if a.f == nil {
		return errors.New("audit trail is closed")
	}
	e.ID = uint64(len(a.entries)) + 1
	payload, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	if len(payload) > maxRecordSize {
		return fmt.Errorf("audit entry of %d bytes exceeds %d", len(payload), maxRecordSize)
	}
	b := frame(payload)
	n, err := a.f.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil {
		a.broken = fmt.Errorf("append to audit trail %s: %w", a.path, err)
		return a.broken
	}
	a.index(e, len(a.entries))
	a.entries = append(a.entries, *e)
	return nil
}

func idemIndexKey(service, actor, key string) string { return service + "\x00" + actor + "\x00" + key }

func (a *auditLog) index(e *keystore.AuditEntry, i int) {
	if e.IdempotencyKey != "" && e.Outcome == keystore.OutcomeAllowed {
		a.idem[idemIndexKey(e.Service, e.Actor, e.IdempotencyKey)] = i
	}
}

// byIdempotencyKey is the allowed write of actor on service with key, if any.
func (a *auditLog) byIdempotencyKey(service, actor, key string) *keystore.AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.idem[idemIndexKey(service, actor, key)]
	if !ok {
		return nil
	}
	e := a.entries[i]
	return &e
}

// failed is the error that broke the trail, if any.
func (a *auditLog) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.broken
}

// page is one page of service's trail, newest first.
func (a *auditLog) page(service string, q keystore.AuditQuery) keystore.AuditPage {
	// Entries are only ever appended, never changed: the slice as it is now
	// can be read without the lock, so a long scan never holds up a write.
	a.mu.Lock()
	entries := a.entries
	a.mu.Unlock()
	p := keystore.AuditPage{Entries: []keystore.AuditEntry{}}
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		if !q.Matches(e, service) {
			continue
		}
		if len(p.Entries) == q.Limit {
			p.Next = p.Entries[len(p.Entries)-1].ID
			break
		}
		p.Entries = append(p.Entries, *e)
	}
	return p
}

func (a *auditLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// reconciler collects, while the state log is replayed at Open, an entry for
// every record after the last audited change (see the top of this file).
type reconciler struct {
	after   uint64
	snapSeq func() uint64
	entries []*keystore.AuditEntry
	skipped int // records already folded into the snapshot: before unknown
}

func (r *reconciler) onRecord(rec *record, keys *keySet) {
	if rec.Seq <= r.after {
		return
	}
	if rec.Seq <= r.snapSeq() {
		r.skipped++
		return
	}
	e := &keystore.AuditEntry{Outcome: keystore.OutcomeAllowed, Code: "allowed", StoreRevision: rec.Seq, Recovered: true,
		Message: "recorded at start-up: the change was in the state, its audit entry was not (a crash between the two)"}
	switch rec.Op {
	case keystore.ChangeDelete:
		old := keys.get(rec.ID)
		e.Action, e.KeyID, e.Before = keystore.ActionDelete, rec.ID, keystore.AuditConfigOf(old)
		if old != nil {
			e.Service = old.Service
		}
	case keystore.ChangePut:
		if rec.Key == nil {
			return
		}
		k, err := keystore.DecodeKeyRecord(rec.Key)
		if err != nil {
			return // applyRecord refuses it next
		}
		old := keys.get(k.ID)
		e.KeyID, e.Service, e.At, e.Before, e.After = k.ID, k.Service, k.UpdatedAt, keystore.AuditConfigOf(old), keystore.AuditConfigOf(k)
		switch {
		case old == nil:
			e.Action, e.Actor = keystore.ActionCreate, k.CreatedBy
		case keystore.SecretHash(old) != keystore.SecretHash(k):
			e.Action = keystore.ActionRotate
		default:
			e.Action = keystore.ActionUpdate
		}
	}
	e.Status = keystore.SuccessStatus(e.Action)
	r.entries = append(r.entries, e)
}

// openLocalAudit opens the trail beside statePath and hooks its
// reconciliation into the replay of j.
func openLocalAudit(fsys fileSystem, statePath string, j *journal, logger *slog.Logger) (*auditLog, *reconciler, error) {
	a, err := openAuditLog(fsys, auditPath(statePath), logger)
	if err != nil {
		return nil, nil, err
	}
	if a.fresh {
		return a, nil, nil
	}
	r := &reconciler{after: a.lastChange(), snapSeq: func() uint64 { return j.seq }}
	j.onRecord = r.onRecord
	return a, r, nil
}

// finish prepares the trail for appends once the state has loaded, and
// appends the recovered entries.
func (r *reconciler) finish(a *auditLog, stateSeq uint64, now func() time.Time) error {
	if err := a.prepare(); err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	if r.after > stateSeq {
		a.log.Warn("audit trail records changes up to a later seq than the state holds (state restored or reset?)",
			"file", a.path, "auditSeq", r.after, "stateSeq", stateSeq)
	}
	if r.skipped > 0 {
		a.log.Warn("state changes without audit entries were already folded into the snapshot; not reconstructable",
			"file", a.path, "changes", r.skipped)
	}
	for _, e := range r.entries {
		if e.At.IsZero() {
			e.At = now().UTC()
		}
		if err := a.append(e); err != nil {
			return err
		}
		a.log.Warn("audit entry recovered for a change made before a crash", "file", a.path, "seq", e.StoreRevision, "action", e.Action, "key", e.KeyID)
	}
	return nil
}

// readTrail reads the audit trail beside statePath without changing it (a
// torn final entry is left out); none is an empty trail.
func readTrail(statePath string, logger *slog.Logger) ([]keystore.AuditEntry, error) {
	path := auditPath(statePath)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &keystore.DataError{File: path, Reason: "cannot read audit trail", Err: err}
	}
	a := &auditLog{path: path, log: logger, idem: map[string]int{}}
	files := &journal{fs: osFS{}, path: path, logPath: path, logger: logger}
	if _, err := a.load(data, files); err != nil {
		return nil, err
	}
	return a.entries, nil
}

// auditPath is the trail of the state at statePath.
func auditPath(statePath string) string { return filepath.Clean(statePath) + ".audit" }
