package keystore_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// brokenAuthz answers like the fake authorizer until told to misbehave, so
// that the store opens (seed keys are checked through the authorizer) and
// then sees only the broken answer.
type brokenAuthz struct {
	fake keystore.Authorizer

	mu     sync.Mutex
	broken bool
	answer keystore.KeyDecision
	err    error
	hang   bool
}

func (a *brokenAuthz) misbehave(answer keystore.KeyDecision, err error, hang bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.broken, a.answer, a.err, a.hang = true, answer, err, hang
}

func (a *brokenAuthz) AuthorizeKeys(ctx context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	a.mu.Lock()
	broken, answer, err, hang := a.broken, a.answer, a.err, a.hang
	a.mu.Unlock()
	switch {
	case !broken:
		return a.fake.AuthorizeKeys(ctx, req)
	case hang:
		// An evaluation that never ends on its own: only the caller's
		// deadline stops it.
		<-ctx.Done()
		return keystore.KeyDecision{}, ctx.Err()
	}
	return answer, err
}

// TestMisbehavingAuthorizer: whatever the keys policy answers, a malformed
// answer is a refusal with a 4xx/5xx status, a stable code and a bounded
// message, and nothing is written.
func TestMisbehavingAuthorizer(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	allow := func(status int) keystore.KeyDecision {
		return keystore.KeyDecision{Allow: true, Status: status, Code: "allowed"}
	}
	deny := func(status int, code, msg string) keystore.KeyDecision {
		return keystore.KeyDecision{Status: status, Code: code, Message: msg}
	}
	for _, tc := range []struct {
		note   string
		answer keystore.KeyDecision
		err    error
		hang   bool
		status int
		code   string
	}{
		{note: "allow with status 500", answer: allow(500), status: 500, code: keystore.CodeAuthorizerFailed},
		{note: "allow with status 403", answer: allow(403), status: 500, code: keystore.CodeAuthorizerFailed},
		{note: "allow with status 201", answer: allow(201), status: 500, code: keystore.CodeAuthorizerFailed},
		{note: "allow with status 999", answer: allow(999), status: 500, code: keystore.CodeAuthorizerFailed},
		{note: "deny with status 200", answer: deny(200, "allowed", "OK"), status: 403, code: keystore.CodeForbidden},
		{note: "deny with status 0", answer: deny(0, "", ""), status: 403, code: keystore.CodeForbidden},
		{note: "deny with status 302", answer: deny(302, "moved", "elsewhere"), status: 403, code: keystore.CodeForbidden},
		{note: "deny with status 999", answer: deny(999, "weird", "weird"), status: 403, code: keystore.CodeForbidden},
		{note: "deny with status -1", answer: deny(-1, "weird", "weird"), status: 403, code: keystore.CodeForbidden},
		{note: "deny without code", answer: deny(409, "", "full"), status: 409, code: keystore.CodeForbidden},
		{note: "deny with a huge code", answer: deny(403, huge, "no"), status: 403, code: keystore.CodeForbidden},
		{note: "deny with a code that is no token", answer: deny(403, "bad code\r\nX-Injected: 1", "no"), status: 403, code: keystore.CodeForbidden},
		{note: "deny with a huge message", answer: deny(403, "forbidden", huge), status: 403, code: keystore.CodeForbidden},
		{note: "deny keeps a well-formed answer", answer: deny(409, "key_limit_exceeded", "full"), status: 409, code: "key_limit_exceeded"},
		{note: "undefined decision", err: errors.New("decision is undefined"), status: 500, code: keystore.CodeAuthorizerFailed},
		{note: "evaluation past the deadline", hang: true, status: 500, code: keystore.CodeAuthorizerFailed},
	} {
		t.Run(tc.note, func(t *testing.T) {
			authz := &brokenAuthz{fake: newFixtureAuthz()}
			f := newFixture(t, func(o *storeOpts) { o.Authorizer = authz })
			before := f.store.KeyCounts()["team-demo"]
			authz.misbehave(tc.answer, tc.err, tc.hang)

			// A hanging authorizer is stopped by the request's deadline.
			ctx := func() context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			}
			start := time.Now()
			_, err := f.store.CreateKey(ctx(), teamAdmin, "team-demo", readSpec())
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("refusal took %s", took)
			}
			ke := authzRefusal(t, err, tc.status, tc.code)
			if len(ke.Message) > 512 || ke.Message == "" {
				t.Errorf("message of %d bytes, want 1..512", len(ke.Message))
			}
			if got := f.store.KeyCounts()["team-demo"]; got != before {
				t.Errorf("keys %d after a refused create, want %d", got, before)
			}
			// Every other action is refused the same way.
			_, err = f.store.ListKeys(ctx(), teamAdmin, "team-demo")
			authzRefusal(t, err, tc.status, tc.code)
			err = f.store.DeleteKey(ctx(), teamAdmin, "team-demo", demoKeyID)
			authzRefusal(t, err, tc.status, tc.code)
			if _, ok := f.store.KeyBySecret(demoSecret); !ok {
				t.Error("a refused delete removed the key")
			}
		})
	}
}

// refusal asserts that err is a *keystore.Error with status and code
// (printing at most 80 bytes of a policy's code or message).
func authzRefusal(t *testing.T, err error, status int, code string) *keystore.Error {
	t.Helper()
	var ke *keystore.Error
	if !errors.As(err, &ke) {
		t.Fatalf("error %.200v, want a refusal %d %s", err, status, code)
	}
	if ke.Status != status || ke.Code != code {
		t.Fatalf("got %d %.80q (%.80q), want %d %s", ke.Status, ke.Code, ke.Message, status, code)
	}
	return ke
}

// TestDenyKeepsPolicyMessage: a well-formed message passes unchanged; a
// long one is cut on a rune boundary.
func TestDenyKeepsPolicyMessage(t *testing.T) {
	for _, tc := range []struct {
		note, msg, want string
	}{
		{"short", "The hobby plan allows 1 API keys.", "The hobby plan allows 1 API keys."},
		{"multibyte at the cut", strings.Repeat("é", 400), strings.Repeat("é", 254) + "…"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			authz := &brokenAuthz{fake: newFixtureAuthz()}
			f := newFixture(t, func(o *storeOpts) { o.Authorizer = authz })
			authz.misbehave(keystore.KeyDecision{Status: http.StatusConflict, Code: "key_limit_exceeded", Message: tc.msg}, nil, false)
			_, err := f.store.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec())
			var ke *keystore.Error
			if !errors.As(err, &ke) || ke.Message != tc.want {
				t.Fatalf("message %.600q, want %.600q", ke.Message, tc.want)
			}
		})
	}
}
