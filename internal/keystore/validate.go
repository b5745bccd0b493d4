package keystore

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Structural limits on a key configuration. They are resource and hygiene
// limits, not domain rules: what a key may grant is the policy's business.
const (
	maxNameBytes     = 200
	maxIndividual    = 1000
	maxEndpointBytes = 64
)

var (
	// serviceIDPattern is a DNS label: forward-auth derives the service from
	// the first label of the host name.
	serviceIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// idPattern is for member and key ids.
	idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	// rolePattern accepts any lower-case role name; see loadMembers.
	rolePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	// planPattern is the shape of a plan name; which plans exist is policy data.
	planPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	// endpointPattern is a microCMS endpoint: lower case, as the route
	// grammar (internal/route) matches it. An individual entry for
	// "Contact" could never match a request, so it is refused, not kept.
	endpointPattern = regexp.MustCompile(`^[a-z0-9_-]+$`)
)

// checkSpec validates the shape of a key configuration and returns the
// offending field and reason.
func checkSpec(s *KeySpec) (field, reason string, ok bool) {
	if len(s.Name) > maxNameBytes {
		return "name", fmt.Sprintf("longer than %d bytes", maxNameBytes), false
	}
	if !utf8.ValidString(s.Name) {
		return "name", "not valid UTF-8", false
	}
	if i := strings.IndexFunc(s.Name, unprintable); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s.Name[i:])
		return "name", fmt.Sprintf("contains the control or bidirectional formatting character %U", r), false
	}
	if len(s.ContentAPI.Individual) > maxIndividual {
		return "contentApi.individual", fmt.Sprintf("more than %d endpoints", maxIndividual), false
	}
	for ep := range s.ContentAPI.Individual {
		if len(ep) > maxEndpointBytes || !endpointPattern.MatchString(ep) {
			return "contentApi.individual." + ep, fmt.Sprintf("endpoint name must be 1-%d characters of a-z 0-9 _ - (microCMS endpoints are lower case)", maxEndpointBytes), false
		}
	}
	return "", "", true
}

// specError turns a failed checkSpec into the 400 answer of a key write.
func specError(field, reason string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidKeySpec, Message: field + ": " + reason}
}

// unprintable reports a character a key name must not carry: a control
// character (C0, DEL, C1: a newline or an escape sequence in a name reaches
// terminals and text logs as such) or a bidirectional formatting character
// (U+202A-U+202E, U+2066-U+2069), with which a name displays as another.
func unprintable(r rune) bool {
	return unicode.IsControl(r) || r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}
