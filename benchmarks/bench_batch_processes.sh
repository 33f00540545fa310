#!/bin/bash
# Cases per hour of one `segment` process against two shard processes, same cases, same machine.
#
#   benchmarks/bench_batch_processes.sh MANIFEST.csv WORKDIR [segment options]
#
# Runs, in this order (alternating, so a change in the machine's load hits both kinds):
# one process; two processes with OMP_NUM_THREADS=1 each; two processes with torch's default
# threads each; one process again. Prints the wall seconds of each and the load average.
# Nothing here is a pass/fail test.
set -euo pipefail
manifest=$1 work=$2
shift 2
now() { date +%s.%N; }
report() { echo "$1 wall $(echo "$(now) - $2" | bc) s, load $(cut -d' ' -f1-3 /proc/loadavg)"; }
one() {
    rm -rf "$work/one"; local s; s=$(now)
    brainmetseg segment --manifest "$manifest" -o "$work/one" --quiet "$@"
    report "one process" "$s"
}
two() {
    local threads=$1; shift
    rm -rf "$work/two"; local s; s=$(now)
    for i in 0 1; do
        env ${threads:+OMP_NUM_THREADS=$threads} \
            brainmetseg segment --manifest "$manifest" -o "$work/two" --shard "$i/2" --quiet "$@" &
    done
    wait
    report "two processes (OMP_NUM_THREADS=${threads:-default})" "$s"
}
echo "start: load $(cut -d' ' -f1-3 /proc/loadavg)"
one "$@"; two 1 "$@"; two "" "$@"; one "$@"
