package cachescope

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// TestTouchMovesOnlyItsScope: each touch moves the stamps of the questions
// it can change and no others, and a moved stamp never returns to an
// earlier value.
func TestTouchMovesOnlyItsScope(t *testing.T) {
	h1, h2 := sha256.Sum256([]byte("secret-1")), sha256.Sum256([]byte("secret-2"))
	if l := New(); l.secretSlot(&h1) == l.secretSlot(&h2) {
		t.Fatal("the two test secrets share a slot: pick others")
	}
	for _, tc := range []struct {
		name       string
		touch      func(l *Ledger)
		a1, a2, b1 bool // stamps of (svc-a, h1), (svc-a, h2), (svc-b, h1) that must move
	}{
		{"service a", func(l *Ledger) { l.TouchService("svc-a") }, true, true, false},
		{"secret 1", func(l *Ledger) { l.TouchSecret(h1) }, true, false, true},
		{"everything", func(l *Ledger) { l.TouchAll() }, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New()
			// The other service is one whose slot differs from svc-a's
			// under this ledger's seed (two names share one rarely).
			b := "svc-b"
			for i := 0; l.serviceSlot(b) == l.serviceSlot("svc-a"); i++ {
				b = fmt.Sprintf("svc-b%d", i)
			}
			before := []Stamp{l.Stamp("svc-a", &h1), l.Stamp("svc-a", &h2), l.Stamp(b, &h1)}
			tc.touch(l)
			after := []Stamp{l.Stamp("svc-a", &h1), l.Stamp("svc-a", &h2), l.Stamp(b, &h1)}
			for i, want := range []bool{tc.a1, tc.a2, tc.b1} {
				if moved := before[i] != after[i]; moved != want {
					t.Errorf("stamp %d moved=%v, want %v (%+v -> %+v)", i, moved, want, before[i], after[i])
				}
			}
		})
	}
	t.Run("no value repeats", func(t *testing.T) {
		l := New()
		seen := map[Stamp]bool{l.Stamp("svc-a", &h1): true}
		for i := range 100 {
			switch i % 3 {
			case 0:
				l.TouchService("svc-a")
			case 1:
				l.TouchSecret(h1)
			case 2:
				l.TouchAll()
			}
			st := l.Stamp("svc-a", &h1)
			if seen[st] {
				t.Fatalf("stamp %+v seen before", st)
			}
			seen[st] = true
		}
	})
	t.Run("no secret", func(t *testing.T) {
		l := New()
		before := l.Stamp("svc-a", nil)
		l.TouchSecret(h1)
		if l.Stamp("svc-a", nil) != before {
			t.Error("a secret touch moved the stamp of a question without a secret")
		}
	})
}
