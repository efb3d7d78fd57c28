#!/usr/bin/env bash
# Builds the cuda-fault image without a daemon and writes it as an OCI archive.
#   manifests/image/build.sh [x86_64|aarch64] [OUTPUT.tar]
# - the shim for glibc >= 2.17 (cargo-zigbuild), so it loads in every CUDA image in use
#   (build-shim.sh, which the Python wheel's build uses as well);
# - the helper and cuda-fault-kustomize as static musl binaries (they run in FROM scratch);
# - buildah (vfs storage, chroot isolation: no daemon, no privileges beyond root in CI).
# Prints "IMAGE ARCHIVE" on the last line. Needs: rustup targets, cargo-zigbuild, buildah.
#
# Environment:
#   CUDA_FAULT_IMAGE_NAME        image name without tag (default ghcr.io/cuda-fault/cuda-fault)
#   CUDA_FAULT_IMAGE_TARGET_DIR  cargo target dir of these builds (default target/image-build).
#       A target dir of its own: `cargo test` holds the lock of the workspace target dir for its
#       whole run, so a test that runs this script with that same dir would wait forever.
#   CUDA_FAULT_IMAGE_STAGE_DIR   where the three files are staged (default <target dir>/stage-ARCH;
#       emptied first).
#   CUDA_FAULT_IMAGE_STAGE_ONLY=1  build and stage the three files only (no buildah); the last
#       line is then the staging directory (holding cuda-fault, cuda-fault-kustomize and
#       cuda_intercept.so).
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:-x86_64}
OUT=${2:-target/image/cuda-fault-$ARCH.tar}
TARGET_DIR=${CUDA_FAULT_IMAGE_TARGET_DIR:-target/image-build}
STAGE_ONLY=${CUDA_FAULT_IMAGE_STAGE_ONLY:-0}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE=${CUDA_FAULT_IMAGE_NAME:-ghcr.io/cuda-fault/cuda-fault}:$VERSION
case "$ARCH" in
  x86_64) OCI_ARCH=amd64 ;;
  aarch64) OCI_ARCH=arm64 ;;
  *) echo "unsupported architecture $ARCH (x86_64, aarch64)" >&2; exit 2 ;;
esac
command -v cargo-zigbuild >/dev/null || { echo "cargo-zigbuild is missing: pip install cargo-zigbuild" >&2; exit 1; }
if [ "$STAGE_ONLY" != 1 ]; then
  command -v buildah >/dev/null || { echo "buildah is missing: apt-get install buildah" >&2; exit 1; }
fi

# One build for both static binaries: they share most dependencies.
cargo zigbuild --release -p cuda-fault -p cuda-fault-kustomize --target "$ARCH-unknown-linux-musl" --target-dir "$TARGET_DIR" >&2

STAGE=${CUDA_FAULT_IMAGE_STAGE_DIR:-$TARGET_DIR/stage-$ARCH}
rm -rf "$STAGE" && mkdir -p "$STAGE"
# The shim as the wheel ships it too (glibc 2.17, no loader entry): one recipe for both.
CUDA_FAULT_IMAGE_TARGET_DIR="$TARGET_DIR" manifests/image/build-shim.sh "$ARCH" "$STAGE/cuda_intercept.so"
for bin in cuda-fault cuda-fault-kustomize; do
  cp "$TARGET_DIR/$ARCH-unknown-linux-musl/release/$bin" "$STAGE/$bin"
done
chmod 0755 "$STAGE/cuda-fault" "$STAGE/cuda-fault-kustomize" "$STAGE/cuda_intercept.so"
if [ "$STAGE_ONLY" = 1 ]; then
  echo "$(cd "$STAGE" && pwd)"
  exit 0
fi

mkdir -p "$(dirname "$OUT")"
B="buildah --storage-driver vfs"
OLD_ID=$($B images -q --no-trunc "$IMAGE-$ARCH" 2>/dev/null || true)
$B bud --isolation chroot --arch "$OCI_ARCH" --os linux -t "$IMAGE-$ARCH" -f manifests/Containerfile "$STAGE" >&2
NEW_ID=$($B images -q --no-trunc "$IMAGE-$ARCH")
# The previous build of this tag, now untagged, would stay in the store for ever.
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then $B rmi "$OLD_ID" >/dev/null 2>&1 || true; fi
rm -f "$OUT"
$B push "$IMAGE-$ARCH" "oci-archive:$OUT:$IMAGE" >&2
echo "$IMAGE $OUT"
