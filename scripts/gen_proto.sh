#!/usr/bin/env bash
# Generate the gRPC stubs from proto/ into serving/_gen/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${CODETAILOR_VENV:-.venv}/bin/python"
[ -x "$py" ] || py=python3
exec "$py" -m serving.stubs
