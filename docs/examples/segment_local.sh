#!/bin/bash
# A cohort split over N processes on one machine (or one GPU node), then one summary.
#
#   docs/examples/segment_local.sh cases.csv out 2 [segment options, e.g. --device cuda]
#
# Each process takes shard i/N and 1/N of the CPU cores (OMP_NUM_THREADS); with several
# GPUs set GPUS="0 1 ..." and process i uses GPU number i modulo their count.
# Logs go to ${LOGDIR:-logs}/shard_I.log. Run it again to resume after an interruption.
set -euo pipefail
manifest=$1 out=$2 n=$3
shift 3
threads=$(( $(nproc) / n ))
(( threads >= 1 )) || threads=1
read -r -a gpus <<< "${GPUS:-}"
logdir=${LOGDIR:-logs}
mkdir -p "$logdir"
pids=()
for (( i = 0; i < n; i++ )); do
    gpu=()
    (( ${#gpus[@]} )) && gpu=(CUDA_VISIBLE_DEVICES="${gpus[i % ${#gpus[@]}]}")
    env "${gpu[@]}" OMP_NUM_THREADS=$threads ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=$threads \
        brainmetseg segment --manifest "$manifest" -o "$out" --shard "$i/$n" --skip-existing "$@" \
        > "$logdir/shard_$i.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
brainmetseg summarize "$out" --manifest "$manifest" || status=1
exit $status
