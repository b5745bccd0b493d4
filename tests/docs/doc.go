// Package docs runs the shell examples of README.md and docs/*.md against the real keygate, so an
// example that stops working fails the tests.
//
// Every fenced block whose info string starts with "sh" runs, unless it says "norun" (an
// illustration with placeholders, or a command that needs an outside system: say why in the text
// around it). Words after "sh" say what the block needs:
//
//	```sh                                  runs against a fresh keygate (see below)
//	```sh serve:--legacy-headers           keygate started with these flags (one word per flag)
//	```sh needs=nginx                      the gateway demo stack: nginx, the origin and keygate
//	```sh needs=postgres                   a throwaway PostgreSQL (postgres://keygate@db.internal/keygate)
//	```sh needs=openssl,opa                binaries the block runs (opa: go run …/opa@v1.22.3)
//	```sh noserve                          no keygate is started (the block starts its own, or none)
//	```sh fresh                            a new keygate and working directory even if the previous block's would do
//	```sh norun                            not run
//
// Consecutive blocks of one file with the same needs and flags share one keygate and one working
// directory, in document order: a block may use what an earlier one created. The working
// directory holds copies of policies/, data/ and .ci/; keygate serves them with its default
// --state (.keygate/state.json). The block runs with bash, `keygate` on PATH and `go run
// ./cmd/keygate …` running the same binary. Addresses in the text are rewritten to the test's:
// localhost:8181 to keygate's, 127.0.0.1:8080 to nginx's, and
// postgres://keygate@db.internal/keygate to the throwaway database; B and KEYGATE_URL (the
// default of `keygate keys import-legacy --url` is localhost:8181) are exported as keygate's base
// URL too.
//
// Each command must exit 0. A comment "# -> TEXT", at the end of the command's last line or on
// the lines right after it, is what the command prints: every piece of TEXT between "…" must
// appear in its output, in order. "# -> exit N" expects exit status N instead of 0.
//
// A block whose needs are missing is skipped, or fails under CI=true.
package docs
