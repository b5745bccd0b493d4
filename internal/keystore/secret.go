package keystore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// secretBytes is the entropy of a generated secret: 256 bits.
const secretBytes = 32

const hashPrefix = "sha256:"

// newSecret returns a fresh URL-safe secret and its SHA-256.
func newSecret() (string, [32]byte, error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [32]byte{}, fmt.Errorf("generate secret: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(b[:])
	return s, sha256.Sum256([]byte(s)), nil
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newKeyID returns "key_" and 16 random base32 characters (80 bits).
func newKeyID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate key id: %w", err)
	}
	return "key_" + idEncoding.EncodeToString(b[:]), nil
}

// parseHashOrPlain accepts "sha256:<64 hex>" or a plain secret/token, which
// is hashed. A value that starts with "sha256:" but is not a valid hash is an
// error rather than a plain secret, so a typo never becomes a working secret.
func parseHashOrPlain(v string) ([32]byte, error) {
	var h [32]byte
	if v == "" {
		return h, errors.New("must not be empty")
	}
	if rest, ok := strings.CutPrefix(v, hashPrefix); ok {
		if len(rest) != 64 {
			return h, fmt.Errorf("sha256 hash must be 64 hex digits, got %d characters", len(rest))
		}
		if _, err := hex.Decode(h[:], []byte(rest)); err != nil {
			return h, fmt.Errorf("sha256 hash: %w", err)
		}
		return h, nil
	}
	return sha256.Sum256([]byte(v)), nil
}

// formatHash renders a hash the way data/ and the state file spell it.
func formatHash(h [32]byte) string { return hashPrefix + hex.EncodeToString(h[:]) }
