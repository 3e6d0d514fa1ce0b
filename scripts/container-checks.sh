#!/usr/bin/env bash
# Checks against the live labelcut container; scripts/container-smoke.sh runs this as the
# SMOKE_CMD of ../shared/tools/docker-smoke.sh, which sets URL and DOCKER_HOST.
#
# env: URL           the container's base URL (http://127.0.0.1:18000)
#      DOCKER_HOST   the private dockerd's socket
#      ADMIN_KEY     the LABELCUT_ADMIN_KEY the container was started with
#      CONTAINER     container name (default smoke, as in docker-smoke.sh)
#      IMAGE         image name (default app:smoke, as in docker-smoke.sh)
#      EXPECT_TORCH  torch.__version__ the image must hold (optional)
set -euo pipefail
: "${URL:?URL is not set}" "${ADMIN_KEY:?ADMIN_KEY is not set}"
C=${CONTAINER:-smoke}
IMAGE=${IMAGE:-app:smoke}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
YEAST_TEST=$ROOT/models/data/yeast_test.npz
T=$(mktemp -d -t container-checks.XXXXXX)
trap 'rm -rf "$T"' EXIT

say() { echo "[container-checks] $*"; }
fail() { echo "[container-checks] FAIL: $*" >&2; [ -s "$T/body" ] && head -c 2000 "$T/body" >&2 && echo >&2; exit 1; }

# http METHOD PATH [curl args...]: the body goes to $T/body, the status code to stdout.
http() {
  local method=$1 path=$2; shift 2
  curl -sS -o "$T/body" -w '%{http_code}' -X "$method" "$@" "$URL$path" 2> "$T/curl.err" \
    || { echo 000; cat "$T/curl.err" >&2; }
}
# jget DOTTED.PATH < json: one field (list items by index); strings bare, the rest as JSON.
jget() {
  python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in filter(None, sys.argv[1].split(".")):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v if isinstance(v, str) else json.dumps(v, sort_keys=True))' "$1"
}
expect() { # expect CODE GOT WHAT
  [ "$2" = "$1" ] || fail "$3: expected HTTP $1, got $2"
}
wait_ready() { # wait_ready SECONDS: poll /readyz until 200
  local deadline=$(( $(date +%s) + $1 )) code
  while :; do
    code=$(http GET /readyz 2> /dev/null)   # refused/reset while (re)starting
    [ "$code" = 200 ] && return 0
    [ "$(date +%s)" -ge "$deadline" ] && fail "/readyz still answers $code after $1 s"
    sleep 0.5
  done
}

t0=$(date +%s)
wait_ready 120
say "/readyz 200 after $(( $(date +%s) - t0 )) s"

code=$(http GET /model); expect 200 "$code" "GET /model"
say "/model: $(jget name < "$T/body") on $(jget device < "$T/body"), $(jget labels < "$T/body" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') labels, input $(jget input_shape < "$T/body")"

code=$(http GET /ui); expect 200 "$code" "GET /ui (the web page ships in the wheel)"
grep -q 'plotly.min.js' "$T/body" || fail "/ui does not load plotly.js"
code=$(http GET /ui/static/app.js); expect 200 "$code" "GET /ui/static/app.js"
say "/ui 200 with its script"

python3 -c 'import json; print(json.dumps({"inputs": [[0.1 * (i % 10) for i in range(103)]]}))' > "$T/predict.json"
code=$(http POST /predict -H 'Content-Type: application/json' --data-binary "@$T/predict.json")
expect 200 "$code" "POST /predict"
n=$(jget predictions < "$T/body" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 1 ] || fail "POST /predict: expected 1 prediction for 1 row, got $n"
say "/predict 200: labels $(jget predictions.0.labels < "$T/body"), threshold set $(jget threshold_set_id < "$T/body")"

# Tuning is an admin operation; through port publishing the client is not on loopback.
code=$(http POST /tune-thresholds -F "file=@$YEAST_TEST")
case "$code" in 401|403) say "/tune-thresholds without the admin key: $code (refused, as it should)";;
  *) fail "/tune-thresholds without the admin key: expected 401/403, got $code";; esac
code=$(http POST /tune-thresholds -H "Authorization: Bearer $ADMIN_KEY" -F "file=@$YEAST_TEST")
expect 200 "$code" "POST /tune-thresholds with the admin key"
set_id=$(jget threshold_set.id < "$T/body")
[ "$(jget threshold_set.active < "$T/body")" = true ] || fail "the tuned set $set_id is not active"
say "/tune-thresholds 200: set $set_id active, $(jget threshold_set.n_samples < "$T/body") samples, macro F1 $(jget summary.macro_f1 < "$T/body")"

code=$(http GET /thresholds); expect 200 "$code" "GET /thresholds"
[ "$(jget threshold_set.id < "$T/body")" = "$set_id" ] || fail "GET /thresholds: active set is not $set_id"
jget thresholds < "$T/body" > "$T/thresholds.before"
code=$(http POST /predict -H 'Content-Type: application/json' --data-binary "@$T/predict.json")
expect 200 "$code" "POST /predict after tuning"
[ "$(jget threshold_set_id < "$T/body")" = "$set_id" ] || fail "/predict does not use set $set_id"
say "/thresholds: set $set_id active; /predict uses it"

say "/data in the container: $(docker exec "$C" ls -ln /data | tail -n +2 | awk '{print $3":"$4, $9}' | paste -sd ' ')"
docker inspect -f '{{range .Mounts}}{{.Type}} {{.Name}} -> {{.Destination}}{{end}}' "$C" | sed 's/^/[container-checks] mount: /'

t0=$(date +%s)
docker restart "$C" > /dev/null
restart_s=$(( $(date +%s) - t0 ))
wait_ready 120
say "docker restart took ${restart_s} s (a stop that hits the 10 s timeout would mean SIGTERM is ignored); ready again after $(( $(date +%s) - t0 )) s"
[ "$restart_s" -lt 10 ] || fail "docker restart took ${restart_s} s: the server did not stop on SIGTERM"
code=$(http GET /thresholds); expect 200 "$code" "GET /thresholds after restart"
[ "$(jget threshold_set.id < "$T/body")" = "$set_id" ] || fail "after restart the active set is $(jget threshold_set < "$T/body"), not $set_id"
jget thresholds < "$T/body" > "$T/thresholds.after"
cmp -s "$T/thresholds.before" "$T/thresholds.after" || fail "after restart the active thresholds differ"
say "after restart: set $set_id still active, same thresholds"

uid=$(docker exec "$C" id -u)
pid1=$(docker exec "$C" sh -c 'grep "^Uid:" /proc/1/status' | awk '{print $2, $3, $4, $5}')
user=$(docker inspect -f '{{.Config.User}}' "$C")
[ "$uid" != 0 ] || fail "docker exec runs as root"
for u in $pid1; do [ "$u" != 0 ] || fail "the server process (PID 1) has uid 0: $pid1"; done
say "non-root: image USER '$user', exec uid $uid, PID 1 uids (real effective saved fs) $pid1"

torch=$(docker exec "$C" python -c 'import torch; print(torch.__version__, torch.cuda.is_available())')
say "torch in the image: $torch"
if [ -n "${EXPECT_TORCH:-}" ] && [ "${torch%% *}" != "$EXPECT_TORCH" ]; then
  fail "expected torch $EXPECT_TORCH in the image, got ${torch%% *}"
fi
# (The base image's own pip/setuptools wheels for ensurepip are expected; no torch wheel is.)
docker exec "$C" sh -c 'test ! -e /wheels && ! find / -xdev -name "torch-*.whl" 2>/dev/null | grep -q .' \
  || fail "the torch wheel (or /wheels) is in the final image"
say "no /wheels and no torch wheel file in the final image"

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
base=$(docker image inspect -f '{{.Size}}' python:3.11-slim)
say "image $IMAGE: $(( size / 1000000 )) MB = base python:3.11-slim (stand-in) $(( base / 1000000 )) MB + /opt/venv $(docker exec "$C" du -sh /opt/venv | cut -f1)"
say "largest in the venv: $(docker exec "$C" sh -c 'du -s /opt/venv/lib/python3*/site-packages/* | sort -rn | head -n 6' | awk '{printf "%s %d MB; ", $2, $1/1024}' | sed 's|/opt/venv/lib/python3[^/]*/site-packages/||g')"
say "all checks passed"
