#!/usr/bin/env bash
# Builds the gateway's image with podman from this checkout alone: a statically linked release
# binary (glibc's static libc, `+crt-static`) in its own target directory, then
# docker/Containerfile (FROM scratch) on a context of that binary and config/examples.
# Usage: bash docker/build-image.sh [TAG]   (default localhost/edge-gateway:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/edge-gateway:latest}
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked -p gateway --target "$target" --target-dir target/image
bin="target/image/$target/release/gateway"
# A scratch image has no loader and no libc: anything dynamic would not start.
if ! ldd "$bin" 2>&1 | grep -qE "statically linked|not a dynamic executable"; then
  echo "docker/build-image.sh: $bin is dynamically linked" >&2
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/gateway"
cp -r config/examples "$ctx/examples"
podman build --quiet -f docker/Containerfile -t "$tag" "$ctx"
