#!/usr/bin/env bash
# Installs what is missing, builds, and runs examples/quickstart.yaml in-process on ./sai3-data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --build-only
[ -f build/build.ninja ] || meson setup build -Dtests=false >/dev/null
ninja -C build apps/ctl/sai3bench-ctl >/dev/null
exec build/apps/ctl/sai3bench-ctl run --config examples/quickstart.yaml "$@"
