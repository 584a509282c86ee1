#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, integration, fuzz-corpus replay).
# Usage: scripts/test.sh [--sanitize] [meson test args...]
#   --sanitize  build with clang and -Db_sanitize=address,undefined in build-asan/
# Ends with one line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

dir=build-test
setup=(-Dtests=true)
export CC="${CC:-gcc}"
if [ "${1:-}" = "--sanitize" ]; then
  shift
  dir=build-asan
  export CC=clang
  setup+=(-Db_sanitize=address,undefined -Db_lundef=false)
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"  # UBSan only warns otherwise
fi
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "${setup[@]}" >/dev/null
fi
ninja -C "$dir" >/dev/null
set +e
meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
rc=$?
set -e
python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    else:  # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, SKIP: a skip hides a missing piece
        failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $rc
