#!/usr/bin/env bash
# Builds and runs the limiterd throughput bench (reserve+settle pairs/s).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-$PWD/bin}
make -s build/rel/limiter_bench
build/rel/limiter_bench -n "${LIMITER_BENCH_PAIRS:-20000}" --limiterd "$BIN/limiterd"
