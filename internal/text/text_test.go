package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBounded(t *testing.T) {
	for _, tc := range []struct {
		note  string
		s     string
		limit int
		want  string
	}{
		{"within the bound", "abc", 3, "abc"},
		{"empty", "", 0, ""},
		{"cut with an ellipsis", "abcdefgh", 6, "abc…"},
		{"cut on a rune boundary", "ééééé", 7, "éé…"},
		{"a bound below the ellipsis", "abcdef", 2, "…"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got := Bounded(tc.s, tc.limit)
			if got != tc.want {
				t.Fatalf("Bounded(%q, %d) = %q, want %q", tc.s, tc.limit, got, tc.want)
			}
			if len(tc.s) > tc.limit && (len(got) > max(tc.limit, len("…")) || !utf8.ValidString(got)) {
				t.Fatalf("Bounded(%q, %d) = %q: over the bound or not UTF-8", tc.s, tc.limit, got)
			}
		})
	}
}

func TestIsCode(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"denied", true},
		{"plan_limit-2.v1", true},
		{"", false},
		{"with space", false},
		{"ünicode", false},
		{"semi;colon", false},
		{strings.Repeat("a", MaxCodeBytes), true},
		{strings.Repeat("a", MaxCodeBytes+1), false},
	} {
		if got := IsCode(tc.s); got != tc.want {
			t.Errorf("IsCode(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
