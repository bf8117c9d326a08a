#!/bin/sh
# The model grid (docs/models.md, "Choosing the default"): for each base model and each repository,
# index, train a time-budgeted adapter and evaluate base/rag/ft/ft+rag on the same held-out tasks;
# Qwen's base model also in its native template. Every eval appends finished tasks as it goes, so a
# killed grid is continued by running this script again (`eval --resume`; finished steps are skipped).
# bench/model_grid_report.py pools the runs per model and system.
#
#   flock /tmp/codetailor-heavy.lock sh bench/model_grid.sh /tmp/grid /tmp/grid/out
#
# REPOS: directories under $1 (copies, not inside .venv: there the files are git-ignored).
# SMOLLM2 / QWEN: checkpoint directories (`codetailor model fetch NAME` puts them under <home>/models).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:?usage: model_grid.sh REPOS_DIR OUT_DIR}
OUT=${2:?usage: model_grid.sh REPOS_DIR OUT_DIR}
REPOS=${REPOS:-"starlette jinja2"}
N=${N:-100}
BUDGET=${BUDGET:-4m}
SMOLLM2=${SMOLLM2:-$ROOT/.home/test/models/smollm2-135m-instruct}
QWEN=${QWEN:-$HOME/.cache/codetailor/home/models/qwen2.5-coder-0.5b}
CT="$ROOT/.venv/bin/python -m codetailor.cli"
mkdir -p "$OUT"
export CODETAILOR_ENGINE__KV_CACHE_GIB=1 CODETAILOR_PROMPT__BUDGET_TOKENS=1024 \
       CODETAILOR_EVALUATION__MAX_NEW_TOKENS=32 CODETAILOR_TRAINING__HELDOUT_FRACTION=0.2

step() {  # step NAME COMMAND...: run once, keep its JSON and its log
    name=$1; shift
    [ -s "$OUT/$name.json" ] && return 0
    echo "$(date -u +%H:%M:%S) $name" >&2
    start=$(date +%s)
    "$@" > "$OUT/$name.json.tmp" 2> "$OUT/$name.log"
    mv "$OUT/$name.json.tmp" "$OUT/$name.json"
    echo "$(date -u +%H:%M:%S) $name done in $(( $(date +%s) - start )) s" >&2
}

for model in smollm2 qwen; do
    export CODETAILOR_HOME="$ROOT/.home/grid-$model"
    if [ $model = smollm2 ]; then export CODETAILOR_MODEL__BASE=$SMOLLM2; else export CODETAILOR_MODEL__BASE=$QWEN; fi
    for repo in $REPOS; do
        [ -d "$CODETAILOR_HOME/tenants/$repo" ] || $CT tenant create "$repo" > /dev/null
        step "$model-$repo-index" $CT index --tenant "$repo" "$SRC/$repo" --json
        step "$model-$repo-train" $CT train --tenant "$repo" --time-budget "$BUDGET" --rag-augmented --json
        step "$model-$repo-eval" $CT eval --tenant "$repo" --systems base,rag,ft,ft+rag --n "$N" --resume --json --quiet
    done
done
export CODETAILOR_HOME="$ROOT/.home/grid-qwen" CODETAILOR_MODEL__BASE=$QWEN
for repo in $REPOS; do
    CODETAILOR_PROMPT__TEMPLATE=native step "qwen-$repo-eval-native" \
        $CT eval --tenant "$repo" --systems base --n "$N" --resume --json --quiet
done
