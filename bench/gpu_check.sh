#!/usr/bin/env bash
# The GPU check of the PyTorch CUDA path, as one script for a lent GPU machine (under 8
# minutes on an H200). It reads only gpu_data/ in the checkout (git-ignored; fill it here with
# `bash bench/gpu_data.sh` and carry it over): nothing from ../shared, nothing downloaded.
#
#     bash bench/gpu_check.sh [extra options for python -m bench.gpu_check]
#
# Prints parity of torch-cuda exact against the golden outputs (7 styles), fast-mode mean
# |diff|, model-only fps at 720p for batch 1/4/8/16, the offline pipeline against model-only
# with the encoder's own fps, and live p50/p95 at 1080p30 and 720p60. The log and a JSON of
# the figures go to $OUT (the device runner's output folder) when it is set, else out/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in .venv/bin/python python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" 2>/dev/null; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: no Python with torch found (set PYTHON=...)"; exit 2; }
[ -f gpu_data/SHA256SUMS ] || { echo "error: gpu_data/ is missing: run bash bench/gpu_data.sh where ../shared is"; exit 2; }
(cd gpu_data && sha256sum --quiet -c SHA256SUMS) || { echo "error: gpu_data/ does not match its SHA256SUMS"; exit 2; }
DEST="${OUT:-out}"
mkdir -p "$DEST"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
# 470 s: the whole check stays under 8 minutes even when a section hangs.
timeout 470 "$PY" -m bench.gpu_check --json "$DEST/gpu_check.json" "$@" 2>&1 | tee "$DEST/gpu_check.txt"
exit "${PIPESTATUS[0]}"
