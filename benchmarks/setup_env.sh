#!/usr/bin/env bash
# (Re)create the benchmark venv at benchmarks/.venv: torch 2.13.0 CPU, the three peer DINs
# (torch-rechub 0.9.0, deepctr-torch 0.3.0, fuxictr 2.3.10) and sklearn-din itself (editable). Idempotent: safe to rerun.
# Usage: bash benchmarks/setup_env.sh        (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $("$PY" --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

torch_version() { "$VPY" -c 'import torch; print(torch.__version__)' 2>/dev/null || true; }

# 1. torch FIRST, alone: the pinned version resolves to the local CPU wheel; anything else first would
#    pull a multi-GB CUDA build.
if [[ "$(torch_version)" != "$TORCH_VERSION"* ]]; then
    "$VPY" -m pip install "torch==$TORCH_VERSION"
fi

# 2. peers and tools (torch is pinned there too, so nothing replaces it)
"$VPY" -m pip install -r "$HERE/requirements-peers.txt"

# 3. this package, editable; tolerated to fail while the package has no pyproject.toml yet
if ! "$VPY" -m pip install -e "$HERE/.."; then
    echo "WARNING: 'pip install -e $HERE/..' failed: sklearn-din is not installed in $VENV" \
         "(the peers are; rerun this script once the package installs)" >&2
fi

# 4. torch must still be the CPU build
TV="$(torch_version)"
case "$TV" in
    "$TORCH_VERSION+cpu") echo "ok: torch $TV in $VENV" ;;
    *) echo "ERROR: torch in $VENV is '$TV', expected $TORCH_VERSION+cpu" >&2; exit 1 ;;
esac
"$VPY" -c 'import torch_rechub, deepctr_torch, fuxictr, sklearn, skorch; from model_zoo.LongCTR.DIN import DIN; print("peers import: torch-rechub", getattr(torch_rechub, "__version__", "?"), "deepctr-torch", deepctr_torch.__version__, "fuxictr", fuxictr.__version__)'
