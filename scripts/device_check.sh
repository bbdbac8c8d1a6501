#!/usr/bin/env bash
# The GPU device check of locinsert in one command: CUDA correctness tests, sampling sweep, evaluation,
# training throughput + PIPE-schedule projection (python3 -m locinsert.bench.device_check --help).
#
#   scripts/device_check.sh OUT_DIR [device_check options, e.g. --budget 420 --parts sampling,training]
#
# Writes OUT_DIR/summary.json, summary.md, log.txt and nvidia-smi.csv. Offline: random weights at the
# real shapes, nothing is downloaded. Wheels in .whl/ (scripts/device_wheels.txt) are installed first.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out="${1:?usage: scripts/device_check.sh OUT_DIR [device_check options]}"
shift
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  site="$(mktemp -d)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv > "$out/nvidia-smi.csv" 2>&1
fi
python3 -m locinsert.bench.device_check --out "$out" "$@" 2>&1 | tee "$out/log.txt"
exit "${PIPESTATUS[0]}"
