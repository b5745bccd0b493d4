package local

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// Snapshot format 4: a JSON header line, then the keys as binary records in
// checksummed frames, then an end frame holding the checksum of the file.
//
//	header   {"format":"keygate-state","version":4,"seq":N,"keys":K,"checksum":"crc32c:<8 hex>"}\n
//	         checksum: CRC-32C of the line's bytes before `,"checksum"`
//	frames   [len uint32 LE][crc32c(payload) uint32 LE][crc32c(bytes 0-7) uint32 LE][payload]
//	         (the log's frame); payload: [n uvarint] then n × ([len uvarint][key record])
//	end      [0xFFFFFFFF][crc32c(every byte of the file before the end) uint32 LE][crc32c(bytes 0-7) uint32 LE]
//
//	key record (every length a uvarint, every string its bytes):
//	         [len]id [len]service [len]name [len]createdBy
//	         secret hash: 32 bytes (SHA-256)
//	         createdAt, updatedAt: [len byte][time.Time.MarshalBinary]
//	         revision uvarint
//	         content default: 1 byte, bits 0-6 = get getAllDrafts getAllClosed post put patch delete
//	         management: uint16 LE, bits 0-8 = the ManagementPerms fields in order
//	         individual: [n uvarint] then n × ([len]endpoint [1 byte content bits])
//
// The keys run in strictly increasing id order (so a duplicate is refused
// without a map) and the endpoints of a key likewise; the encoding of a set
// of keys is therefore unique, which the resumed format-2 upgrade relies on
// (it compares bytes). Decoding is strict: every length is bounded by the
// bytes that hold it, every field is checked as keystore.DecodeKeyRecord
// checks a JSON record (id pattern, service, hash), unknown flag bits and
// trailing bytes are refused, and the key count of the header and the
// file's checksum in the end frame must hold. Each frame's checksum is
// verified before its records are decoded; nothing is returned before the
// end frame's checksum holds.
//
// The file is written and read as a stream (bufio, checksums computed on the
// way): neither side holds more than one frame besides the keys themselves.
const (
	snapshotVersion = 4
	// maxSnapshotHeader bounds the header line; format detection peeks at
	// most this many bytes.
	maxSnapshotHeader = 4096
	// snapshotEnd is the length field of the end frame (no payload).
	snapshotEnd = 0xFFFFFFFF
	// A frame is written once its records reach about this size.
	snapshotFrameBytes = 64 << 10
	// The smallest possible key record: four one-byte strings, the hash,
	// two shortest times, revision, flags, individual count.
	minKeyRecord     = 4 + 32 + 2*16 + 1 + 1 + 2 + 1
	snapshotIOBuffer = 1 << 20
)

// snapshotHeader is the header line, as decoded (strictly).
type snapshotHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Seq     uint64 `json:"seq"`
	Keys    int    `json:"keys"`
}

// isSnapshotV4Head tells whether head, the first bytes of a snapshot, start
// with a header line of format 4 or later. Formats 2 and 3 are one line of
// JSON without a newline (encoding/json escapes newlines in strings).
func isSnapshotV4Head(head []byte) bool {
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return false
	}
	var h struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	return json.Unmarshal(head[:i], &h) == nil && h.Format == stateFormat && h.Version >= snapshotVersion
}

// sortedByID returns keys in id order: keys itself when they already are
// (the index lists them in id order, a loaded state is), else a sorted copy
// (the caller's slice, which the index may hold, is left as it is).
func sortedByID(keys []*keystore.Key) []*keystore.Key {
	byID := func(a, b *keystore.Key) int { return strings.Compare(a.ID, b.ID) }
	if slices.IsSortedFunc(keys, byID) {
		return keys
	}
	// Sorting (id, key) pairs compares without loading each *Key first.
	type idKey struct {
		id string
		k  *keystore.Key
	}
	pairs := make([]idKey, len(keys))
	for i, k := range keys {
		pairs[i] = idKey{k.ID, k}
	}
	slices.SortFunc(pairs, func(a, b idKey) int { return strings.Compare(a.id, b.id) })
	out := make([]*keystore.Key, len(keys))
	for i, p := range pairs {
		out[i] = p.k
	}
	return out
}

// writeSnapshot writes the format-4 snapshot of keys at seq to w, through a
// buffer, computing the checksums as it goes, keys in id order. A key the
// decoder would refuse (an invalid id, no service, two keys with one id) is
// an error: a snapshot keygate could not read back is never written.
func writeSnapshot(w io.Writer, seq uint64, keys []*keystore.Key) error {
	keys = sortedByID(keys)
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, snapshotIOBuffer)}
	head := fmt.Appendf(nil, `{"format":%q,"version":%d,"seq":%d,"keys":%d`, stateFormat, snapshotVersion, seq, len(keys))
	head = fmt.Appendf(head, "%s%08x\"}\n", trailerHead, crc32.Checksum(head, castagnoli))
	sw.write(head)
	var rec []byte
	var eps []string // scratch: a key's endpoints, sorted
	for i, k := range keys {
		if i > 0 && keys[i-1].ID == k.ID {
			return fmt.Errorf("encode state snapshot: two keys with id %q", k.ID)
		}
		var err error
		if rec, eps, err = appendKeyRecord(rec[:0], eps, k); err != nil {
			return fmt.Errorf("encode state snapshot: key %q: %w", k.ID, err)
		}
		sw.body = binary.AppendUvarint(sw.body, uint64(len(rec)))
		sw.body = append(sw.body, rec...)
		sw.n++
		if len(sw.body) >= snapshotFrameBytes {
			sw.flushFrame()
		}
	}
	sw.flushFrame()
	var end [frameHeader]byte
	binary.LittleEndian.PutUint32(end[0:4], snapshotEnd)
	binary.LittleEndian.PutUint32(end[4:8], sw.crc)
	binary.LittleEndian.PutUint32(end[8:12], crc32.Checksum(end[0:8], castagnoli))
	sw.write(end[:])
	if sw.err != nil {
		return sw.err
	}
	return sw.w.Flush()
}

type snapshotWriter struct {
	w    *bufio.Writer
	crc  uint32 // CRC-32C of every byte written so far
	body []byte // the records of the frame being filled
	n    int    // how many
	err  error
}

func (sw *snapshotWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	sw.crc = crc32.Update(sw.crc, castagnoli, b)
	_, sw.err = sw.w.Write(b)
}

func (sw *snapshotWriter) flushFrame() {
	if sw.n == 0 {
		return
	}
	var count [binary.MaxVarintLen64]byte
	c := binary.PutUvarint(count[:], uint64(sw.n))
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(c+len(sw.body)))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Update(crc32.Checksum(count[:c], castagnoli), castagnoli, sw.body))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[0:8], castagnoli))
	sw.write(h[:])
	sw.write(count[:c])
	sw.write(sw.body)
	sw.body, sw.n = sw.body[:0], 0
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, 0)
	at := len(b)
	b, err := t.AppendBinary(b)
	if err != nil {
		return nil, err
	}
	b[at-1] = byte(len(b) - at)
	return b, nil
}

func contentBits(p keystore.ContentPerms) byte {
	var b byte
	for i, on := range [...]bool{p.Get, p.GetAllDrafts, p.GetAllClosed, p.Post, p.Put, p.Patch, p.Delete} {
		if on {
			b |= 1 << i
		}
	}
	return b
}

func contentPerms(b byte) keystore.ContentPerms {
	return keystore.ContentPerms{Get: b&1 != 0, GetAllDrafts: b&2 != 0, GetAllClosed: b&4 != 0, Post: b&8 != 0,
		Put: b&16 != 0, Patch: b&32 != 0, Delete: b&64 != 0}
}

const (
	contentMask    = 1<<7 - 1
	managementMask = 1<<9 - 1
)

func managementBits(p keystore.ManagementPerms) uint16 {
	var b uint16
	for i, on := range [...]bool{p.GetContents, p.PatchContentCreatedBy, p.PatchContentStatus, p.GetMedia, p.PostMedia,
		p.DeleteMedia, p.GetMembers, p.GetApis, p.GetService} {
		if on {
			b |= 1 << i
		}
	}
	return b
}

func managementPerms(b uint16) keystore.ManagementPerms {
	return keystore.ManagementPerms{GetContents: b&1 != 0, PatchContentCreatedBy: b&2 != 0, PatchContentStatus: b&4 != 0,
		GetMedia: b&8 != 0, PostMedia: b&16 != 0, DeleteMedia: b&32 != 0, GetMembers: b&64 != 0, GetApis: b&128 != 0,
		GetService: b&256 != 0}
}

// appendKeyRecord appends k's binary record to b; eps is scratch space for
// the endpoints of its individual entries, returned for reuse.
func appendKeyRecord(b []byte, eps []string, k *keystore.Key) ([]byte, []string, error) {
	if !validKeyID(k.ID) || k.Service == "" {
		return nil, eps, errors.New("invalid id or service")
	}
	b = appendString(b, k.ID)
	b = appendString(b, k.Service)
	b = appendString(b, k.Name)
	b = appendString(b, k.CreatedBy)
	h := keystore.SecretHash(k)
	b = append(b, h[:]...)
	var err error
	if b, err = appendTime(b, k.CreatedAt); err != nil {
		return nil, eps, fmt.Errorf("createdAt: %w", err)
	}
	if b, err = appendTime(b, k.UpdatedAt); err != nil {
		return nil, eps, fmt.Errorf("updatedAt: %w", err)
	}
	b = binary.AppendUvarint(b, k.Revision)
	b = append(b, contentBits(k.ContentAPI.Default))
	b = binary.LittleEndian.AppendUint16(b, managementBits(k.ManagementAPI))
	ind := k.ContentAPI.Individual
	b = binary.AppendUvarint(b, uint64(len(ind)))
	if len(ind) > 0 {
		eps = eps[:0]
		for ep := range ind {
			eps = append(eps, ep)
		}
		slices.Sort(eps)
		for _, ep := range eps {
			b = appendString(b, ep)
			b = append(b, contentBits(ind[ep]))
		}
	}
	return b, eps, nil
}

// validKeyID is keystore's key id pattern, ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$,
// without a regular expression (TestValidKeyIDMatchesKeystore).
func validKeyID[S ~string | ~[]byte](id S) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// snapshotReader decodes a format-4 snapshot from a stream.
type snapshotReader struct {
	r    *bufio.Reader
	off  int64       // bytes consumed
	crc  uint32      // CRC-32C of every byte consumed
	bufs chan []byte // payload buffers not in use
}

// snapshotFault is what is wrong with a snapshot, where (a byte offset or a
// key index), before the journal turns it into a DataError.
type snapshotFault struct {
	field  string
	reason string
	err    error // a read error: not corruption
}

func (f *snapshotFault) Error() string { return f.field + ": " + f.reason }

// readSnapshot decodes a format-4 snapshot from r (positioned at its first
// byte) and returns its seq and its keys in id order. See the format above
// for what it checks. This goroutine reads the frames and checks their
// checksums; GOMAXPROCS workers decode their records, each frame into a
// slice of its own, joined in file order at the end. A refusal names the
// first fault in file order.
func readSnapshot(r *bufio.Reader) (uint64, []*keystore.Key, error) {
	sr := &snapshotReader{r: r}
	hdr, err := sr.header()
	if err != nil {
		return 0, nil, err
	}
	workers := max(1, runtime.GOMAXPROCS(0))
	jobs := make(chan *frameJob, workers)
	sr.bufs = make(chan []byte, 2*workers) // payload buffers in circulation: bounds the frames in memory
	for range 2 * workers {
		sr.bufs <- nil
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fd := &frameDecoder{intern: map[string]string{}}
			for job := range jobs {
				job.keys, job.err = fd.frame(job.payload, job.first, job.n)
				sr.bufs <- job.payload
				job.payload = nil
			}
		}()
	}
	frames, readErr := sr.frames(hdr, jobs)
	close(jobs)
	wg.Wait()
	total := 0
	for i, f := range frames {
		if f.err != nil {
			return 0, nil, f.err
		}
		if i > 0 {
			prev := frames[i-1].keys
			if last, id := prev[len(prev)-1].ID, f.keys[0].ID; id <= last {
				what := "not in id order"
				if id == last {
					what = "duplicate key id " + id
				}
				return 0, nil, &snapshotFault{field: fmt.Sprintf("keys[%d].id", f.first), reason: what}
			}
		}
		total += len(f.keys)
	}
	if readErr != nil {
		return 0, nil, readErr
	}
	keys := make([]*keystore.Key, 0, total)
	for _, f := range frames {
		keys = append(keys, f.keys...)
	}
	return hdr.Seq, keys, nil
}

// frameJob is one frame handed to a worker: its payload, its record count
// and the index of its first key in the file; the worker fills keys or err.
type frameJob struct {
	payload []byte
	first   int
	n       int
	keys    []*keystore.Key
	err     error
}

// frames reads the frames after the header up to the end frame, checking
// every checksum, the record counts against the header's, and that nothing
// follows; each frame goes to jobs. It returns every frame sent, and the
// fault that stopped it, if any.
func (sr *snapshotReader) frames(hdr *snapshotHeader, jobs chan<- *frameJob) ([]*frameJob, error) {
	var frames []*frameJob
	count := 0
	for {
		at, before := sr.off, sr.crc
		var h [frameHeader]byte
		if err := sr.read(h[:]); err != nil {
			return frames, sr.cut(err, at, fmt.Sprintf("the file ends after %d of its %d keys, without its end frame", count, hdr.Keys))
		}
		if crc32.Checksum(h[0:8], castagnoli) != binary.LittleEndian.Uint32(h[8:12]) {
			return frames, &snapshotFault{field: fmt.Sprintf("offset %d", at), reason: "frame header checksum mismatch"}
		}
		n := binary.LittleEndian.Uint32(h[0:4])
		if n == snapshotEnd {
			// The end frame's checksum covers every byte before it.
			if stored := binary.LittleEndian.Uint32(h[4:8]); stored != before {
				return frames, &snapshotFault{field: "checksum", reason: fmt.Sprintf("snapshot checksum mismatch (stored %s%08x, computed %s%08x): the file changed after keygate wrote it",
					checksumAlgo, stored, checksumAlgo, before)}
			}
			if count != hdr.Keys {
				return frames, &snapshotFault{field: fmt.Sprintf("offset %d", at), reason: fmt.Sprintf("the header announces %d keys, the file holds %d", hdr.Keys, count)}
			}
			if _, err := sr.r.ReadByte(); !errors.Is(err, io.EOF) {
				if err != nil {
					return frames, &snapshotFault{field: fmt.Sprintf("offset %d", sr.off), reason: "read failed", err: err}
				}
				return frames, &snapshotFault{field: fmt.Sprintf("offset %d", sr.off), reason: "data after the end frame"}
			}
			return frames, nil
		}
		if n == 0 || n > maxRecordSize {
			return frames, &snapshotFault{field: fmt.Sprintf("offset %d", at), reason: fmt.Sprintf("frame length %d outside 1..%d", n, maxRecordSize)}
		}
		buf := <-sr.bufs
		if cap(buf) < int(n) {
			buf = make([]byte, max(n, snapshotFrameBytes+snapshotFrameBytes/4))
		}
		payload := buf[:n]
		if err := sr.read(payload); err != nil {
			sr.bufs <- buf
			return frames, sr.cut(err, at, "the file ends inside a frame")
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
			sr.bufs <- buf
			return frames, &snapshotFault{field: fmt.Sprintf("offset %d", at), reason: "frame checksum mismatch"}
		}
		recs, c := binary.Uvarint(payload)
		if c <= 0 || recs == 0 || recs > uint64(len(payload)/minKeyRecord) {
			sr.bufs <- buf
			return frames, &snapshotFault{field: fmt.Sprintf("keys[%d]", count), reason: "frame record count out of range"}
		}
		if count+int(recs) > hdr.Keys {
			sr.bufs <- buf
			return frames, &snapshotFault{field: fmt.Sprintf("keys[%d]", hdr.Keys), reason: fmt.Sprintf("more keys than the %d the header announces", hdr.Keys)}
		}
		job := &frameJob{payload: payload[c:], first: count, n: int(recs)}
		frames = append(frames, job)
		jobs <- job
		count += int(recs)
	}
}

// header reads and checks the header line.
func (sr *snapshotReader) header() (*snapshotHeader, error) {
	head, err := sr.r.Peek(maxSnapshotHeader)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, &snapshotFault{field: "offset 0", reason: "read failed", err: err}
	}
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return nil, &snapshotFault{field: "header", reason: fmt.Sprintf("no header line in the first %d bytes", maxSnapshotHeader)}
	}
	line := head[:i]
	var v struct {
		Version int `json:"version"`
	}
	if json.Unmarshal(line, &v) == nil && v.Version != snapshotVersion {
		return nil, &snapshotFault{field: "version", reason: fmt.Sprintf("state format version %d is not read by this keygate (it reads versions %d and 3, and upgrades version 2): "+
			"a newer keygate wrote it; run that keygate", v.Version, snapshotVersion)}
	}
	body, stored, ok := splitChecksum(line)
	switch {
	case !ok:
		return nil, &snapshotFault{field: "header", reason: "no crc32c checksum at the end of the header line"}
	case crc32.Checksum(body, castagnoli) != stored:
		return nil, &snapshotFault{field: "header", reason: fmt.Sprintf("header checksum mismatch (stored %s%08x, computed %s%08x): the file changed after keygate wrote it",
			checksumAlgo, stored, checksumAlgo, crc32.Checksum(body, castagnoli))}
	}
	var hdr snapshotHeader
	dec := json.NewDecoder(io.MultiReader(bytes.NewReader(body), strings.NewReader("}")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil {
		return nil, &snapshotFault{field: "header", reason: "invalid header: " + err.Error()}
	}
	if dec.InputOffset() != int64(len(body)+1) {
		return nil, &snapshotFault{field: "header", reason: "invalid header: data after its JSON object"}
	}
	if hdr.Format != stateFormat || hdr.Version != snapshotVersion || hdr.Keys < 0 {
		return nil, &snapshotFault{field: "header", reason: fmt.Sprintf("not a %s v%d header", stateFormat, snapshotVersion)}
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, head[:i+1])
	sr.off = int64(i + 1)
	if _, err := sr.r.Discard(i + 1); err != nil {
		return nil, &snapshotFault{field: "offset 0", reason: "read failed", err: err}
	}
	return &hdr, nil
}

// read fills b from the stream and folds it into the file's checksum.
func (sr *snapshotReader) read(b []byte) error {
	n, err := io.ReadFull(sr.r, b)
	sr.off += int64(n)
	sr.crc = crc32.Update(sr.crc, castagnoli, b[:n])
	return err
}

// cut explains a failed read at a frame's start at: the end of the file
// (a truncated snapshot: corruption, a rename never leaves one) or a read
// error.
func (sr *snapshotReader) cut(err error, at int64, truncated string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &snapshotFault{field: fmt.Sprintf("offset %d", at), reason: "truncated: " + truncated}
	}
	return &snapshotFault{field: fmt.Sprintf("offset %d", at), reason: "read failed", err: err}
}

// frameDecoder decodes frames' records (one per worker).
type frameDecoder struct {
	intern map[string]string
	// The previous key's creator and endpoints: keys next to each other
	// often share them, and a comparison is cheaper than a map lookup.
	createdBy string
	eps       []string
}

// frame decodes the n records of a frame's payload p (after its count),
// whose first key is the file's key first, checking their id order.
func (fd *frameDecoder) frame(p []byte, first, n int) ([]*keystore.Key, error) {
	keys := make([]*keystore.Key, 0, n)
	for i := first; i < first+n; i++ {
		l, c := binary.Uvarint(p)
		if c <= 0 || l < minKeyRecord || l > uint64(len(p)-c) {
			return nil, &snapshotFault{field: fmt.Sprintf("keys[%d]", i), reason: "record length out of range"}
		}
		k, err := fd.record(p[c : c+int(l)])
		if err != nil {
			return nil, &snapshotFault{field: fmt.Sprintf("keys[%d]", i), reason: "invalid key: " + err.Error()}
		}
		if len(keys) > 0 {
			if last := keys[len(keys)-1].ID; k.ID <= last {
				what := "not in id order"
				if k.ID == last {
					what = "duplicate key id " + k.ID
				}
				return nil, &snapshotFault{field: fmt.Sprintf("keys[%d].id", i), reason: what}
			}
		}
		keys = append(keys, k)
		p = p[c+int(l):]
	}
	if len(p) != 0 {
		return nil, &snapshotFault{field: fmt.Sprintf("keys[%d]", first+n), reason: "bytes after the frame's last record"}
	}
	return keys, nil
}

// recordDecoder reads the fields of one record; the first failure sticks.
type recordDecoder struct {
	p   []byte
	err error
}

func (d *recordDecoder) fail(field, reason string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %s", field, reason)
	}
}

func (d *recordDecoder) bytes(field string) []byte {
	if d.err != nil {
		return nil
	}
	l, c := binary.Uvarint(d.p)
	if c <= 0 || l > uint64(len(d.p)-c) {
		d.fail(field, "length out of range")
		return nil
	}
	b := d.p[c : c+int(l)]
	d.p = d.p[c+int(l):]
	return b
}

func (d *recordDecoder) fixed(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.p) < n {
		d.fail(field, "record ends early")
		return nil
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b
}

func (d *recordDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, c := binary.Uvarint(d.p)
	if c <= 0 {
		d.fail(field, "invalid number")
		return 0
	}
	d.p = d.p[c:]
	return v
}

func (d *recordDecoder) time(field string) time.Time {
	l := d.fixed(field, 1)
	if d.err != nil {
		return time.Time{}
	}
	b := d.fixed(field, int(l[0]))
	var t time.Time
	if d.err == nil {
		if err := t.UnmarshalBinary(b); err != nil {
			d.fail(field, err.Error())
		}
	}
	return t
}

// internString returns b as a string, shared with every other key of the
// snapshot holding the same bytes (service ids, creators, endpoints).
func (fd *frameDecoder) internString(b []byte) string {
	if s, ok := fd.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	fd.intern[s] = s
	return s
}

// record decodes one key record (all of p).
func (fd *frameDecoder) record(p []byte) (*keystore.Key, error) {
	d := &recordDecoder{p: p}
	id := d.bytes("id")
	service := d.bytes("service")
	name := d.bytes("name")
	createdBy := d.bytes("createdBy")
	hash := d.fixed("secretHash", 32)
	if d.err == nil && (!validKeyID(id) || len(service) == 0) {
		return nil, fmt.Errorf("key %q: invalid id or service", id)
	}
	k := &keystore.Key{CreatedAt: d.time("createdAt"), UpdatedAt: d.time("updatedAt"), Revision: d.uvarint("revision")}
	flags := d.fixed("contentApi.default", 1)
	mgmt := d.fixed("managementApi", 2)
	nInd := d.uvarint("contentApi.individual")
	if d.err != nil {
		return nil, d.err
	}
	if flags[0]&^contentMask != 0 {
		return nil, fmt.Errorf("contentApi.default: unknown permission bits %#x", flags[0])
	}
	m := binary.LittleEndian.Uint16(mgmt)
	if m&^managementMask != 0 {
		return nil, fmt.Errorf("managementApi: unknown permission bits %#x", m)
	}
	if nInd > uint64(len(d.p)/2) {
		return nil, fmt.Errorf("contentApi.individual: %d entries in %d bytes", nInd, len(d.p))
	}
	if nInd > 0 {
		ind := make(map[string]keystore.ContentPerms, nInd)
		var prev []byte
		for i := range nInd {
			ep := d.bytes("contentApi.individual")
			perm := d.fixed("contentApi.individual", 1)
			if d.err != nil {
				return nil, d.err
			}
			if i > 0 && bytes.Compare(ep, prev) <= 0 {
				return nil, fmt.Errorf("contentApi.individual: endpoint %q repeated or out of order", ep)
			}
			if perm[0]&^contentMask != 0 {
				return nil, fmt.Errorf("contentApi.individual.%s: unknown permission bits %#x", ep, perm[0])
			}
			var e string
			if int(i) < len(fd.eps) && fd.eps[i] == string(ep) {
				e = fd.eps[i]
			} else {
				e = fd.internString(ep)
				fd.eps = append(fd.eps[:i], e)
			}
			ind[e] = contentPerms(perm[0])
			prev = ep
		}
		k.ContentAPI.Individual = ind
	}
	if len(d.p) != 0 {
		return nil, fmt.Errorf("%d bytes after the record's last field", len(d.p))
	}
	k.ID = string(id)
	k.Service = fd.internString(service)
	k.Name = string(name)
	if fd.createdBy != string(createdBy) {
		fd.createdBy = fd.internString(createdBy)
	}
	k.CreatedBy = fd.createdBy
	k.ContentAPI.Default = contentPerms(flags[0])
	k.ManagementAPI = managementPerms(m)
	keystore.WithSecretHash(k, [32]byte(hash))
	return k, nil
}

// keySet is the keys of a state being loaded: the snapshot's, in id order,
// and the log's changes over them. It keeps no map of the snapshot's keys.
type keySet struct {
	base []*keystore.Key          // the snapshot's keys, strictly increasing ids
	over map[string]*keystore.Key // changes from the log: the key after it, nil when deleted
	n    int                      // keys in the set
}

func newKeySet(base []*keystore.Key) *keySet { return &keySet{base: base, n: len(base)} }

func (s *keySet) get(id string) *keystore.Key {
	if k, ok := s.over[id]; ok {
		return k
	}
	if i, ok := slices.BinarySearchFunc(s.base, id, func(k *keystore.Key, id string) int { return cmp.Compare(k.ID, id) }); ok {
		return s.base[i]
	}
	return nil
}

func (s *keySet) put(k *keystore.Key) {
	if s.get(k.ID) == nil {
		s.n++
	}
	if s.over == nil {
		s.over = map[string]*keystore.Key{}
	}
	s.over[k.ID] = k
}

func (s *keySet) del(id string) {
	if s.get(id) == nil {
		return
	}
	s.n--
	if s.over == nil {
		s.over = map[string]*keystore.Key{}
	}
	s.over[id] = nil
}

func (s *keySet) len() int { return s.n }

// sorted returns every key in id order (the snapshot's slice itself when
// the log changed nothing).
func (s *keySet) sorted() []*keystore.Key {
	if len(s.over) == 0 {
		return s.base
	}
	added := make([]*keystore.Key, 0, len(s.over))
	for _, k := range s.over {
		if k != nil {
			added = append(added, k)
		}
	}
	slices.SortFunc(added, func(a, b *keystore.Key) int { return strings.Compare(a.ID, b.ID) })
	out := make([]*keystore.Key, 0, s.n)
	i := 0
	for _, k := range s.base {
		if _, changed := s.over[k.ID]; changed {
			continue
		}
		for i < len(added) && added[i].ID < k.ID {
			out = append(out, added[i])
			i++
		}
		out = append(out, k)
	}
	return append(out, added[i:]...)
}
