#!/usr/bin/env bash
# The test command. Fetches the base model first (cached in the test home), so
# the model/engine/integration tests run in CI rather than skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export CODETAILOR_TEST_HOME="${CODETAILOR_TEST_HOME:-$PWD/.home/test}"
CODETAILOR_HOME="$CODETAILOR_TEST_HOME" .venv/bin/codetailor model fetch >/dev/null
# Prometheus' promtool for the alert-rule tests (Debian package).
if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q prometheus >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q prometheus >/dev/null; }) \
      || echo "test: could not install prometheus; promtool tests will be skipped" >&2
  fi
fi
exec .venv/bin/python -m pytest -q "$@"
