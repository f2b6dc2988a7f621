#!/usr/bin/env bash
# Run bench/gpu_check.py: under `torchrun --nproc_per_node=2` (NCCL) when two or more GPUs are present, else
# plainly (one process). Arguments go to gpu_check.py, e.g.  bench/gpu_check.sh --out results.json
# PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [ "${gpus:-0}" -ge 2 ]; then
    exec "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 bench/gpu_check.py "$@"
fi
exec "$PY" bench/gpu_check.py "$@"
