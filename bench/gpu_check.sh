#!/usr/bin/env bash
# The GPU check of the thesis setting (preset ucf101-simclr unless --preset; see bench/gpu_check.py --help).
# Arguments go to gpu_check.py, e.g.  bench/gpu_check.sh --out results.json
#
#   pass 1: one process on one GPU (cuda:0); --out X writes X
#   pass 2: only when 2 or more GPUs are visible: torchrun --nproc_per_node=<all GPUs> (NCCL), the same global
#           batch split across the processes; --out X writes X with ".ddp" before its .json extension
#           (results.json -> results.ddp.json; a name without .json gets ".ddp" appended)
#
# Time: both passes together finish within GPU_CHECK_SECONDS (default 480 s, under a 10-minute command limit),
# counted from this script's start. One pass gets all of it. With two, pass 1 gets half (its check budgets are
# scaled down by gpu_check.py's --time-limit to fit) and pass 2 the rest (at least half, more when pass 1 ended
# early). A --time-limit given here applies to each pass instead. The exit code is 1 if either pass failed.
# PYTHON picks the interpreter (default: python).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
total="${GPU_CHECK_SECONDS:-480}"
SECONDS=0

ddp_name() {
    case "$1" in
        *.json) printf '%s\n' "${1%.json}.ddp.json" ;;
        *) printf '%s\n' "$1.ddp" ;;
    esac
}

# pass 2's arguments: the same, with --out X -> its .ddp name; no pass 2 for a CPU run or --print-config
args2=()
prev=""
single=0
for a in "$@"; do
    b="$a"
    if [ "$prev" = "--out" ]; then
        b=$(ddp_name "$a")
    fi
    case "$a" in
        --out=*) b="--out=$(ddp_name "${a#--out=}")" ;;
        --device=cpu | --print-config) single=1 ;;
    esac
    if [ "$prev" = "--device" ] && [ "$a" = "cpu" ]; then
        single=1
    fi
    args2+=("$b")
    prev="$a"
done

gpus=0
if [ "$single" = 0 ]; then
    gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
fi
if [ "${gpus:-0}" -lt 2 ]; then
    "$PY" bench/gpu_check.py --time-limit "$((total - SECONDS))" "$@"
    exit $?
fi

echo "[gpu_check.sh] $gpus GPUs: pass 1 on one GPU, then torchrun --nproc_per_node=$gpus (within $total s)"
"$PY" bench/gpu_check.py --time-limit "$((total / 2 - SECONDS))" "$@"
rc1=$?
left=$((total - SECONDS - 5))  # 5 s: torchrun's own start
echo "[gpu_check.sh] pass 1 ended (exit $rc1) after $SECONDS s; pass 2: torchrun on $gpus GPUs, $left s"
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$gpus" bench/gpu_check.py --time-limit "$left" \
    ${args2[@]+"${args2[@]}"}
rc2=$?
if [ "$rc1" -ne 0 ] || [ "$rc2" -ne 0 ]; then
    exit 1
fi
exit 0
