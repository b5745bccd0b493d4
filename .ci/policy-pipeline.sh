#!/bin/sh
# policy-pipeline.sh — the checks a policy change goes through before it
# ships, as any CI can run them (POSIX sh, Go toolchain, run from the
# repository root):
#
#   1. keygate test        the Rego unit tests, strict compiler
#   2. opa fmt + Regal     formatting and lint
#   3. keygate replay      the decisions of a recorded log, re-evaluated
#                          against the candidate: what would change
#   4. opa build           the bundle, signed, with the revision
#
# Environment (all optional):
#   POLICIES        candidate policy directory            (policies)
#   DATA            services/members/seed keys            (data)
#   SAMPLE_LOG      decision log to replay                (.ci/sample-decisions.jsonl)
#   STATE           key state to replay with; unset: seed keys from $DATA
#   ALLOW_CHANGES   1: decisions may change (a reviewer read the report); else a
#                   change fails the pipeline
#   SIGNING_KEY     PEM private key (RSA) signing the bundle; unset: no bundle
#                   is built (never ship an unsigned bundle to a keygate that
#                   verifies — it would be refused)
#   KEY_ID          key id in the signature                (default)
#   REVISION        bundle revision                       (git commit, else a timestamp)
#   OUT             output directory                      (dist)
set -eu

POLICIES=${POLICIES:-policies}
DATA=${DATA:-data}
SAMPLE_LOG=${SAMPLE_LOG:-.ci/sample-decisions.jsonl}
OUT=${OUT:-dist}
KEY_ID=${KEY_ID:-default}
REVISION=${REVISION:-$(git rev-parse --short=12 HEAD 2>/dev/null || date -u +%Y%m%dT%H%M%SZ)}
OPA="go run github.com/open-policy-agent/opa@v1.22.3"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

step() { printf '\n== %s\n' "$*"; }

# keygate is built, not `go run`: replay's exit status (0, 1, 2) must reach
# this script unchanged.
step "build keygate"
go build -o "$OUT/keygate" ./cmd/keygate

step "keygate test $POLICIES"
"$OUT/keygate" test "$POLICIES"

step "opa fmt (check) and Regal lint"
if [ -n "$($OPA fmt --list "$POLICIES")" ]; then
	echo "not formatted (run: $OPA fmt -w $POLICIES):" >&2
	$OPA fmt --list "$POLICIES" >&2
	exit 1
fi
go tool -modfile=tools/go.mod regal lint "$POLICIES"

step "keygate replay $SAMPLE_LOG against $POLICIES"
state=${STATE:-$OUT/no-state/state.json} # absent: keys are seeded from $DATA
set +e
"$OUT/keygate" replay --log "$SAMPLE_LOG" --policies "$POLICIES" --data "$DATA" --state "$state" \
	--format json >"$OUT/replay.json"
code=$?
set -e
case $code in
0) echo "no logged decision changes" ;;
1)
	"$OUT/keygate" replay --log "$SAMPLE_LOG" --policies "$POLICIES" --data "$DATA" --state "$state" || true
	if [ "${ALLOW_CHANGES:-0}" != 1 ]; then
		echo "decisions change (report: $OUT/replay.json); set ALLOW_CHANGES=1 once a reviewer accepted them" >&2
		exit 1
	fi
	echo "decisions change; accepted (ALLOW_CHANGES=1)"
	;;
*)
	echo "replay failed (exit $code)" >&2
	exit "$code"
	;;
esac

if [ -z "${SIGNING_KEY:-}" ]; then
	step "no SIGNING_KEY: bundle not built"
	exit 0
fi
step "opa build --revision $REVISION, signed ($KEY_ID)"
# Built from inside the policy directory so that the bundle's paths are
# relative (content/content.rego), as keygate reports them.
key=$(cd "$(dirname "$SIGNING_KEY")" && pwd)/$(basename "$SIGNING_KEY")
(cd "$POLICIES" && $OPA build -b . --revision "$REVISION" --signing-key "$key" \
	--verification-key-id "$KEY_ID" -o "$OUT/bundle.tar.gz")
echo "$OUT/bundle.tar.gz (revision $REVISION)"
