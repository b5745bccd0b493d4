package keystore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// State file format, version 2 (see the package comment for why):
//
//	<state>       snapshot: {"format":"keygate-state","version":2,"seq":N,"keys":[…]}
//	<state>.log   "KGLOGv2\n", then records:
//	              [len uint32 LE][crc32c(payload) uint32 LE][crc32c(bytes 0-7) uint32 LE][payload JSON]
//	              payload:  {"seq":N,"op":"put","key":{…}} | {"seq":N,"op":"delete","id":"…"}
//
// The header checksum makes the length self-checking: a damaged length is
// detected as such instead of looking like a record that runs past the end of
// the file (a torn append). Version 1 (no log header, 8-byte frame headers
// without a header checksum) is refused, not read: it cannot tell those two
// apart, and no version 1 state was ever deployed.
//
// A record applies only if its seq is above the snapshot's, so a crash
// between writing a snapshot and emptying the log replays nothing twice.

const (
	stateFormat   = "keygate-state"
	stateVersion  = 2
	logMagic      = "KGLOGv2\n"
	frameHeader   = 12
	maxRecordSize = 4 << 20
	opPut         = "put"
	opDelete      = "delete"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyRecord is a key as the state file stores it: the key plus its secret hash.
type keyRecord struct {
	Key
	SecretHash string `json:"secretHash"`
}

type snapshot struct {
	Format  string      `json:"format"`
	Version int         `json:"version"`
	Seq     uint64      `json:"seq"`
	Keys    []keyRecord `json:"keys"`
}

type record struct {
	Seq uint64     `json:"seq"`
	Op  string     `json:"op"`
	Key *keyRecord `json:"key,omitempty"`
	ID  string     `json:"id,omitempty"`
}

func toRecord(k *Key) *keyRecord {
	return &keyRecord{Key: *k, SecretHash: formatHash(k.secretHash)}
}

func fromRecord(r *keyRecord) (*Key, error) {
	if !strings.HasPrefix(r.SecretHash, hashPrefix) {
		return nil, errors.New("secretHash must be sha256:<64 hex>")
	}
	h, err := parseHashOrPlain(r.SecretHash)
	if err != nil {
		return nil, fmt.Errorf("secretHash: %w", err)
	}
	if !idPattern.MatchString(r.ID) || r.Service == "" {
		return nil, fmt.Errorf("key %q: invalid id or service", r.ID)
	}
	k := r.Key
	k.secretHash = h
	k.ContentAPI = k.ContentAPI.clone()
	return &k, nil
}

// journal owns the state files. It is not safe for concurrent use: the
// store calls it under its write lock.
type journal struct {
	path         string
	logPath      string
	log          *os.File
	seq          uint64 // last seq written or loaded
	records      int    // records in the log since the last snapshot
	compactAfter int
	logger       *slog.Logger
}

// loadState reads the snapshot and the log. found reports whether any state
// existed. A corrupt snapshot or a corrupt record in the middle of the log is
// an error naming the file; a torn or corrupt tail of the log is dropped with
// a warning (a crash during an append can only tear the last record).
func (j *journal) loadState() (keys map[string]*Key, found bool, err error) {
	keys = make(map[string]*Key)
	data, err := os.ReadFile(j.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, false, &DataError{File: j.path, Reason: "cannot read state", Err: err}
	default:
		found = true
		var snap snapshot
		if err := decodeStrict(j.path, data, &snap); err != nil {
			return nil, false, fmt.Errorf("corrupt state snapshot (restore it from a backup or remove it together with %s to start from data/): %w", filepath.Base(j.logPath), err)
		}
		if snap.Format == stateFormat && snap.Version == 1 {
			return nil, false, &DataError{File: j.path, Field: "version", Reason: fmt.Sprintf("state format version 1 is not read by this keygate (it reads version %d); "+
				"stop keygate and remove %s and %s to start again from data/keys.json", stateVersion, filepath.Base(j.path), filepath.Base(j.logPath))}
		}
		if snap.Format != stateFormat || snap.Version != stateVersion {
			return nil, false, &DataError{File: j.path, Field: "format", Reason: fmt.Sprintf("not a %s v%d file", stateFormat, stateVersion)}
		}
		for i := range snap.Keys {
			k, err := fromRecord(&snap.Keys[i])
			if err != nil {
				return nil, false, &DataError{File: j.path, Field: fmt.Sprintf("keys[%d]", i), Reason: "invalid key", Err: err}
			}
			if _, dup := keys[k.ID]; dup {
				return nil, false, &DataError{File: j.path, Field: fmt.Sprintf("keys[%d].id", i), Reason: "duplicate key id " + k.ID}
			}
			keys[k.ID] = k
		}
		j.seq = snap.Seq
	}

	logData, err := os.ReadFile(j.logPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return keys, found, nil
	case err != nil:
		return nil, false, &DataError{File: j.logPath, Reason: "cannot read state log", Err: err}
	}
	found = found || len(logData) > 0
	if err := j.replay(logData, keys); err != nil {
		return nil, false, err
	}
	return keys, found, nil
}

// replay applies the records of a log over keys. Only a torn final frame is
// dropped (with an evidence copy of the log): fewer bytes than a header, or a
// valid header whose payload runs past the end of the file; also a zero-filled
// tail, which is how a filesystem that persisted the size of an append but not
// its data shows it. Anything else is corruption of acknowledged writes and an
// error naming the log and the offset.
func (j *journal) replay(data []byte, keys map[string]*Key) error {
	if !bytes.HasPrefix(data, []byte(logMagic)) {
		switch {
		case len(data) < len(logMagic) && bytes.HasPrefix([]byte(logMagic), data):
			// A crash while compaction wrote the header of the emptied log.
			return j.dropTail(data, 0, "torn log header")
		case len(data) >= 4 && binary.LittleEndian.Uint32(data) <= maxRecordSize && bytes.Contains(data[:min(len(data), 16)], []byte(`{"seq"`)):
			return &DataError{File: j.logPath, Field: "offset 0", Reason: fmt.Sprintf("state log format version 1 is not read by this keygate (it reads version %d); "+
				"stop keygate and remove %s and %s to start again from data/keys.json", stateVersion, filepath.Base(j.path), filepath.Base(j.logPath))}
		default:
			return &DataError{File: j.logPath, Field: "offset 0", Reason: fmt.Sprintf("not a keygate state log (no %q header)", strings.TrimSpace(logMagic))}
		}
	}
	off := len(logMagic)
	for off < len(data) {
		rest := data[off:]
		at := fmt.Sprintf("offset %d", off)
		if allZero(rest) {
			return j.dropTail(data, off, "zero-filled tail")
		}
		if len(rest) < frameHeader {
			return j.dropTail(data, off, "torn record header")
		}
		if crc32.Checksum(rest[0:8], castagnoli) != binary.LittleEndian.Uint32(rest[8:12]) {
			return &DataError{File: j.logPath, Field: at, Reason: "record header checksum mismatch (a damaged length, not a torn write); " +
				"restore from a backup, or truncate the log at this offset to keep only the records before it"}
		}
		n := int(binary.LittleEndian.Uint32(rest[0:4]))
		if n == 0 || n > maxRecordSize {
			return &DataError{File: j.logPath, Field: at, Reason: fmt.Sprintf("record length %d outside 1..%d", n, maxRecordSize)}
		}
		if frameHeader+n > len(rest) {
			return j.dropTail(data, off, "torn record: payload runs past the end of the file")
		}
		payload := rest[frameHeader : frameHeader+n]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rest[4:8]) {
			return &DataError{File: j.logPath, Field: at, Reason: "record checksum mismatch (corruption, not a torn write: the header is intact and the payload complete); " +
				"restore from a backup, or truncate the log at this offset to keep only the records before it"}
		}
		var rec record
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return &DataError{File: j.logPath, Field: at, Reason: "invalid record", Err: err}
		}
		if err := applyRecord(&rec, keys, j.seq); err != nil {
			return &DataError{File: j.logPath, Field: at, Reason: "invalid record", Err: err}
		}
		j.seq = max(j.seq, rec.Seq)
		off += frameHeader + n
	}
	return nil
}

func applyRecord(rec *record, keys map[string]*Key, snapSeq uint64) error {
	if rec.Seq <= snapSeq {
		return nil // already in the snapshot
	}
	switch rec.Op {
	case opPut:
		if rec.Key == nil {
			return errors.New("put without key")
		}
		k, err := fromRecord(rec.Key)
		if err != nil {
			return err
		}
		keys[k.ID] = k
	case opDelete:
		delete(keys, rec.ID)
	default:
		return fmt.Errorf("unknown op %q", rec.Op)
	}
	return nil
}

func allZero(b []byte) bool {
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// dropTail keeps the log as found in <log>.corrupt-<unix time> (Open's
// compaction is about to empty the log) and warns, naming the copy. If the
// copy cannot be made, Open fails rather than destroy the evidence.
func (j *journal) dropTail(data []byte, off int, why string) error {
	evidence, err := j.keepEvidence(data)
	if err != nil {
		return &DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", off), Reason: "torn tail (" + why + "), and no copy of the log could be kept before dropping it", Err: err}
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
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
			err = syncDir(filepath.Dir(name))
		}
		if err != nil {
			_ = os.Remove(name)
			return "", err
		}
		return name, nil
	}
}

// compact writes every key into a fresh snapshot and empties the log.
func (j *journal) compact(keys []*Key) error {
	slices.SortFunc(keys, func(a, b *Key) int { return strings.Compare(a.ID, b.ID) })
	snap := snapshot{Format: stateFormat, Version: stateVersion, Seq: j.seq, Keys: make([]keyRecord, len(keys))}
	for i, k := range keys {
		snap.Keys[i] = *toRecord(k)
	}
	data, err := json.Marshal(&snap)
	if err != nil {
		return fmt.Errorf("encode state snapshot: %w", err)
	}
	if err := writeFileAtomic(j.path, data); err != nil {
		return err
	}
	if j.log == nil {
		f, err := os.OpenFile(j.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open state log: %w", err)
		}
		j.log = f
	}
	if err := j.log.Truncate(0); err != nil {
		return fmt.Errorf("truncate state log %s: %w", j.logPath, err)
	}
	if _, err := j.log.Write([]byte(logMagic)); err != nil {
		return fmt.Errorf("write state log header %s: %w", j.logPath, err)
	}
	if err := j.log.Sync(); err != nil {
		return fmt.Errorf("sync state log %s: %w", j.logPath, err)
	}
	if err := syncDir(filepath.Dir(j.path)); err != nil {
		return err
	}
	j.records = 0
	return nil
}

// append writes one record and fsyncs it: the write is durable when it returns nil.
func (j *journal) append(rec *record) error {
	rec.Seq = j.seq + 1
	payload, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode state record: %w", err)
	}
	if len(payload) > maxRecordSize {
		return fmt.Errorf("state record of %d bytes exceeds %d", len(payload), maxRecordSize)
	}
	frame := make([]byte, frameHeader+len(payload))
	binary.LittleEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:8], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(frame[8:12], crc32.Checksum(frame[0:8], castagnoli))
	copy(frame[frameHeader:], payload)
	if _, err := j.log.Write(frame); err != nil {
		return fmt.Errorf("append to state log %s: %w", j.logPath, err)
	}
	if err := j.log.Sync(); err != nil {
		return fmt.Errorf("sync state log %s: %w", j.logPath, err)
	}
	j.seq = rec.Seq
	j.records++
	return nil
}

func (j *journal) close() error {
	if j.log == nil {
		return nil
	}
	err := j.log.Close()
	j.log = nil
	return err
}

// writeFileAtomic replaces path with data: temp file, fsync, rename, fsync dir.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps deletes snapshot temp files a crash left behind.
func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(path + ".tmp-*")
	for _, m := range matches {
		_ = os.Remove(m)
	}
}
