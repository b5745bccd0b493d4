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
)

// State file format (see the package comment for why):
//
//	<state>       snapshot: {"format":"keygate-state","version":1,"seq":N,"keys":[…]}
//	<state>.log   records:  [len uint32 LE][crc32c(payload) uint32 LE][payload JSON]
//	              payload:  {"seq":N,"op":"put","key":{…}} | {"seq":N,"op":"delete","id":"…"}
//
// A record applies only if its seq is above the snapshot's, so a crash
// between writing a snapshot and emptying the log replays nothing twice.

const (
	stateFormat   = "keygate-state"
	stateVersion  = 1
	frameHeader   = 8
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

func (j *journal) replay(data []byte, keys map[string]*Key) error {
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < frameHeader {
			j.dropTail(off, len(rest), "torn record header")
			return nil
		}
		n := int(binary.LittleEndian.Uint32(rest[0:4]))
		sum := binary.LittleEndian.Uint32(rest[4:8])
		if n == 0 {
			if allZero(rest) {
				j.dropTail(off, len(rest), "zero-filled tail")
				return nil
			}
			return &DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", off), Reason: "empty record followed by data (corruption, not a torn write)"}
		}
		if n > maxRecordSize || frameHeader+n > len(rest) {
			j.dropTail(off, len(rest), "torn or oversized record")
			return nil
		}
		payload := rest[frameHeader : frameHeader+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			if frameHeader+n == len(rest) || allZero(rest[frameHeader+n:]) {
				j.dropTail(off, len(rest), "checksum mismatch in last record")
				return nil
			}
			return &DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", off), Reason: "checksum mismatch in a record followed by more records (corruption, not a torn write); restore from a backup or truncate the log at this offset to keep the valid prefix"}
		}
		var rec record
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return &DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", off), Reason: "invalid record", Err: err}
		}
		if err := applyRecord(&rec, keys, j.seq); err != nil {
			return &DataError{File: j.logPath, Field: fmt.Sprintf("offset %d", off), Reason: "invalid record", Err: err}
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

func (j *journal) dropTail(off, n int, why string) {
	j.logger.Warn("dropping torn tail of state log; every acknowledged write before it is kept",
		"file", j.logPath, "offset", off, "bytes", n, "reason", why)
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
	frame := make([]byte, frameHeader+len(payload))
	binary.LittleEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:8], crc32.Checksum(payload, castagnoli))
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
