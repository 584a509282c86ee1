# syntax=docker/dockerfile:1
# sai3bench container image: sai3bench-agent and sai3bench-ctl on Debian 12. Entry point: the agent.
#
#   docker build -t sai3bench:latest .
#   docker run -d --name sai3-agent --net=host sai3bench:latest --listen 0.0.0.0:7761
#   docker run --rm --entrypoint sai3bench-ctl sai3bench:latest --help
#
# Two stages: "build" installs the build dependencies with apt and builds with meson as the
# README does; the runtime stage (debian:12-slim) installs only the shared libraries the binaries
# load and ca-certificates, and copies both binaries. No Docker engine exists where this project
# is tested: test/packaging (pkg-dockerfile) checks this file statically, among other things that
# every shared library `ldd` shows for the built binaries comes from a package installed below.
# More: docs/PACKAGING.md.

FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
# The build dependencies of scripts/deps.sh --build-only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      meson ninja-build pkg-config gcc libc6-dev \
      libuv1-dev libyaml-dev libjansson-dev libzstd-dev libmbedtls-dev libexpat1-dev \
      libnghttp2-dev libssh2-1-dev protobuf-c-compiler libprotobuf-c-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup build -Dtests=false --prefix=/usr/local \
 && meson compile -C build \
 && meson install -C build --strip --destdir /staging \
 && /staging/usr/local/bin/sai3bench-agent --version \
 && /staging/usr/local/bin/sai3bench-ctl --version

FROM debian:12-slim
ARG DEBIAN_FRONTEND=noninteractive
# Runtime libraries only: every library `ldd` lists for the binaries (libssl3 and zlib1g come
# with libssh2); libc6 and libgcc-s1 are in the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libuv1 libnghttp2-14 libmbedtls14 libmbedx509-1 libmbedcrypto7 libexpat1 libjansson4 \
      libyaml-0-2 libzstd1 libprotobuf-c1 libssh2-1 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/sai3bench \
      --shell /usr/sbin/nologin sai3bench
COPY --from=build /staging/usr/local/bin/sai3bench-agent /staging/usr/local/bin/sai3bench-ctl \
     /usr/local/bin/
COPY --from=build /staging/usr/local/share/doc/sai3bench/examples/ /usr/local/share/doc/sai3bench/examples/
# Not root by default: bind-mounted targets (file://, direct://) must be writable by uid 10001,
# or run with --user.
USER sai3bench
WORKDIR /home/sai3bench
EXPOSE 7761
ENTRYPOINT ["/usr/local/bin/sai3bench-agent"]
CMD ["--listen", "0.0.0.0:7761"]
