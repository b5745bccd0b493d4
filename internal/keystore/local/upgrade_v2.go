package local

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// Upgrade of state format 2 (the format of the release before format 3) to
// the current format 4, once, at Open. (Format 3, the one in between, has
// the same log as format 4 and a JSON snapshot; it needs no upgrade step:
// its snapshot is read as is and rewritten by the next compaction.)
//
// Format 2, as the last format-2 release (commit 23de829) wrote it:
//
//	<state>       {"format":"keygate-state","version":2,"seq":N,"keys":[…]} (no checksum)
//	<state>.log   "KGLOGv2\n", then records framed exactly as in formats 3 and 4
//	              (no base seq: the log was truncated in place after each snapshot)
//
// It is read by the rules of that release — only a torn final frame (or a
// zero-filled tail, or a torn log header) is dropped, with an evidence copy;
// every other damage is refused naming the file and the offset — plus the one
// check format 2 allows: the records run without a gap or a repeat, and the
// first one above the snapshot's seq is seq+1 (a log that ends before the
// snapshot's seq is refused too: format 2 could not leave one).
//
// The upgrade, in this order:
//
//  1. the format-2 pair is copied, byte for byte, to <state>.v2-backup-<unix>
//     and <state>.log.v2-backup-<unix> (temp file, fsync, rename, fsync of
//     the directory); an identical pair left by an interrupted earlier
//     attempt is reused instead of copied again;
//  2. a snapshot without a log (format 2 could leave one) gets an empty
//     format-2 log, which format 2 reads as the same state;
//  3. Open's compaction writes the format-4 snapshot (rename), then the
//     format-4 log (rename), as for any format-4 state.
//
// So a crash leaves one of: the format-2 pair (upgraded again at the next
// start), or a format-4 snapshot beside the format-2 log (between the two
// renames of step 3), or the format-4 pair. The middle one is accepted only
// when a backup pair beside it is byte-identical to the format-2 log and
// upgrades to exactly that snapshot, byte for byte: then the snapshot is
// proven to be the upgrade of that log, and the start completes the upgrade.
// Anything else is refused like any mismatched pair.
//
// While upgrading, the lock file of format-2 keygate (<state>.lock, which it
// flocked; formats 3 and 4 lock the directory) is taken too: a format-2 keygate
// still running on the state refuses the upgrade instead of racing it.

const (
	v2Version  = 2
	v2LogMagic = "KGLOGv2\n"
	backupTag  = ".v2-backup-"
)

// v2Snapshot is the format-2 snapshot, field for field.
type v2Snapshot struct {
	Format  string               `json:"format"`
	Version int                  `json:"version"`
	Seq     uint64               `json:"seq"`
	Keys    []keystore.KeyRecord `json:"keys"`
}

// v2State is a format-2 pair read and checked.
type v2State struct {
	seq     uint64
	keys    *keySet
	applied int    // log records above the snapshot's seq
	tornAt  int    // offset of a dropped torn tail, or -1
	tornWhy string // why it was dropped
}

// upgradeNote is what the upgrade did, logged once its compaction is done.
type upgradeNote struct {
	snapBackup, logBackup string
	fromSeq               uint64 // the format-2 snapshot's seq
	seq                   uint64
	keys                  int
	resumed               bool // completing an upgrade a crash interrupted
}

// isV2Snapshot tells whether data is a format-2 snapshot. A format-3
// snapshot (its checksum holds) is never parsed here; a format-4 one is
// not JSON.
func isV2Snapshot(data []byte) bool {
	if body, sum, ok := splitChecksum(data); ok && crc32.Checksum(body, castagnoli) == sum {
		return false
	}
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	return json.Unmarshal(data, &head) == nil && head.Format == stateFormat && head.Version == v2Version
}

// v2Advice ends a refusal of format-2 state: nothing has been written yet.
func (j *journal) v2Advice() string {
	return fmt.Sprintf("the format-2 state was not changed: restore %s and %s together from a backup of the "+
		"format-2 pair; or, to start again from data/keys.json, remove both (every key written through the API is then lost)",
		filepath.Base(j.path), filepath.Base(j.logPath))
}

// foldV2 reads a format-2 pair: the snapshot from snapData (named snapName
// in errors) and, if haveLog, the log from logData (named logName). It writes
// nothing: a torn tail is only reported (tornAt), for the caller to keep its
// evidence.
func (j *journal) foldV2(snapName string, snapData []byte, logName string, logData []byte, haveLog bool) (*v2State, error) {
	var snap v2Snapshot
	if err := keystore.DecodeStrict(snapName, snapData, &snap); err != nil {
		return nil, fmt.Errorf("corrupt format-2 state snapshot (%s): %w", j.v2Advice(), err)
	}
	if snap.Format != stateFormat || snap.Version != v2Version {
		return nil, &keystore.DataError{File: snapName, Field: "format", Reason: fmt.Sprintf("not a %s v%d file; %s", stateFormat, v2Version, j.v2Advice())}
	}
	keys, err := decodeKeyRecords(snapName, snap.Keys)
	if err != nil {
		return nil, err
	}
	st := &v2State{seq: snap.Seq, keys: newKeySet(keys), tornAt: -1}
	if !haveLog {
		return st, nil
	}
	if err := j.replayV2(logName, logData, st); err != nil {
		return nil, err
	}
	return st, nil
}

// replayV2 applies a format-2 log over st (see foldV2).
func (j *journal) replayV2(logName string, data []byte, st *v2State) error {
	advice := "truncate the log at this offset to keep only the records before it (after keeping a copy); or " + j.v2Advice()
	if !bytes.HasPrefix(data, []byte(v2LogMagic)) {
		switch {
		case len(data) < len(v2LogMagic) && bytes.HasPrefix([]byte(v2LogMagic), data):
			// Format 2 truncated the log in place and then wrote its
			// header: a crash in between leaves a torn header.
			st.tornAt, st.tornWhy = 0, "torn log header"
			return nil
		case bytes.HasPrefix(data, []byte(logMagic)):
			return &keystore.DataError{File: logName, Field: "offset 0", Reason: fmt.Sprintf("a format-3 log beside a format-2 snapshot: not a pair keygate wrote; %s", j.v2Advice())}
		case len(data) >= 4 && binary.LittleEndian.Uint32(data) <= maxRecordSize && bytes.Contains(data[:min(len(data), 16)], []byte(`{"seq"`)):
			return &keystore.DataError{File: logName, Field: "offset 0", Reason: fmt.Sprintf("state log format version 1 is not read by this keygate (it reads version %d, and upgrades version 2); "+
				"stop keygate and remove %s and %s to start again from data/keys.json", logVersion, filepath.Base(j.path), filepath.Base(j.logPath))}
		default:
			return &keystore.DataError{File: logName, Field: "offset 0", Reason: fmt.Sprintf("not a keygate state log (no %q header); %s", strings.TrimSpace(v2LogMagic), j.v2Advice())}
		}
	}
	snapSeq := st.seq
	var prev uint64
	first := true
	off := len(v2LogMagic)
	for off < len(data) {
		at := fmt.Sprintf("offset %d", off)
		payload, size, torn, corrupt := readFrame(data[off:], "record")
		if torn != "" {
			st.tornAt, st.tornWhy = off, torn
			break
		}
		if corrupt != "" {
			return &keystore.DataError{File: logName, Field: at, Reason: corrupt + "; " + advice}
		}
		var rec record
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return &keystore.DataError{File: logName, Field: at, Reason: "invalid record; " + advice, Err: err}
		}
		// Format 2 has no base seq, so the first record may be any seq up
		// to the snapshot's + 1 (a crash between the snapshot's rename and
		// the log's truncation leaves the records the snapshot was folded
		// from); from there on they run without a gap or a repeat.
		switch {
		case first && rec.Seq > snapSeq+1:
			return &keystore.DataError{File: logName, Field: at, Reason: fmt.Sprintf("record seq %d where at most %d was expected (a gap: records after the snapshot at seq %d are missing; "+
				"the log is not the one keygate wrote); %s", rec.Seq, snapSeq+1, snapSeq, advice)}
		case !first && rec.Seq != prev+1:
			what := "a gap: records are missing"
			if rec.Seq <= prev {
				what = "a repeat: the seq goes back"
			}
			return &keystore.DataError{File: logName, Field: at, Reason: fmt.Sprintf("record seq %d where %d was expected (%s; the log is not the one keygate wrote); %s",
				rec.Seq, prev+1, what, advice)}
		}
		if err := applyRecord(&rec, st.keys, snapSeq); err != nil {
			return &keystore.DataError{File: logName, Field: at, Reason: "invalid record; " + advice, Err: err}
		}
		if rec.Seq > snapSeq {
			st.applied++
		}
		prev, first = rec.Seq, false
		off += size
	}
	if !first && prev < snapSeq {
		return &keystore.DataError{File: logName, Field: fmt.Sprintf("offset %d", off), Reason: fmt.Sprintf("log ends at seq %d, before the seq %d of %s: "+
			"the log is older than the snapshot; %s", prev, snapSeq, filepath.Base(j.path), j.v2Advice())}
	}
	st.seq = max(snapSeq, prev)
	return nil
}

// upgradeV2 reads a format-2 pair, keeps it as a backup and prepares the
// journal so that Open's compaction writes it as format 4 (snapshot first).
func (j *journal) upgradeV2(snapData, logData []byte, haveLog bool) (*keySet, error) {
	unlock, err := lockV2(j.path + ".lock")
	if err != nil {
		return nil, &keystore.DataError{File: j.path, Reason: "cannot upgrade format-2 state", Err: err}
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	st, err := j.foldV2(j.path, snapData, j.logPath, logData, haveLog)
	if err != nil {
		return nil, err
	}
	snapBak, logBak, err := j.backupV2(snapData, logData, haveLog)
	if err != nil {
		return nil, &keystore.DataError{File: j.path, Reason: "format-2 state found, but no backup of it could be written, so it was not upgraded; " +
			"free space or fix permissions beside it, and start again", Err: err}
	}
	if st.tornAt >= 0 {
		if err := j.dropTail(logData, st.tornAt, st.tornWhy); err != nil {
			return nil, err
		}
	}
	if !haveLog {
		// Format 2 reads a snapshot with an empty log as the same state;
		// with it, every crash of the upgrade leaves a pair (see above).
		if err := j.replaceFile(j.logPath, []byte(v2LogMagic)); err != nil {
			return nil, &keystore.DataError{File: j.logPath, Reason: "format-2 state found, but its empty log could not be written, so it was not upgraded", Err: err}
		}
	}
	var fromSeq uint64
	if st.seq >= uint64(st.applied) {
		fromSeq = st.seq - uint64(st.applied)
	}
	j.seq = st.seq
	j.hasSnapshot = true
	j.upgrade = &upgradeNote{snapBackup: snapBak, logBackup: logBak, fromSeq: fromSeq, seq: st.seq, keys: st.keys.len()}
	j.unlockV2 = unlock
	j.logger.Warn("state format 2 found: kept a backup of it, upgrading to format 4",
		"file", j.path, "seq", st.seq, "keys", st.keys.len(), "log_records_applied", st.applied,
		"backup", snapBak, "log_backup", logBak)
	ok = true
	return st.keys, nil
}

// resumeV2Upgrade accepts a format-4 snapshot (or a format-3 one, written
// by the keygate before this one) beside a format-2 log if a backup pair
// proves the snapshot is the upgrade of that log (a crash between the
// snapshot's rename and the log's); Open's compaction then writes the
// format-4 pair.
func (j *journal) resumeV2Upgrade(snapData, logData []byte) (*keySet, error) {
	snapSeq, keys, err := j.decodeSnapshot(snapData)
	if err != nil {
		return nil, err
	}
	snapVersion := stateVersionV3
	if isSnapshotV4Head(snapData[:min(len(snapData), maxSnapshotHeader)]) {
		snapVersion = snapshotVersion
	}
	unlock, err := lockV2(j.path + ".lock")
	if err != nil {
		return nil, &keystore.DataError{File: j.path, Reason: "cannot complete the upgrade of format-2 state", Err: err}
	}
	for _, b := range j.backupPairs() {
		bakSnap, err := j.fs.ReadFile(b.snap)
		if err != nil {
			continue
		}
		logBak := b.log
		bakLog, err := j.fs.ReadFile(b.log)
		switch {
		case err == nil && bytes.Equal(bakLog, logData):
		case errors.Is(err, fs.ErrNotExist) && string(logData) == v2LogMagic:
			// The format-2 state had no log; the upgrade wrote an empty one.
			logBak = ""
		default:
			continue
		}
		st, err := j.foldV2(b.snap, bakSnap, j.logPath, logData, true)
		if err != nil || st.seq != snapSeq {
			continue
		}
		// The snapshot is in the format of the keygate that began the
		// upgrade: this one's, or format 3.
		encode := encodeSnapshot
		if snapVersion != snapshotVersion {
			encode = encodeSnapshotV3
		}
		want, err := encode(st.seq, st.keys.sorted())
		if err != nil || !bytes.Equal(want, snapData) {
			continue
		}
		j.seq = snapSeq
		j.hasSnapshot = true
		j.upgrade = &upgradeNote{snapBackup: b.snap, logBackup: logBak, seq: snapSeq, keys: len(keys), resumed: true}
		j.unlockV2 = unlock
		j.logger.Warn("completing an upgrade from state format 2 that a crash interrupted: the snapshot is the upgrade of the backup beside it",
			"file", j.path, "seq", snapSeq, "backup", b.snap)
		return newKeySet(keys), nil
	}
	unlock()
	return nil, &keystore.DataError{File: j.logPath, Field: "offset 0", Reason: fmt.Sprintf("a format-2 log beside a format-%d %s, and no backup pair (%s%s<time>) "+
		"upgrades to that snapshot: not the remains of an interrupted upgrade; %s", snapVersion, filepath.Base(j.path), filepath.Base(j.path), backupTag, j.restoreAdvice())}
}

type backupPair struct{ snap, log string }

// backupPairs lists the format-2 backups beside the state, newest first.
func (j *journal) backupPairs() []backupPair {
	matches, _ := filepath.Glob(j.path + backupTag + "*")
	var pairs []backupPair
	for _, m := range matches {
		if strings.Contains(filepath.Base(m), ".tmp-") {
			continue
		}
		suffix := strings.TrimPrefix(m, j.path+backupTag)
		pairs = append(pairs, backupPair{snap: m, log: j.logPath + backupTag + suffix})
	}
	slices.SortFunc(pairs, func(a, b backupPair) int { return strings.Compare(b.snap, a.snap) })
	return pairs
}

// backupV2 copies the format-2 pair beside itself, durably, and returns the
// copies' names (logBak is "" without a log). A byte-identical pair from an
// earlier, interrupted attempt is reused (and completed, if that attempt
// stopped between the two copies): a start that keeps failing does not fill
// the disk with copies.
func (j *journal) backupV2(snapData, logData []byte, haveLog bool) (snapBak, logBak string, err error) {
	type copyJob struct {
		name string
		data []byte
	}
	var jobs []copyJob
	for _, b := range j.backupPairs() {
		s, err := j.fs.ReadFile(b.snap)
		if err != nil || !bytes.Equal(s, snapData) {
			continue
		}
		l, err := j.fs.ReadFile(b.log)
		switch {
		case haveLog && err == nil && bytes.Equal(l, logData):
			return b.snap, b.log, nil
		case !haveLog && errors.Is(err, fs.ErrNotExist):
			return b.snap, "", nil
		case haveLog && errors.Is(err, fs.ErrNotExist) && jobs == nil:
			snapBak, logBak = b.snap, b.log
			jobs = []copyJob{{b.log, logData}}
		}
	}
	if jobs == nil {
		free := func(name string) bool {
			_, err := j.fs.ReadFile(name)
			return errors.Is(err, fs.ErrNotExist)
		}
		now := time.Now().Unix()
		for i := 0; ; i++ {
			suffix := fmt.Sprint(now)
			if i > 0 {
				suffix = fmt.Sprintf("%d.%d", now, i)
			}
			snapBak, logBak = j.path+backupTag+suffix, j.logPath+backupTag+suffix
			if free(snapBak) && free(logBak) {
				break
			}
			if i == 100 {
				return "", "", fmt.Errorf("no free backup name beside %s", j.path)
			}
		}
		jobs = []copyJob{{snapBak, snapData}}
		if haveLog {
			jobs = append(jobs, copyJob{logBak, logData})
		}
	}
	if !haveLog {
		logBak = ""
	}
	var written []string
	undo := func(err error) (string, string, error) {
		for _, name := range written {
			_ = j.fs.Remove(name)
		}
		return "", "", err
	}
	for _, c := range jobs {
		f, err := j.writeTemp(c.name, c.data) // fsynced
		if err != nil {
			return undo(err)
		}
		if err := f.Close(); err != nil {
			_ = j.fs.Remove(f.Name())
			return undo(fmt.Errorf("close %s: %w", f.Name(), err))
		}
		if err := j.fs.Rename(f.Name(), c.name); err != nil {
			_ = j.fs.Remove(f.Name())
			return undo(fmt.Errorf("rename %s: %w", c.name, err))
		}
		written = append(written, c.name)
	}
	// Also makes a reused pair's renames durable, had the attempt that
	// made them stopped before its directory fsync.
	if err := j.fs.SyncDir(filepath.Dir(j.path)); err != nil {
		return undo(err)
	}
	return snapBak, logBak, nil
}

// upgraded is called after a successful compaction: it reports a finished
// upgrade and releases format-2 keygate's lock file.
func (j *journal) upgraded() {
	if j.upgrade == nil {
		return
	}
	u := j.upgrade
	j.upgrade = nil
	j.releaseV2()
	args := []any{"file", j.path, "log", j.logPath, "seq", u.seq, "keys", u.keys, "backup", u.snapBackup}
	if u.logBackup != "" {
		args = append(args, "log_backup", u.logBackup)
	}
	if !u.resumed {
		args = append(args, "from_snapshot_seq", u.fromSeq)
	}
	args = append(args, "resumed", u.resumed)
	j.logger.Warn("state upgraded from format 2 to format 4; the format-2 pair is kept as the backup named here (format-2 keygate cannot read the state any more)", args...)
}

func (j *journal) releaseV2() {
	if j.unlockV2 != nil {
		j.unlockV2()
		j.unlockV2 = nil
	}
}
