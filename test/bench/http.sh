#!/usr/bin/env bash
# HTTP benchmark: sai3bench-ctl vs wrk and h2load on nginx over loopback. See test/bench/README.md.
# usage: test/bench/http.sh [--secs N] [--conns N] [--ctl PATH]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec python3 "$here/http_bench.py" "$@"
