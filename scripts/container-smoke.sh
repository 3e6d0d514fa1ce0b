#!/usr/bin/env bash
# Build the Docker image with the local CPU torch wheel and smoke-test the live container
# with ../shared/tools/docker-smoke.sh (private dockerd, local stand-in for python:3.11-slim;
# needs root). The checks are in scripts/container-checks.sh: /readyz, /predict, a
# /tune-thresholds upload, `docker restart` with the /data volume and the active set still
# active, a non-root server process. Prints the build time and image size.
#
# usage: scripts/container-smoke.sh [--if-possible]
#   --if-possible  when a prerequisite is missing (the docker-smoke tool, root, a dockerd
#                  that can start, the wheel, PyPI), print why and exit 0: for CI
# env:   DOCKER_SMOKE   the tool (default ../shared/tools/docker-smoke.sh from the repo root)
#        TORCH_VERSION  torch version of the wheel to look for (default 2.13.0, the Dockerfile's pin)
#        TORCH_WHEEL    a torch wheel file to use instead of searching pip's find-links
#        HOST_PORT, CACHE_DIR   passed on to docker-smoke.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
IF_POSSIBLE=0
case "${1:-}" in
  --if-possible) IF_POSSIBLE=1 ;;
  "") ;;
  *) echo "usage: $0 [--if-possible]" >&2; exit 2 ;;
esac
DOCKER_SMOKE=${DOCKER_SMOKE:-$ROOT/../shared/tools/docker-smoke.sh}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

say() { echo "[container-smoke] $*"; }
# A missing prerequisite: a skip with --if-possible, an error otherwise.
unmet() {
  if [ "$IF_POSSIBLE" = 1 ]; then say "skipped: $*"; exit 0; fi
  say "cannot run: $*" >&2; exit 1
}

# ---- prerequisites --------------------------------------------------------------------
[ -f "$DOCKER_SMOKE" ] || unmet "$DOCKER_SMOKE does not exist"
[ "$(id -u)" = 0 ] || unmet "docker-smoke.sh needs root (uid is $(id -u))"

if ! command -v dockerd > /dev/null || ! command -v debootstrap > /dev/null; then
  # The same packages docker-smoke.sh would install; done here so that the probe can run.
  command -v apt-get > /dev/null || unmet "no dockerd/debootstrap and no apt-get to install them"
  say "installing docker.io, debootstrap, iptables"
  { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         docker.io debootstrap iptables > /dev/null; } \
    || unmet "installing docker.io/debootstrap/iptables failed"
fi

# Can dockerd start here (cgroups, overlay2, namespaces)? A throwaway daemon without
# networking (no iptables rules, no bridge), stopped again at once.
probe_dockerd() {
  local d pid ok=1
  d=$(mktemp -d -t dockerd-probe.XXXXXX)
  dockerd --data-root "$d/root" --exec-root "$d/exec" --storage-driver overlay2 \
    --iptables=false --ip-masq=false --bridge=none -H "unix://$d/docker.sock" \
    --pidfile "$d/dockerd.pid" > "$d/dockerd.log" 2>&1 &
  pid=$!
  for _ in $(seq 60); do
    if DOCKER_HOST=unix://$d/docker.sock docker info > /dev/null 2>&1; then ok=0; break; fi
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.5
  done
  kill "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  [ "$ok" = 0 ] || tail -n 5 "$d/dockerd.log" | sed 's/^/[container-smoke]   dockerd: /' >&2
  rm -rf "$d"
  return "$ok"
}
probe_dockerd || unmet "dockerd cannot start on this machine (log above)"

# The CPU torch wheel: $TORCH_WHEEL, else the find-links directories pip is configured with.
find_wheel() {
  local dirs d f
  dirs=$( { echo "${PIP_FIND_LINKS:-}"; python3 -m pip config list 2> /dev/null \
            | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p"; } | tr ' ' '\n' | sed 's|^file://||' )
  for d in $dirs; do
    for f in "$d"/torch-"$TORCH_VERSION"+cpu-cp311-cp311-*linux*_"$(uname -m)".whl; do
      [ -f "$f" ] && { echo "$f"; return 0; }
    done
  done
  return 1
}
WHEEL=${TORCH_WHEEL:-$(find_wheel || true)}
[ -n "$WHEEL" ] && [ -f "$WHEEL" ] \
  || unmet "no torch-$TORCH_VERSION+cpu cp311 wheel in pip's find-links (set TORCH_WHEEL)"

python3 -c 'import urllib.request; urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15)' \
  2> /dev/null || unmet "https://pypi.org is unreachable (the image build installs from it)"

# ---- the wheel in the build context, for this run only ---------------------------------
WHEEL_NAME=$(basename "$WHEEL")
created_dir=0; copied=0
[ -d wheels ] || { mkdir wheels; created_dir=1; }
if [ ! -f "wheels/$WHEEL_NAME" ]; then
  cp "$WHEEL" "wheels/$WHEEL_NAME"; copied=1
fi
LOG=$(mktemp -t container-smoke.XXXXXX.log)
cleanup() {
  # Leave wheels/ as it was: a wheel left there is sent with every later build (.dockerignore).
  [ "$copied" = 0 ] || rm -f "wheels/$WHEEL_NAME"
  [ "$created_dir" = 0 ] || rmdir wheels 2> /dev/null || true
  rm -f "$LOG"
}
trap cleanup EXIT

# ---- build, run and check ---------------------------------------------------------------
ADMIN_KEY=smoke-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
VOLUME=labelcut-smoke-data   # a named volume; it lives in the private dockerd and goes with it
export ADMIN_KEY EXPECT_TORCH="$TORCH_VERSION+cpu"
export HEALTH_PATH=/readyz
export BUILD_ARGS="--build-arg TORCH_SPEC=/wheels/$WHEEL_NAME"
export RUN_ARGS="-v $VOLUME:/data -e LABELCUT_ADMIN_KEY=$ADMIN_KEY"
export SMOKE_CMD="bash '$ROOT/scripts/container-checks.sh'"
say "wheel: $WHEEL"
say "BUILD_ARGS: $BUILD_ARGS"
say "RUN_ARGS: -v $VOLUME:/data -e LABELCUT_ADMIN_KEY=<random>"

t0=$(date +%s)
bash "$DOCKER_SMOKE" "$ROOT" 2>&1 | tee "$LOG"
total=$(( $(date +%s) - t0 ))

# docker-smoke.sh stamps its lines with seconds since it started.
stamp() { sed -n "s/^\[docker-smoke \([0-9]*\)s\] $1.*/\1/p" "$LOG" | head -n 1; }
base_s=$(stamp "base image ready"); built_s=$(stamp "built:")
size=$(sed -n 's/^\[docker-smoke [0-9]*s\] built: [^ ]* \(.*\)$/\1/p' "$LOG" | head -n 1)
say "PASSED in ${total} s: build (no cache, wheel override) $(( built_s - base_s )) s; image size $size"
