package local

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// formatKeys are keys covering every field of a record: each permission
// flag alone, individual entries, times in UTC, in a fixed zone and with
// nanoseconds, empty and non-ASCII names.
func formatKeys() []*keystore.Key {
	at := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	tokyo := time.Date(2024, 2, 29, 23, 59, 59, 0, time.FixedZone("", 9*3600))
	var keys []*keystore.Key
	add := func(k keystore.Key) {
		k.Service = cmpOr(k.Service, "team-demo")
		k.CreatedAt, k.UpdatedAt = cmpOrTime(k.CreatedAt, at), cmpOrTime(k.UpdatedAt, at)
		keystore.WithSecretHash(&k, sha256.Sum256([]byte(k.ID)))
		keys = append(keys, &k)
	}
	perms := []keystore.ContentPerms{{Get: true}, {GetAllDrafts: true}, {GetAllClosed: true}, {Post: true}, {Put: true}, {Patch: true}, {Delete: true}}
	for i, p := range perms {
		add(keystore.Key{ID: fmt.Sprintf("c%d", i), Name: "content", ContentAPI: keystore.ContentAPI{Default: p}, Revision: uint64(i)})
	}
	mgmt := []keystore.ManagementPerms{{GetContents: true}, {PatchContentCreatedBy: true}, {PatchContentStatus: true}, {GetMedia: true},
		{PostMedia: true}, {DeleteMedia: true}, {GetMembers: true}, {GetApis: true}, {GetService: true}}
	for i, m := range mgmt {
		add(keystore.Key{ID: fmt.Sprintf("m%d", i), Name: "mgmt", ManagementAPI: m, Revision: 1 << (7 * i)})
	}
	add(keystore.Key{ID: "ind", Name: "ブログ読み取り", CreatedBy: "team-demo-admin", CreatedAt: tokyo, UpdatedAt: tokyo.Add(time.Hour),
		ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}, Individual: map[string]keystore.ContentPerms{
			"blogs": {Get: true, GetAllDrafts: true}, "news": {}, "contact": {Post: true, Delete: true}}}})
	add(keystore.Key{ID: "Z.empty_-", Service: "business-demo", CreatedAt: time.Time{}, Revision: ^uint64(0)})
	return keys
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func cmpOrTime(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

func decodeV4(t *testing.T, data []byte) (uint64, []*keystore.Key, error) {
	t.Helper()
	return readSnapshot(bufio.NewReader(bytes.NewReader(data)))
}

// TestSnapshotRoundTrip: every field of every key comes back as written,
// and as the format-3 (JSON) snapshot of the same keys gives it back.
func TestSnapshotRoundTrip(t *testing.T) {
	keys := formatKeys()
	data, err := encodeSnapshot(42, slices.Clone(keys))
	if err != nil {
		t.Fatal(err)
	}
	seq, got, err := decodeV4(t, data)
	if err != nil || seq != 42 {
		t.Fatalf("decode: seq %d, %v", seq, err)
	}
	want := slices.Clone(keys)
	want = sortedByID(want)
	for i := range want { // what DecodeKeyRecord makes of an empty individual map
		if len(want[i].ContentAPI.Individual) == 0 {
			want[i].ContentAPI.Individual = nil
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(*got[i], *want[i]) || keystore.SecretHash(got[i]) != keystore.SecretHash(want[i]) {
			t.Errorf("key %d:\n got %+v\nwant %+v", i, *got[i], *want[i])
		}
	}
	v3, err := encodeSnapshotV3(42, slices.Clone(keys))
	if err != nil {
		t.Fatal(err)
	}
	j := newJournal(nil, "/state/state.json", 10, slog.New(slog.DiscardHandler))
	seq3, fromJSON, err := j.decodeSnapshot(v3)
	if err != nil || seq3 != 42 {
		t.Fatalf("format 3: seq %d, %v", seq3, err)
	}
	for i := range fromJSON {
		a, b := *fromJSON[i], *got[i]
		if a.ID != b.ID || !a.CreatedAt.Equal(b.CreatedAt) || !a.UpdatedAt.Equal(b.UpdatedAt) {
			t.Errorf("key %d differs between the formats: %+v / %+v", i, a, b)
		}
		a.CreatedAt, a.UpdatedAt, b.CreatedAt, b.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(a, b) || keystore.SecretHash(&a) != keystore.SecretHash(&b) {
			t.Errorf("key %d differs between the formats:\n%+v\n%+v", i, a, b)
		}
	}
	// The encoding is a function of the keys: the same set in another order
	// gives the same bytes (the resumed format-2 upgrade compares bytes).
	shuffled := slices.Clone(keys)
	slices.Reverse(shuffled)
	order := slices.Clone(shuffled)
	if again, _ := encodeSnapshot(42, shuffled); !bytes.Equal(again, data) {
		t.Error("encoding depends on the order of the keys")
	}
	if !slices.Equal(order, shuffled) {
		t.Error("encoding reordered the caller's slice (the index may hold it)")
	}
}

// TestValidKeyIDMatchesKeystore: the decoder's id check accepts exactly
// what keystore.DecodeKeyRecord accepts.
func TestValidKeyIDMatchesKeystore(t *testing.T) {
	h := sha256.Sum256(nil)
	ids := []string{"", "a", "A", "0", "_a", ".a", "-a", "a_", "a.b-c_d", "a b", "a/b", "ä", "a\x00", strings.Repeat("a", 128), strings.Repeat("a", 129), "key_1drv8bnepdv7b8v1"}
	for c := range 256 {
		ids = append(ids, string([]byte{'a', byte(c)}), string([]byte{byte(c)}))
	}
	for _, id := range ids {
		k := keystore.Key{ID: id, Service: "s"}
		keystore.WithSecretHash(&k, h)
		_, err := keystore.DecodeKeyRecord(keystore.NewKeyRecord(&k))
		if got, want := validKeyID(id), err == nil; got != want {
			t.Errorf("validKeyID(%q) = %v, DecodeKeyRecord accepts it: %v", id, got, want)
		}
	}
}

// snapshotOf builds a format-4 snapshot around raw key records, with every
// checksum right: what a decoder sees from a keygate with a bug, or from a
// forger who computes checksums.
func snapshotOf(seq uint64, count int, frames ...[][]byte) []byte {
	head := fmt.Appendf(nil, `{"format":"keygate-state","version":4,"seq":%d,"keys":%d`, seq, count)
	out := fmt.Appendf(head, "%s%08x\"}\n", trailerHead, crc32.Checksum(head, castagnoli))
	for _, recs := range frames {
		p := binary.AppendUvarint(nil, uint64(len(recs)))
		for _, r := range recs {
			p = binary.AppendUvarint(p, uint64(len(r)))
			p = append(p, r...)
		}
		out = append(out, frame(p)...)
	}
	var end [frameHeader]byte
	binary.LittleEndian.PutUint32(end[0:4], snapshotEnd)
	binary.LittleEndian.PutUint32(end[4:8], crc32.Checksum(out, castagnoli))
	binary.LittleEndian.PutUint32(end[8:12], crc32.Checksum(end[0:8], castagnoli))
	return append(out, end[:]...)
}

// rec is a key record of id with edit applied to its encoding's fields.
func rec(t *testing.T, id string, edit func(*keystore.Key)) []byte {
	t.Helper()
	k := &keystore.Key{ID: id, Service: "team-demo", Name: "n", CreatedAt: time.Unix(1, 0).UTC(), UpdatedAt: time.Unix(2, 0).UTC(), Revision: 1}
	keystore.WithSecretHash(k, sha256.Sum256([]byte(id)))
	if edit != nil {
		edit(k)
	}
	b, _, err := appendKeyRecord(nil, nil, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawRec is a key record written field by field, bypassing the encoder's
// own checks.
func rawRec(id, service string, flags byte, mgmt uint16, individual ...string) []byte {
	var b []byte
	for _, s := range []string{id, service, "n", "seed"} {
		b = appendString(b, s)
	}
	h := sha256.Sum256([]byte(id))
	b = append(b, h[:]...)
	b, _ = appendTime(b, time.Unix(1, 0).UTC())
	b, _ = appendTime(b, time.Unix(2, 0).UTC())
	b = binary.AppendUvarint(b, 1)
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint16(b, mgmt)
	b = binary.AppendUvarint(b, uint64(len(individual)))
	for _, ep := range individual {
		b = appendString(b, ep)
		b = append(b, 1)
	}
	return b
}

// TestSnapshotDecodeStrict: a snapshot whose checksums all hold but whose
// content keygate never writes is refused, naming the key and the reason.
func TestSnapshotDecodeStrict(t *testing.T) {
	ok := rec(t, "a", nil)
	for _, tc := range []struct {
		note  string
		data  []byte
		field string
		says  string
	}{
		{"valid", snapshotOf(1, 2, [][]byte{ok, rec(t, "b", nil)}), "", ""},
		{"valid, two frames", snapshotOf(1, 2, [][]byte{ok}, [][]byte{rec(t, "b", nil)}), "", ""},
		{"duplicate id", snapshotOf(1, 2, [][]byte{ok, ok}), "keys[1].id", "duplicate key id a"},
		{"duplicate id across frames", snapshotOf(1, 2, [][]byte{ok}, [][]byte{ok}), "keys[1].id", "duplicate key id a"},
		{"ids out of order", snapshotOf(1, 2, [][]byte{rec(t, "b", nil), ok}), "keys[1].id", "not in id order"},
		{"invalid id", snapshotOf(1, 1, [][]byte{rawRec("a b", "team-demo", 0, 0)}), "keys[0]", "invalid id or service"},
		{"empty service", snapshotOf(1, 1, [][]byte{rawRec("a", "", 0, 0)}), "keys[0]", "invalid id or service"},
		{"unknown content bit", snapshotOf(1, 1, [][]byte{rawRec("a", "s", 0x80, 0)}), "keys[0]", "contentApi.default: unknown permission bits 0x80"},
		{"unknown management bit", snapshotOf(1, 1, [][]byte{rawRec("a", "s", 0, 0x200)}), "keys[0]", "managementApi: unknown permission bits 0x200"},
		{"endpoint repeated", snapshotOf(1, 1, [][]byte{rawRec("a", "s", 0, 0, "blogs", "blogs")}), "keys[0]", `endpoint "blogs" repeated or out of order`},
		{"endpoints out of order", snapshotOf(1, 1, [][]byte{rawRec("a", "s", 0, 0, "news", "blogs")}), "keys[0]", "repeated or out of order"},
		{"bytes after the record's fields", snapshotOf(1, 1, [][]byte{append(rawRec("a", "s", 0, 0), 0)}), "keys[0]", "1 bytes after the record's last field"},
		{"record cut short", snapshotOf(1, 1, [][]byte{rawRec("a", "s", 0, 0)[:76]}), "keys[0]", "contentApi.default: record ends early"},
		{"record shorter than any key", snapshotOf(1, 1, [][]byte{rawRec("a", "s", 0, 0)[:70]}), "keys[0]", "frame record count out of range"},
		{"string length past the record", snapshotOf(1, 1, [][]byte{append([]byte{0x7f}, rawRec("a", "s", 0, 0)[1:]...)}), "keys[0]", "id: length out of range"},
		{"fewer keys than the header says", snapshotOf(1, 3, [][]byte{ok}), "", "the header announces 3 keys, the file holds 1"},
		{"more keys than the header says", snapshotOf(1, 1, [][]byte{ok, rec(t, "b", nil)}), "keys[1]", "more keys than the 1 the header announces"},
		{"unknown version", bytes.Replace(snapshotOf(1, 1, [][]byte{ok}), []byte(`"version":4`), []byte(`"version":5`), 1), "version", "state format version 5 is not read by this keygate"},
		{"unknown header field", func() []byte {
			head := []byte(`{"format":"keygate-state","version":4,"seq":1,"keys":0,"extra":1`)
			out := fmt.Appendf(head, "%s%08x\"}\n", trailerHead, crc32.Checksum(head, castagnoli))
			var end [frameHeader]byte
			binary.LittleEndian.PutUint32(end[0:4], snapshotEnd)
			binary.LittleEndian.PutUint32(end[4:8], crc32.Checksum(out, castagnoli))
			binary.LittleEndian.PutUint32(end[8:12], crc32.Checksum(end[0:8], castagnoli))
			return append(out, end[:]...)
		}(), "header", `unknown field "extra"`},
	} {
		t.Run(tc.note, func(t *testing.T) {
			j := newJournal(nil, "/state/state.json", 10, slog.New(slog.DiscardHandler))
			_, keys, err := j.decodeSnapshot(tc.data)
			if tc.says == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var de *keystore.DataError
			if !asDataError(err, &de) || de.File != "/state/state.json" || (tc.field != "" && de.Field != tc.field) ||
				!strings.Contains(de.Reason, tc.says) || !strings.Contains(de.Reason, "restore state.json and state.json.log together") {
				t.Fatalf("got %v (%d keys); want a refusal of state.json at %q saying %q and what to do", err, len(keys), tc.field, tc.says)
			}
		})
	}
}

// TestSnapshotEncodeRefusesWhatDecodeRefuses: a key set the decoder would
// refuse is never written (compaction fails instead of leaving a snapshot
// the next start cannot read).
func TestSnapshotEncodeRefusesWhatDecodeRefuses(t *testing.T) {
	k := func(id, service string) *keystore.Key { return &keystore.Key{ID: id, Service: service} }
	for _, keys := range [][]*keystore.Key{
		{k("a", "s"), k("a", "s")},
		{k("a b", "s")},
		{k("a", "")},
	} {
		if _, err := encodeSnapshot(1, keys); err == nil {
			t.Errorf("encoded %v", keys)
		}
	}
}

func asDataError(err error, de **keystore.DataError) bool { return errors.As(err, de) }

// TestV3SnapshotRewrittenAtOpen: a format-3 snapshot beside an empty log
// (what the earlier keygate leaves after a clean stop) opens with the same
// keys, and Open's compaction rewrites it in format 4 at the same seq; the
// start after that reads format 4 and rewrites nothing.
func TestV3SnapshotRewrittenAtOpen(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	statePath := filepath.Join(t.TempDir(), "state", "state.json")
	opts := v2Options(statePath, &logs, &mu)
	s, err := openTest(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	j := newJournal(nil, statePath, 10, slog.New(slog.DiscardHandler))
	seq, keys, err := j.decodeSnapshot(v2Read(t, statePath))
	if err != nil || len(keys) == 0 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	v3, err := encodeSnapshotV3(seq+5, slices.Clone(keys))
	if err != nil {
		t.Fatal(err)
	}
	v2Write(t, statePath, v3)
	v2Write(t, statePath+".log", encodeLogHeader(seq+5))

	s, err = openTest(t.Context(), opts)
	if err != nil {
		t.Fatalf("format-3 state refused: %v", err)
	}
	if _, ok := s.KeyBySecret("team-demo-read-key"); !ok {
		t.Error("seed key missing after opening format 3")
	}
	s.Close()
	snap := v2Read(t, statePath)
	gotSeq, got, err := j.decodeSnapshot(snap)
	if err != nil || !isSnapshotV4Head(snap) || gotSeq != seq+5 || !reflect.DeepEqual(got, keys) {
		t.Fatalf("after Open: format 4 %v, seq %d (want %d), %d keys (want %d), %v", isSnapshotV4Head(snap), gotSeq, seq+5, len(got), len(keys), err)
	}
	fi, err := os.Stat(statePath)
	if err != nil {
		t.Fatal(err)
	}
	s, err = openTest(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi2, err := os.Stat(statePath); err != nil || !os.SameFile(fi, fi2) {
		t.Error("a start with nothing to fold in rewrote the format-4 snapshot")
	}
}

// TestKeySet: the log's puts and deletes over the snapshot's sorted keys
// give the same set, in id order, as a map would.
func TestKeySet(t *testing.T) {
	key := func(id string, rev uint64) *keystore.Key { return &keystore.Key{ID: id, Revision: rev} }
	type op struct {
		del bool
		id  string
		rev uint64
	}
	for _, tc := range []struct {
		note string
		base []string
		ops  []op
		want []string // id@revision
	}{
		{"nothing changed", []string{"b", "d"}, nil, []string{"b@0", "d@0"}},
		{"puts before, between, after, over", []string{"b", "d"}, []op{{id: "a", rev: 1}, {id: "c", rev: 1}, {id: "e", rev: 1}, {id: "d", rev: 2}},
			[]string{"a@1", "b@0", "c@1", "d@2", "e@1"}},
		{"deletes, of a base key and of a put one", []string{"b", "d"}, []op{{id: "c", rev: 1}, {del: true, id: "c"}, {del: true, id: "b"}, {del: true, id: "x"}},
			[]string{"d@0"}},
		{"delete then put again", []string{"b"}, []op{{del: true, id: "b"}, {id: "b", rev: 3}}, []string{"b@3"}},
		{"empty snapshot", nil, []op{{id: "z", rev: 1}, {id: "a", rev: 1}}, []string{"a@1", "z@1"}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			var base []*keystore.Key
			for _, id := range tc.base {
				base = append(base, key(id, 0))
			}
			s := newKeySet(base)
			for _, o := range tc.ops {
				if o.del {
					s.del(o.id)
				} else {
					s.put(key(o.id, o.rev))
				}
			}
			var got []string
			for _, k := range s.sorted() {
				got = append(got, fmt.Sprintf("%s@%d", k.ID, k.Revision))
			}
			if !slices.Equal(got, tc.want) || s.len() != len(tc.want) {
				t.Errorf("sorted %v (len %d), want %v", got, s.len(), tc.want)
			}
			for _, w := range tc.want {
				if s.get(strings.Split(w, "@")[0]) == nil {
					t.Errorf("get(%s) = nil", w)
				}
			}
		})
	}
}

// TestSnapshotSplicedFrame: a frame taken from another snapshot (its own
// checksums right, the same key ids, another secret hash) is refused by
// the end frame's checksum of the whole file, the one check it passes none
// of the others would catch.
func TestSnapshotSplicedFrame(t *testing.T) {
	keys := func(secret string) []*keystore.Key {
		var out []*keystore.Key
		for i := range 3 {
			k := &keystore.Key{ID: fmt.Sprintf("k%d", i), Service: "team-demo"}
			keystore.WithSecretHash(k, sha256.Sum256([]byte(secret+k.ID)))
			out = append(out, k)
		}
		return out
	}
	a, err := encodeSnapshot(1, keys("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := encodeSnapshot(1, keys("b"))
	if err != nil {
		t.Fatal(err)
	}
	// One frame each, same header, same length: splice b's frame into a.
	head := bytes.IndexByte(a, '\n') + 1
	if len(a) != len(b) || !bytes.Equal(a[:head], b[:head]) {
		t.Fatal("the two snapshots differ outside their frame")
	}
	spliced := slices.Concat(a[:head], b[head:len(b)-frameHeader], a[len(a)-frameHeader:])
	j := newJournal(nil, "/state/state.json", 10, slog.New(slog.DiscardHandler))
	_, _, err = j.decodeSnapshot(spliced)
	var de *keystore.DataError
	if !errors.As(err, &de) || de.Field != "checksum" || !strings.Contains(de.Reason, "snapshot checksum mismatch") {
		t.Fatalf("spliced frame: %v; want the file checksum refusal", err)
	}
}
