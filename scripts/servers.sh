#!/usr/bin/env bash
# Installs the pinned npm test servers (test/servers/package-lock.json) outside the clone, in a
# cache directory keyed by the lockfile's hash, and prints that directory. A second run with the
# same lockfile reuses it. Usage: scripts/servers.sh   (prints e.g. ~/.cache/sai3bench/npm-<hash>)
set -euo pipefail
cd "$(dirname "$0")/.."
lock=test/servers/package-lock.json
hash=$(sha256sum "$lock" | cut -c1-16)
cache="${SAI3_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sai3bench}"
dir="$cache/npm-$hash"
if [ ! -f "$dir/.complete" ]; then
  command -v npm >/dev/null || { echo "npm is missing (apt-get install npm)" >&2; exit 1; }
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  cp test/servers/package.json "$lock" "$dir.tmp/"
  (cd "$dir.tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
  cp test/servers/*.js "$dir.tmp/"
  touch "$dir.tmp/.complete"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
fi
# wrappers may change without the lockfile changing
cp test/servers/*.js "$dir/"
echo "$dir"
