#!/usr/bin/env bash
# sklearn-din on an NVIDIA GPU: training and prediction speed, fp32 vs bf16 autocast, and a
# GPU-vs-CPU prediction check. One prepared script, a few minutes, no internet needed.
#
# Run from anywhere inside the repository checkout (it cds to the repo root):
#
#     bash benchmarks/gpu.sh                          # CUDA, 1M training rows
#     bash benchmarks/gpu.sh --device cpu --quick     # smoke test of the Python part, no GPU
#     bash benchmarks/gpu.sh --sizes tutorial --budget-s 240
#
# Needs: python3 with torch (CUDA build), numpy, pandas, scipy, scikit-learn and skorch. If skorch
# is missing and the checkout has a .whl/ folder (git-ignored) holding a skorch wheel, that wheel
# is installed into /tmp/site without any network access. Make the folder beforehand with:
#     python3 -m pip download --no-deps --only-binary=:all: -d .whl skorch==1.4.0
# (skorch is pure Python; its own needs, numpy, scipy, scikit-learn, tabulate and tqdm, must
# already be there).
# sklearn_din itself is taken from the checkout (PYTHONPATH), nothing is built or installed.
#
# What benchmarks/gpu.py (called below) does:
#   1. builds a synthetic CTR set: make_interactions (geometric clicks per user, mean 20: mean
#      history ~16 of 50) + one sampled negative per click + leave_last_out_split +
#      SequenceFeatureTransformer(max_len=50); the training split is cut to --rows (1,000,000);
#   2. for each model size (tutorial: attention (256,128), MLP (256,128); paper: (80,40),
#      (200,80)) and batch size (1024, 8192): DINClassifier(device=...).fit for --epochs epochs
#      (train rows/s = median epoch after the first, from skorch's history 'dur'), then
#      predict_proba on the training rows (predict rows/s);
#   3. DINClassifier has no autocast option, so fp32 vs bf16 autocast is timed with a manual
#      training loop over the SAME module and data (sklearn-din's own batch iterator, Adam,
#      BCE-with-logits on float32 logits), once without and once inside
#      torch.autocast(dtype=torch.bfloat16);
#   4. fits on the GPU (tutorial sizes, batch 1024), moves a copy of the module to the CPU and
#      checks that predict_proba agrees within 1e-4 on a few thousand test rows.
# Writes a markdown table to $OUT/gpu.md when OUT is set, else to benchmarks/results/gpu.md
# (and gpu.json next to it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"

if ! "$PY" -c "import skorch" 2>/dev/null; then
    shopt -s nullglob
    wheels=(.whl/skorch-*.whl)
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "gpu.sh: skorch is not importable and there is no .whl/skorch-*.whl to install it from" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        "${wheels[@]}"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [ -n "${OUT:-}" ]; then
    OUT_MD="$OUT/gpu.md"
else
    OUT_MD="$ROOT/benchmarks/results/gpu.md"
fi

exec "$PY" "$ROOT/benchmarks/gpu.py" --out "$OUT_MD" "$@"
