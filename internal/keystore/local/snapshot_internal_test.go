package local

import (
	"crypto/sha256"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// TestSnapshotBitFlips: every one-bit flip anywhere in a snapshot is
// refused: the checksum covers every byte before it,
// and the trailer that holds it must match exactly. Each of the file's bits
// is flipped in turn. (Field names matter too: encoding/json would match a
// flipped "Seq" case-insensitively.)
func TestSnapshotBitFlips(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	keys := []*keystore.Key{
		{ID: "k-read", Service: "team-demo", Name: "web", CreatedBy: "team-demo-admin", CreatedAt: at, UpdatedAt: at, Revision: 1,
			ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}, Individual: map[string]keystore.ContentPerms{"contact": {Post: true}}}},
		{ID: "k-media", Service: "business-demo", Name: "media", CreatedBy: "seed", CreatedAt: at, UpdatedAt: at, Revision: 4,
			ManagementAPI: keystore.ManagementPerms{GetMedia: true}},
	}
	keystore.WithSecretHash(keys[0], sha256.Sum256([]byte("secret-1")))
	keystore.WithSecretHash(keys[1], sha256.Sum256([]byte("secret-2")))
	data, err := encodeSnapshot(7, slices.Clone(keys))
	if err != nil {
		t.Fatal(err)
	}
	j := newJournal(nil, "/state/state.json", 10, slog.New(slog.DiscardHandler))
	seq, want, err := j.decodeSnapshot(data)
	if err != nil || seq != 7 || len(want) != 2 {
		t.Fatalf("intact snapshot: seq %d, %d keys, %v", seq, len(want), err)
	}
	for i := range data {
		for bit := range 8 {
			flipped := slices.Clone(data)
			flipped[i] ^= 1 << bit
			gotSeq, got, err := j.decodeSnapshot(flipped)
			if err == nil {
				same := gotSeq == seq && reflect.DeepEqual(got, want)
				t.Fatalf("bit %d of byte %d (%q in %q) is accepted (loads the same state: %v)",
					bit, i, data[i], data[max(0, i-20):min(len(data), i+20)], same)
			}
		}
	}
	t.Logf("%d one-bit flips of a %d-byte snapshot, every one refused", 8*len(data), len(data))
}
