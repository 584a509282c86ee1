#!/usr/bin/env bash
# Distributed-run benchmark: in-process vs one and two local agents; controller CPU with 32 agents.
# usage: test/bench/dist.sh [--secs N] [--conc N] [--agents32-secs N] [--build DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec python3 "$here/dist_bench.py" "$@"
