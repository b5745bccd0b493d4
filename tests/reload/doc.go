// Package reload holds end-to-end tests of hot reload: they build and start
// the real keygate binary on a free port over a private copy of policies/
// and data/, edit that copy while the server runs, and watch the outcome
// through HTTP only (/v1/decide, /health, /v1/policies, /metrics and
// POST /v1/policies/reload).
//
// Run them with `go test -race ./tests/reload/` (add -v for the timing
// figures they log).
package reload
