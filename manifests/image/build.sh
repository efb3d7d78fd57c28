#!/usr/bin/env bash
# Builds the cuda-fault image without a daemon and writes it as an OCI archive.
#   manifests/image/build.sh [x86_64|aarch64] [OUTPUT.tar]
# - the shim for glibc >= 2.17 (cargo-zigbuild), so it loads in every CUDA image in use;
# - the helper as a static musl binary (runs in FROM scratch);
# - buildah (vfs storage, chroot isolation: no daemon, no privileges beyond root in CI).
# Prints the image name on the last line. Needs: rustup targets, cargo-zigbuild, buildah.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:-x86_64}
OUT=${2:-target/image/cuda-fault-$ARCH.tar}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE=${CUDA_FAULT_IMAGE_NAME:-ghcr.io/cuda-fault/cuda-fault}:$VERSION
case "$ARCH" in
  x86_64) OCI_ARCH=amd64 ;;
  aarch64) OCI_ARCH=arm64 ;;
  *) echo "unsupported architecture $ARCH (x86_64, aarch64)" >&2; exit 2 ;;
esac
command -v cargo-zigbuild >/dev/null || { echo "cargo-zigbuild is missing: pip install cargo-zigbuild" >&2; exit 1; }
command -v buildah >/dev/null || { echo "buildah is missing: apt-get install buildah" >&2; exit 1; }

cargo zigbuild --release -p cuda-fault-shim --target "$ARCH-unknown-linux-gnu.2.17" >&2
cargo zigbuild --release -p cuda-fault --target "$ARCH-unknown-linux-musl" >&2

STAGE=target/image/stage-$ARCH
rm -rf "$STAGE" && mkdir -p "$STAGE" "$(dirname "$OUT")"
cp "target/$ARCH-unknown-linux-gnu/release/libcuda_intercept.so" "$STAGE/cuda_intercept.so"
cp "target/$ARCH-unknown-linux-musl/release/cuda-fault" "$STAGE/cuda-fault"
chmod 0755 "$STAGE/cuda-fault" "$STAGE/cuda_intercept.so"

B="buildah --storage-driver vfs"
$B bud --isolation chroot --arch "$OCI_ARCH" --os linux -t "$IMAGE-$ARCH" -f manifests/Containerfile "$STAGE" >&2
rm -f "$OUT"
$B push "$IMAGE-$ARCH" "oci-archive:$OUT:$IMAGE" >&2
echo "$IMAGE $OUT"
