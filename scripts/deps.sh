#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, when any is missing.
# Needs root (or sudo) only when something is missing. Safe to run again.
set -euo pipefail

PKGS=(
  # build
  meson ninja-build pkg-config gcc libc6-dev
  libuv1-dev libyaml-dev libjansson-dev libzstd-dev libmbedtls-dev libexpat1-dev libnghttp2-dev libssh2-1-dev
  protobuf-c-compiler libprotobuf-c-dev
  # tests
  libcmocka-dev clang libclang-rt-14-dev zstd python3 valgrind
  # test servers and cross-checks: S3 (npm s3rver, needs node/npm), nginx (HTTP/1.1, h2c, h2),
  # Debian's AWS CLI v2 at /usr/bin/aws, openssl for test certificates
  nginx awscli openssl curl
  # gRPC interop peer (Debian's grpcio, used with /usr/bin/python3) and network namespaces
  python3-grpcio python3-grpc-tools python3-protobuf iproute2 python3-jwt python3-cryptography
  # SSH deployment: a real OpenSSH server, sshpass and ssh-keygen for cross-checks, systemd-analyze
  # and shellcheck for the packaging checks
  openssh-server openssh-client sshpass systemd shellcheck groff-base man-db
  # benchmark comparison
  fio wrk nghttp2-client
)
if [ "${1:-}" = "--build-only" ]; then
  PKGS=(meson ninja-build pkg-config gcc libc6-dev libuv1-dev libyaml-dev libjansson-dev libzstd-dev
        libmbedtls-dev libexpat1-dev libnghttp2-dev protobuf-c-compiler libprotobuf-c-dev libssh2-1-dev)
fi

missing=()
# Node.js and npm (for the pinned npm test servers) come with the machine image; Debian's own
# nodejs package is only installed when no node is on PATH.
if [ "${1:-}" != "--build-only" ] && ! command -v node >/dev/null 2>&1; then PKGS+=(nodejs npm); fi
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
