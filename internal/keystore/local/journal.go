package local

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// record is one key change: a put carries the key after it, a delete the
// id. Seq is the local log's sequence number (unused elsewhere).
type record struct {
	Seq uint64              `json:"seq"`
	Op  string              `json:"op"`
	Key *keystore.KeyRecord `json:"key,omitempty"`
	ID  string              `json:"id,omitempty"`
}

// State file format, version 3 (see the package comment for why):
//
//	<state>       snapshot: {"format":"keygate-state","version":3,"seq":N,"keys":[…],"checksum":"crc32c:<8 hex>"}
//	              checksum: CRC-32C of every byte before `,"checksum"`
//	<state>.log   header: "KGLOGv3\n" [base seq uint64 LE] [crc32c(header bytes 0-15) uint32 LE]
//	              then records:
//	              [len uint32 LE][crc32c(payload) uint32 LE][crc32c(bytes 0-7) uint32 LE][payload JSON]
//	              payload:  {"seq":N,"op":"put","key":{…}} | {"seq":N,"op":"delete","id":"…"}
//
// The header checksum of a record makes its length self-checking: a damaged
// length is detected as such instead of looking like a record that runs past
// the end of the file (a torn append).
//
// Continuity: the log's base seq is the seq of the snapshot it was started
// after, and its records are numbered base+1, base+2, … without a gap or a
// repeat. Both files are replaced only by rename (temp file, fsync, rename,
// fsync of the directory), the snapshot first and then the log, so on disk a
// snapshot at seq S is always beside either the log that follows it (base S)
// or, after a crash between the two renames, the log it was folded from
// (base ≤ S, records up to S at least). Records at or below S are already in
// the snapshot and are skipped. Anything else — a log without a snapshot, a
// snapshot without a log, a log based on a later snapshot (an older snapshot
// restored beside a newer log), a log that ends before the snapshot's seq, a
// gap or a repeat — is not the state keygate acknowledged, and Open refuses
// it. The one exception is the very first state, whose log (empty, base 0)
// is written before its snapshot: that log alone means nothing was ever
// acknowledged, and Open starts from data/keys.json again.
//
// Version 2, what the previous release wrote, is upgraded to version 3 once,
// at Open, after a backup of it is kept (upgrade_v2.go). Version 1 is refused,
// not read: it could not tell a damaged length from a torn append, and no
// version 1 state was ever deployed.

const (
	stateFormat = "keygate-state"
	// stateVersionV3 is the snapshot format before format 4 (snapshot.go):
	// still read, rewritten as format 4 by the next compaction.
	stateVersionV3 = 3
	logVersion     = 3 // the log's format ("KGLOGv3\n"), the same in state formats 3 and 4
	logMagic       = "KGLOGv3\n"
	logHeaderSize  = len(logMagic) + 8 + 4
	frameHeader    = 12
	maxRecordSize  = 4 << 20
	checksumAlgo   = "crc32c:"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshotFile is the snapshot as stored. The checksum is written last, by
// encodeSnapshot, over the bytes before it.
type snapshotFile struct {
	Format   string               `json:"format"`
	Version  int                  `json:"version"`
	Seq      uint64               `json:"seq"`
	Keys     []keystore.KeyRecord `json:"keys"`
	Checksum string               `json:"checksum,omitempty"`
}

// journal owns the state files. It is not safe for concurrent use: the
// store calls it under its write lock.
type journal struct {
	fs           fileSystem
	path         string
	logPath      string
	log          stateFile // the open log, positioned at its end
	seq          uint64    // last seq written or loaded
	records      int       // records in the log since the last snapshot
	compactAfter int
	hasSnapshot  bool  // a snapshot exists on disk (decides the order of a compaction's renames)
	linkCheck    bool  // the file system reports link counts: a log with none was removed
	broken       error // set once disk may differ from what was acknowledged: no more writes
	logger       *slog.Logger
	// onRecord, when set, sees every replayed record before it is applied
	// to keys (the audit trail's reconciliation at Open, audit.go).
	onRecord func(rec *record, keys *keySet)
	upgrade  *upgradeNote // a format-2 upgrade in progress, finished by the next compaction
	// snapshotCurrent: loadState found a current-format snapshot that
	// already holds every acknowledged write (the log had no record past
	// its seq), so Open need not rewrite it.
	snapshotCurrent bool
	unlockV2        func() // releases format-2 keygate's lock file during an upgrade
}

func newJournal(fsys fileSystem, path string, compactAfter int, logger *slog.Logger) *journal {
	if fsys == nil {
		fsys = osFS{}
	}
	return &journal{fs: fsys, path: path, logPath: path + ".log", compactAfter: compactAfter, logger: logger}
}

// restoreAdvice ends every refusal of a state that is not the acknowledged one.
func (j *journal) restoreAdvice() string {
	return fmt.Sprintf("restore %s and %s together from the same backup; or, to start again "+
		"from data/keys.json, remove both (every key written through the API is then lost)",
		filepath.Base(j.path), filepath.Base(j.logPath))
}

// loadState reads the snapshot and the log and proves they are the pair
// keygate last acknowledged (see "Continuity" above). found reports whether
// any state existed. Only a torn final frame of the log is dropped (a crash
// during an append can only tear the last record); every other damage or
// mismatch is an error naming the file, the offset and what to do. A
// format-4 snapshot is decoded as a stream; the formats before it are read
// whole.
func (j *journal) loadState() (keys *keySet, found bool, err error) {
	snap, snapErr := j.fs.Open(j.path)
	if snapErr != nil && !errors.Is(snapErr, fs.ErrNotExist) {
		return nil, false, &keystore.DataError{File: j.path, Reason: "cannot read state", Err: snapErr}
	}
	if snapErr == nil {
		defer snap.Close()
	}
	logData, logErr := j.fs.ReadFile(j.logPath)
	if logErr != nil && !errors.Is(logErr, fs.ErrNotExist) {
		return nil, false, &keystore.DataError{File: j.logPath, Reason: "cannot read state log", Err: logErr}
	}
	haveSnap, haveLog := snapErr == nil, logErr == nil
	v2Log := haveLog && bytes.HasPrefix(logData, []byte(v2LogMagic))

	// The snapshot's format: format 4 is streamed (snapR); the formats
	// before it, and any snapshot beside a format-2 log, are read whole
	// (snapData).
	var snapR *bufio.Reader
	var snapData []byte
	if haveSnap {
		snapR = bufio.NewReaderSize(snap, snapshotIOBuffer)
		head, err := snapR.Peek(maxSnapshotHeader)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, false, &keystore.DataError{File: j.path, Reason: "cannot read state", Err: err}
		}
		if !isSnapshotV4Head(head) || v2Log {
			if snapData, err = io.ReadAll(snapR); err != nil {
				return nil, false, &keystore.DataError{File: j.path, Reason: "cannot read state", Err: err}
			}
			snapR = nil
		}
	}

	// Format 2 (the previous release): upgraded, see upgrade_v2.go.
	switch {
	case haveSnap && snapR == nil && isV2Snapshot(snapData):
		keys, err := j.upgradeV2(snapData, logData, haveLog)
		if err != nil {
			return nil, false, err
		}
		return keys, true, nil
	case v2Log && !haveSnap:
		return nil, false, &keystore.DataError{File: j.path, Reason: fmt.Sprintf("missing, but a format-2 %s exists (%d bytes): "+
			"the log alone does not hold the keys, and starting without them would lose them for good; %s",
			filepath.Base(j.logPath), len(logData), j.restoreAdvice())}
	case v2Log:
		keys, err := j.resumeV2Upgrade(snapData, logData)
		if err != nil {
			return nil, false, err
		}
		return keys, true, nil
	}

	switch {
	case !haveSnap && !haveLog:
		return newKeySet(nil), false, nil
	case !haveSnap:
		base, err := j.logHeader(logData)
		if err != nil {
			return nil, false, err
		}
		if base == 0 && len(logData) == logHeaderSize {
			// A crash while the very first state was written: its empty log
			// goes first, so nothing was ever acknowledged.
			j.logger.Info("state log without snapshot holds no writes (first start interrupted); starting from data", "file", j.logPath)
			return newKeySet(nil), false, nil
		}
		return nil, false, &keystore.DataError{File: j.path, Reason: fmt.Sprintf("missing, but %s exists (%d bytes, following a snapshot at seq %d): "+
			"the log alone does not hold the keys, and starting without them would lose them for good; %s",
			filepath.Base(j.logPath), len(logData), base, j.restoreAdvice())}
	}

	var snapSeq uint64
	var snapKeys []*keystore.Key
	if snapR != nil {
		snapSeq, snapKeys, err = j.readSnapshot(snapR)
	} else {
		snapSeq, snapKeys, err = j.decodeSnapshot(snapData)
	}
	if err != nil {
		return nil, false, err
	}
	keys = newKeySet(snapKeys)
	j.hasSnapshot = true
	if !haveLog {
		return nil, false, &keystore.DataError{File: j.logPath, Reason: fmt.Sprintf("missing beside %s (seq %d): writes acknowledged after that snapshot "+
			"would be lost without a word; %s", filepath.Base(j.path), snapSeq, j.restoreAdvice())}
	}
	base, err := j.logHeader(logData)
	if err != nil {
		return nil, false, err
	}
	if base > snapSeq {
		return nil, false, &keystore.DataError{File: j.path, Field: "seq", Reason: fmt.Sprintf("snapshot at seq %d is older than %s, which follows a snapshot at seq %d "+
			"(offset %d): an older snapshot beside a newer log would bring back deleted keys and rotated-away secrets; %s",
			snapSeq, filepath.Base(j.logPath), base, len(logMagic), j.restoreAdvice())}
	}
	j.seq = snapSeq
	if err := j.replay(logData, keys, snapSeq, base); err != nil {
		return nil, false, err
	}
	// A format-3 snapshot is rewritten in format 4 by Open's compaction.
	j.snapshotCurrent = j.seq == snapSeq && snapR != nil
	return keys, true, nil
}

// reopen makes the journal ready for appends after loadState: a log with
// records past the snapshot is folded into a new snapshot (compact). When
// the snapshot already holds every write (snapshotCurrent), only the log is
// replaced, by an empty one based on the snapshot's seq: the second step of
// a compaction, whose first (the snapshot) is already on disk. That drops a
// torn tail and records the snapshot already holds, and spares re-encoding
// and fsyncing every key on each restart.
func (j *journal) reopen(keys []*keystore.Key) error {
	if j.snapshotCurrent && j.hasSnapshot && j.upgrade == nil {
		return j.replaceLog()
	}
	return j.compact(keys)
}

// readSnapshot decodes a format-4 snapshot from r (readSnapshot in
// snapshot.go), turning what is wrong with it into a DataError naming the
// file, the offset or key, and what to do.
func (j *journal) readSnapshot(r *bufio.Reader) (uint64, []*keystore.Key, error) {
	seq, keys, err := readSnapshot(r)
	var f *snapshotFault
	switch {
	case err == nil:
		return seq, keys, nil
	case errors.As(err, &f) && f.err != nil:
		return 0, nil, &keystore.DataError{File: j.path, Field: f.field, Reason: "cannot read state", Err: f.err}
	case errors.As(err, &f):
		return 0, nil, &keystore.DataError{File: j.path, Field: f.field, Reason: fmt.Sprintf("corrupt state snapshot: %s; %s", f.reason, j.restoreAdvice())}
	default:
		return 0, nil, &keystore.DataError{File: j.path, Reason: "corrupt state snapshot; " + j.restoreAdvice(), Err: err}
	}
}

// decodeSnapshot decodes a whole snapshot of format 4 or 3 and returns its
// seq and its keys in id order.
func (j *journal) decodeSnapshot(data []byte) (uint64, []*keystore.Key, error) {
	if isSnapshotV4Head(data[:min(len(data), maxSnapshotHeader)]) {
		return j.readSnapshot(bufio.NewReader(bytes.NewReader(data)))
	}
	return j.decodeSnapshotV3(data)
}

// decodeSnapshotV3 verifies a format-3 snapshot's checksum, then parses it:
// no byte of it is trusted before the checksum holds.
func (j *journal) decodeSnapshotV3(data []byte) (uint64, []*keystore.Key, error) {
	body, stored, ok := splitChecksum(data)
	if !ok || crc32.Checksum(body, castagnoli) != stored {
		return 0, nil, j.snapshotRefusal(data, ok, stored, body)
	}
	var snap snapshotFile
	if err := keystore.DecodeStrict(j.path, data, &snap); err != nil {
		return 0, nil, fmt.Errorf("corrupt state snapshot (%s): %w", j.restoreAdvice(), err)
	}
	if snap.Format != stateFormat || snap.Version != stateVersionV3 {
		return 0, nil, &keystore.DataError{File: j.path, Field: "format", Reason: fmt.Sprintf("not a %s v%d file; %s", stateFormat, stateVersionV3, j.restoreAdvice())}
	}
	keys, err := decodeKeyRecords(j.path, snap.Keys)
	if err != nil {
		return 0, nil, err
	}
	return snap.Seq, keys, nil
}

// decodeKeyRecords decodes the JSON key records of a format-2 or format-3
// snapshot (named file in errors) into keys in id order, refusing an
// invalid key or two keys with one id.
func decodeKeyRecords(file string, recs []keystore.KeyRecord) ([]*keystore.Key, error) {
	keys := make([]*keystore.Key, len(recs))
	sorted := true
	for i := range recs {
		k, err := keystore.DecodeKeyRecord(&recs[i])
		if err != nil {
			return nil, &keystore.DataError{File: file, Field: fmt.Sprintf("keys[%d]", i), Reason: "invalid key", Err: err}
		}
		keys[i] = k
		if i > 0 && keys[i-1].ID >= k.ID {
			sorted = false
		}
		recs[i] = keystore.KeyRecord{} // the decoded key is all that is kept
	}
	if sorted { // as keygate writes them
		return keys, nil
	}
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		if seen[k.ID] {
			return nil, &keystore.DataError{File: file, Field: fmt.Sprintf("keys[%d].id", i), Reason: "duplicate key id " + k.ID}
		}
		seen[k.ID] = true
	}
	return sortedByID(keys), nil
}

// snapshotRefusal explains a snapshot whose checksum trailer is missing or
// wrong: an older format, a file that is not JSON (truncated, emptied), or
// a change after keygate wrote it. It runs only on the way to a refusal.
func (j *journal) snapshotRefusal(data []byte, hasTrailer bool, stored uint32, body []byte) error {
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		var snap snapshotFile
		err = keystore.DecodeStrict(j.path, data, &snap) // names the line and column
		if err == nil {
			err = &keystore.DataError{File: j.path, Reason: "invalid JSON"}
		}
		return fmt.Errorf("corrupt state snapshot (%s): %w", j.restoreAdvice(), err)
	}
	switch {
	case head.Format == stateFormat && head.Version == 1:
		return &keystore.DataError{File: j.path, Field: "version", Reason: fmt.Sprintf("state format version %d is not read by this keygate (it reads versions %d and %d, and upgrades version 2); "+
			"stop keygate and remove %s and %s to start again from data/keys.json", head.Version, snapshotVersion, stateVersionV3, filepath.Base(j.path), filepath.Base(j.logPath))}
	case !hasTrailer:
		return &keystore.DataError{File: j.path, Field: "checksum", Reason: fmt.Sprintf("no %s checksum at the end of the file (not a %s v%d snapshot, or damaged); %s",
			strings.TrimSuffix(checksumAlgo, ":"), stateFormat, stateVersionV3, j.restoreAdvice())}
	default:
		return &keystore.DataError{File: j.path, Field: "checksum", Reason: fmt.Sprintf("snapshot checksum mismatch (stored %s%08x, computed %s%08x): "+
			"the file changed after keygate wrote it; %s", checksumAlgo, stored, checksumAlgo, crc32.Checksum(body, castagnoli), j.restoreAdvice())}
	}
}

// The snapshot ends with its checksum: `,"checksum":"crc32c:<8 hex>"}`,
// the CRC-32C of every byte before that trailer. Checking it takes one pass
// over the bytes and no parsing, and it covers the whole file.
const (
	trailerHead = `,"checksum":"` + checksumAlgo
	trailerLen  = len(trailerHead) + 8 + len(`"}`)
)

// splitChecksum splits a snapshot into the checksummed body and the
// stored checksum; ok is false when the trailer is missing or malformed.
func splitChecksum(data []byte) (body []byte, sum uint32, ok bool) {
	if len(data) < trailerLen {
		return nil, 0, false
	}
	body, trailer := data[:len(data)-trailerLen], data[len(data)-trailerLen:]
	if !bytes.HasPrefix(trailer, []byte(trailerHead)) || !bytes.HasSuffix(trailer, []byte(`"}`)) {
		return nil, 0, false
	}
	hex := trailer[len(trailerHead) : len(trailerHead)+8]
	for _, c := range hex {
		v := uint32(0)
		switch {
		case c >= '0' && c <= '9':
			v = uint32(c - '0')
		case c >= 'a' && c <= 'f':
			v = uint32(c-'a') + 10
		default:
			return nil, 0, false
		}
		sum = sum<<4 | v
	}
	return body, sum, true
}

// encodeSnapshot returns the format-4 snapshot of keys at seq, keys in id
// order. compact streams the same bytes to the file instead.
func encodeSnapshot(seq uint64, keys []*keystore.Key) ([]byte, error) {
	var b bytes.Buffer
	if err := writeSnapshot(&b, seq, keys); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// encodeSnapshotV3 returns the format-3 snapshot of keys at seq, keys in
// id order: what keygate wrote before format 4 (an upgrade from format
// 2 that such a keygate began is recognised by these bytes; the benchmarks
// compare the two formats).
func encodeSnapshotV3(seq uint64, keys []*keystore.Key) ([]byte, error) {
	keys = sortedByID(keys)
	snap := snapshotFile{Format: stateFormat, Version: stateVersionV3, Seq: seq, Keys: make([]keystore.KeyRecord, len(keys))}
	for i, k := range keys {
		snap.Keys[i] = *keystore.NewKeyRecord(k)
	}
	data, err := json.Marshal(&snap) // {…,"keys":[…]} without a checksum (omitempty)
	if err != nil {
		return nil, fmt.Errorf("encode state snapshot: %w", err)
	}
	body := data[:len(data)-1] // without the closing brace
	return fmt.Appendf(body, "%s%08x\"}", trailerHead, crc32.Checksum(body, castagnoli)), nil
}

// frame is one record of a log (the state log, the audit trail): the frame
// header — length, CRC-32C of the payload, CRC-32C of those 8 bytes — then
// the payload.
func frame(payload []byte) []byte {
	b := make([]byte, frameHeader+len(payload))
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(b[8:12], crc32.Checksum(b[0:8], castagnoli))
	copy(b[frameHeader:], payload)
	return b
}

// readFrame reads the frame at the start of rest (a log after its header):
// its payload and size; or, when a crash cut the final frame short (fewer
// bytes than a header, a payload past the end of the file, a zero-filled
// tail), why it is torn — the caller drops the tail; or, when a complete
// frame is damaged, why it is corrupt — the caller refuses. noun names a
// frame in the reasons ("record", "entry").
func readFrame(rest []byte, noun string) (payload []byte, size int, torn, corrupt string) {
	switch {
	case allZero(rest):
		return nil, 0, "zero-filled tail", ""
	case len(rest) < frameHeader:
		return nil, 0, "torn " + noun + " header", ""
	case crc32.Checksum(rest[0:8], castagnoli) != binary.LittleEndian.Uint32(rest[8:12]):
		return nil, 0, "", noun + " header checksum mismatch (a damaged length, not a torn write)"
	}
	n := int(binary.LittleEndian.Uint32(rest[0:4]))
	switch {
	case n == 0 || n > maxRecordSize:
		return nil, 0, "", fmt.Sprintf("%s length %d outside 1..%d", noun, n, maxRecordSize)
	case frameHeader+n > len(rest):
		return nil, 0, "torn " + noun + ": payload runs past the end of the file", ""
	}
	payload = rest[frameHeader : frameHeader+n]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rest[4:8]) {
		return nil, 0, "", noun + " checksum mismatch (corruption, not a torn write: the header is intact and the payload complete)"
	}
	return payload, frameHeader + n, "", ""
}

func encodeLogHeader(base uint64) []byte {
	h := make([]byte, logHeaderSize)
	copy(h, logMagic)
	binary.LittleEndian.PutUint64(h[len(logMagic):], base)
	binary.LittleEndian.PutUint32(h[len(logMagic)+8:], crc32.Checksum(h[:len(logMagic)+8], castagnoli))
	return h
}

// logHeader checks the log's header and returns its base seq: the seq of
// the snapshot the log was started after.
func (j *journal) logHeader(data []byte) (uint64, error) {
	if len(data) >= logHeaderSize && bytes.HasPrefix(data, []byte(logMagic)) {
		if crc32.Checksum(data[:logHeaderSize-4], castagnoli) != binary.LittleEndian.Uint32(data[logHeaderSize-4:logHeaderSize]) {
			return 0, &keystore.DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", len(logMagic)), Reason: "log header checksum mismatch (the base seq is damaged); " + j.restoreAdvice()}
		}
		return binary.LittleEndian.Uint64(data[len(logMagic):]), nil
	}
	old := func(v int) error {
		return &keystore.DataError{File: j.logPath, Field: "offset 0", Reason: fmt.Sprintf("state log format version %d is not read by this keygate (it reads version %d); "+
			"stop keygate and remove %s and %s to start again from data/keys.json", v, logVersion, filepath.Base(j.path), filepath.Base(j.logPath))}
	}
	switch { // a format-2 log ("KGLOGv2\n") never reaches here: loadState upgrades it
	case len(data) >= 4 && binary.LittleEndian.Uint32(data) <= maxRecordSize && bytes.Contains(data[:min(len(data), 16)], []byte(`{"seq"`)):
		return 0, old(1)
	case len(data) < logHeaderSize && (bytes.HasPrefix(data, []byte(logMagic)) || bytes.HasPrefix([]byte(logMagic), data)):
		// The log is written whole into a temp file and renamed into
		// place, so a crash cannot leave a partial header.
		return 0, &keystore.DataError{File: j.logPath, Field: "offset 0", Reason: fmt.Sprintf("log header incomplete (%d of %d bytes; a crash cannot cause this); %s", len(data), logHeaderSize, j.restoreAdvice())}
	default:
		return 0, &keystore.DataError{File: j.logPath, Field: "offset 0", Reason: fmt.Sprintf("not a keygate state log (no %q header); %s", strings.TrimSpace(logMagic), j.restoreAdvice())}
	}
}

// replay applies the records of a log over keys, checking that they run
// base+1, base+2, … and reach snapSeq. Only a torn final frame is dropped
// (with an evidence copy of the log): fewer bytes than a header, or a valid
// header whose payload runs past the end of the file; also a zero-filled tail,
// which is how a filesystem that persisted the size of an append but not its
// data shows it. Anything else is corruption of acknowledged writes and an
// error naming the log and the offset.
func (j *journal) replay(data []byte, keys *keySet, snapSeq, base uint64) error {
	truncateAdvice := "restore both files from the same backup, or (after keeping a copy) truncate the log at this offset to keep only the records before it"
	prev := base
	off := logHeaderSize
	for off < len(data) {
		at := fmt.Sprintf("offset %d", off)
		payload, size, torn, corrupt := readFrame(data[off:], "record")
		if torn != "" {
			if err := j.dropTail(data, off, torn); err != nil {
				return err
			}
			break
		}
		if corrupt != "" {
			return &keystore.DataError{File: j.logPath, Field: at, Reason: corrupt + "; " + truncateAdvice}
		}
		var rec record
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return &keystore.DataError{File: j.logPath, Field: at, Reason: "invalid record; " + truncateAdvice, Err: err}
		}
		if rec.Seq != prev+1 {
			what := "a gap: records are missing"
			if rec.Seq <= prev {
				what = "a repeat: the seq goes back"
			}
			return &keystore.DataError{File: j.logPath, Field: at, Reason: fmt.Sprintf("record seq %d where %d was expected (%s; the log is not the one keygate wrote); %s",
				rec.Seq, prev+1, what, truncateAdvice)}
		}
		if j.onRecord != nil {
			j.onRecord(&rec, keys)
		}
		if err := applyRecord(&rec, keys, snapSeq); err != nil {
			return &keystore.DataError{File: j.logPath, Field: at, Reason: "invalid record; " + truncateAdvice, Err: err}
		}
		prev = rec.Seq
		off += size
	}
	if prev < snapSeq {
		return &keystore.DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", off), Reason: fmt.Sprintf("log ends at seq %d, before the seq %d of %s: "+
			"the log is older than the snapshot, and writes acknowledged between them are missing; %s", prev, snapSeq, filepath.Base(j.path), j.restoreAdvice())}
	}
	j.seq = prev
	return nil
}

// applyRecord applies rec over keys; a record at or below snapSeq is
// already in the snapshot (a crash between the snapshot's rename and the
// log's) and is only checked.
func applyRecord(rec *record, keys *keySet, snapSeq uint64) error {
	switch rec.Op {
	case keystore.ChangePut:
		if rec.Key == nil {
			return errors.New("put without key")
		}
		k, err := keystore.DecodeKeyRecord(rec.Key)
		if err != nil {
			return err
		}
		if rec.Seq > snapSeq {
			keys.put(k)
		}
	case keystore.ChangeDelete:
		if rec.Seq > snapSeq {
			keys.del(rec.ID)
		}
	default:
		return fmt.Errorf("unknown op %q", rec.Op)
	}
	return nil
}

func allZero(b []byte) bool {
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// dropTail keeps the log as found in <log>.corrupt-<unix time> (Open's
// compaction is about to replace the log) and warns, naming the copy. If the
// copy cannot be made, Open fails rather than destroy the evidence.
func (j *journal) dropTail(data []byte, off int, why string) error {
	evidence, err := j.keepEvidence(data)
	if err != nil {
		return &keystore.DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", off), Reason: "torn tail (" + why + "), and no copy of the log could be kept before dropping it", Err: err}
	}
	j.logger.Warn("dropping torn tail of state log; every acknowledged write before it is kept",
		"file", j.logPath, "offset", off, "bytes", len(data)-off, "reason", why, "copy", evidence)
	return nil
}

func (j *journal) keepEvidence(data []byte) (string, error) {
	base := fmt.Sprintf("%s.corrupt-%d", j.logPath, time.Now().Unix())
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s.%d", base, i)
		}
		f, err := j.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = j.fs.SyncDir(filepath.Dir(name))
		}
		if err != nil {
			_ = j.fs.Remove(name)
			return "", err
		}
		return name, nil
	}
}

// compact writes every key into a fresh snapshot at the current seq and
// starts a fresh log based on it. The snapshot is renamed into place first
// and the log second, so a crash in between leaves the new snapshot beside
// the log it was folded from, which Open accepts (see "Continuity"). The
// very first state is the exception: its empty log goes first, so that a log
// without a snapshot always means lost keys, except for that empty one.
//
// A failure before a rename changes nothing on disk: the current log stays
// open and compaction is retried later. A failure after a rename (the
// directory fsync) leaves the disk in doubt, and the journal refuses all
// further writes until restart.
func (j *journal) compact(keys []*keystore.Key) error {
	if j.broken != nil {
		return j.broken
	}
	seq := j.seq
	snap := func(w io.Writer) error { return writeSnapshot(w, seq, keys) }
	if !j.hasSnapshot {
		if err := j.replaceLog(); err != nil {
			return err
		}
		if err := j.replaceFileWith(j.path, snap); err != nil {
			return err
		}
		j.hasSnapshot = true
	} else {
		if err := j.replaceFileWith(j.path, snap); err != nil {
			return err
		}
		if err := j.replaceLog(); err != nil {
			return err
		}
	}
	j.records = 0
	j.upgraded()
	return nil
}

// replaceLog writes a new log (its header, based on j.seq) into a temp
// file, renames it over the log and keeps it open for appends.
func (j *journal) replaceLog() error {
	f, err := j.writeTemp(j.logPath, encodeLogHeader(j.seq))
	if err != nil {
		return err
	}
	if err := j.fs.Rename(f.Name(), j.logPath); err != nil {
		f.Close()
		_ = j.fs.Remove(f.Name())
		return fmt.Errorf("rename %s: %w", j.logPath, err)
	}
	if j.log != nil {
		_ = j.log.Close() // the previous log, now replaced
	}
	j.log = f
	// Some file systems (a few FUSE ones) report no link count at all;
	// only where the fresh log shows its link is a count of 0 news.
	if fi, err := f.Stat(); err == nil {
		links, ok := linkCount(fi)
		j.linkCheck = ok && links > 0
	}
	if err := j.fs.SyncDir(filepath.Dir(j.logPath)); err != nil {
		j.broken = fmt.Errorf("state log %s replaced, but the directory could not be synced: %w", j.logPath, err)
		return j.broken
	}
	return nil
}

// replaceFile replaces path with data: temp file, fsync, rename, fsync dir.
func (j *journal) replaceFile(path string, data []byte) error {
	return j.replaceFileWith(path, writeAll(data))
}

// replaceFileWith replaces path with what write writes: temp file, fsync,
// rename, fsync dir.
func (j *journal) replaceFileWith(path string, write func(io.Writer) error) error {
	f, err := j.writeTempWith(path, write)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		_ = j.fs.Remove(f.Name())
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if err := j.fs.Rename(f.Name(), path); err != nil {
		_ = j.fs.Remove(f.Name())
		return fmt.Errorf("rename %s: %w", path, err)
	}
	if err := j.fs.SyncDir(filepath.Dir(path)); err != nil {
		j.broken = fmt.Errorf("%s replaced, but the directory could not be synced: %w", path, err)
		return j.broken
	}
	return nil
}

// writeTemp writes data into a new temp file beside path and fsyncs it; the
// file is returned open. On error it is removed.
func (j *journal) writeTemp(path string, data []byte) (stateFile, error) {
	return j.writeTempWith(path, writeAll(data))
}

// writeAll is a write function for writeTempWith that writes data.
func writeAll(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		n, err := w.Write(data)
		if err == nil && n < len(data) {
			err = io.ErrShortWrite
		}
		return err
	}
}

// writeTempWith is writeTemp of what write writes to the file.
func (j *journal) writeTempWith(path string, write func(io.Writer) error) (stateFile, error) {
	f, err := j.fs.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	err = write(f)
	if err == nil {
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("sync %s: %w", f.Name(), err)
		}
	} else {
		err = fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err != nil {
		f.Close()
		_ = j.fs.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// append writes one record and fsyncs it: the write is durable when it
// returns nil. Any failure leaves the disk in doubt (a partial frame, or
// dirty pages an fsync could not write and the kernel may have dropped), so
// it refuses every later append: fsync is never retried.
func (j *journal) append(rec *record) error {
	if j.broken != nil {
		return fmt.Errorf("state log unusable after an earlier failure: %w", j.broken)
	}
	rec.Seq = j.seq + 1
	payload, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode state record: %w", err)
	}
	if len(payload) > maxRecordSize {
		return fmt.Errorf("state record of %d bytes exceeds %d", len(payload), maxRecordSize)
	}
	b := frame(payload)
	n, err := j.log.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		j.broken = fmt.Errorf("append to state log %s: %w", j.logPath, err)
		return j.broken
	}
	if err := j.log.Sync(); err != nil {
		j.broken = fmt.Errorf("sync state log %s: %w", j.logPath, err)
		return j.broken
	}
	// A log removed (or renamed over) while keygate runs takes the write
	// with it: a restart would not find it, so it is not acknowledged.
	if fi, err := j.log.Stat(); err != nil {
		j.broken = fmt.Errorf("stat state log %s: %w", j.logPath, err)
		return j.broken
	} else if links, _ := linkCount(fi); j.linkCheck && links == 0 {
		j.broken = fmt.Errorf("state log %s was removed or replaced while keygate ran; restart keygate (it will refuse the state until it is restored)", j.logPath)
		return j.broken
	}
	j.seq = rec.Seq
	j.records++
	return nil
}

func (j *journal) close() error {
	j.releaseV2()
	if j.log == nil {
		return nil
	}
	err := j.log.Close()
	j.log = nil
	return err
}

// removeStaleTemps deletes temp files of the snapshot, the log and the
// format-2 backups that a crash left behind (only ever called under the
// state lock).
func removeStaleTemps(path string) {
	for _, pattern := range []string{path + ".tmp-*", path + ".log.tmp-*", path + backupTag + "*.tmp-*", path + ".log" + backupTag + "*.tmp-*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
}
