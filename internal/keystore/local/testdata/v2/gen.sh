#!/bin/bash
# How state.json and state.json.log beside this script were made: by the real
# keygate of the last format-2 release (commit 23de829), built with
#   git worktree add /tmp/kg-v2 23de829 && (cd /tmp/kg-v2 && go build -o keygate-v2 ./cmd/keygate)
# then this script (run 1: seed, create alpha/bravo/charlie, stop; run 2: the
# start folds the log into a snapshot at seq 3, then rotate bravo, delete
# charlie and the seed key team-demo-read, create delta, update alpha, rotate
# bravo again, stop). The secrets each call returned are in expected.json.
set -euo pipefail
V2=/tmp/kg-v2
W=/tmp/kgv2-gen/work
rm -rf $W; mkdir -p $W
PORT=18491
B=http://127.0.0.1:$PORT
A="Authorization: Bearer business-demo-admin-token"
T="Authorization: Bearer team-demo-admin-token"
J='Content-Type: application/json'
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null || true' EXIT
start() {
  $V2/keygate-v2 serve --addr 127.0.0.1:$PORT --policies $V2/policies --data $V2/data --state $W/state/state.json --decision-log off >>$W/keygate.log 2>&1 &
  PID=$!
  for i in $(seq 1 300); do curl -sf $B/health >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "not ready"; cat $W/keygate.log; exit 1
}
stopkg() { kill -TERM $PID; wait $PID || true; }
start
curl -sf -X POST $B/v1/services/business-demo/keys -H "$A" -H "$J" -d '{"name":"alpha","contentApi":{"default":{"get":true}}}' > $W/alpha.json
curl -sf -X POST $B/v1/services/business-demo/keys -H "$A" -H "$J" -d '{"name":"bravo","contentApi":{"default":{"get":true},"individual":{"contact":{"post":true}}}}' > $W/bravo.json
curl -sf -X POST $B/v1/services/business-demo/keys -H "$A" -H "$J" -d '{"name":"charlie","contentApi":{"default":{"get":true}}}' > $W/charlie.json
stopkg
cp -r $W/state $W/state-after-run1
start
BR=$(jq -r .key.id $W/bravo.json); CH=$(jq -r .key.id $W/charlie.json); AL=$(jq -r .key.id $W/alpha.json)
curl -sf -X POST $B/v1/services/business-demo/keys/$BR/rotate -H "$A" > $W/bravo-rotated.json
curl -sf -o /dev/null -w '%{http_code}\n' -X DELETE $B/v1/services/business-demo/keys/$CH -H "$A"
curl -sf -o /dev/null -w '%{http_code}\n' -X DELETE $B/v1/services/team-demo/keys/team-demo-read -H "$T"
curl -sf -X POST $B/v1/services/business-demo/keys -H "$A" -H "$J" -d '{"name":"delta","contentApi":{"default":{"get":true}}}' > $W/delta.json
curl -sf -X PUT $B/v1/services/business-demo/keys/$AL -H "$A" -H "$J" -d '{"name":"alpha-renamed","contentApi":{"default":{"get":true,"getAllDrafts":true}}}' > $W/alpha-updated.json
curl -sf -X POST $B/v1/services/business-demo/keys/$BR/rotate -H "$A" > $W/bravo-rotated2.json
stopkg
