// Package text holds the two rules keygate applies to text it passes on
// from a client or a policy: how it is cut to a bound, and what a code
// (a stable, metric-friendly token) may be. The HTTP server, the decision
// core, the strict JSON scanner and the key store all answer with such
// text; one definition keeps them cutting and refusing alike. It imports
// nothing of keygate, so every package can use it.
package text

import "unicode/utf8"

// Bounds on what a policy may put in an answer. A message travels in
// X-Keygate-Message as well as in the body, and a proxy's buffer for the
// upstream's headers is small (nginx: 4–8 KiB, then it answers 502); a code
// is a metric-friendly token.
const (
	MaxMessageBytes = 512
	MaxCodeBytes    = 64
)

// MaxEcho bounds client text echoed in an answer: a field name, a path.
const MaxEcho = 100

// Bounded returns s when it is at most limit bytes; else its longest prefix
// that ends on a rune boundary and, with "…" appended, is at most limit
// bytes (a new string: it never shares s's memory). Text from a client or
// a policy, cut where it is written: a log line, an answer, a message.
func Bounded(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const ellipsis = "…"
	cut := max(limit-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// IsCode reports whether s is a usable code: a token of at most
// MaxCodeBytes letters, digits, '_', '-' and '.'.
func IsCode(s string) bool {
	if s == "" || len(s) > MaxCodeBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			continue
		}
		return false
	}
	return true
}
