#!/usr/bin/env bash
# Every check of the project, from a fresh Debian machine: installs what the tests need (and
# only what is missing, saying so), then runs `cargo fmt --check`, `cargo clippy -D warnings`
# and `cargo test --workspace`, then `ruff` and the Python package's `pytest` suite (which builds
# the wheel). Needs the Rust toolchain (rustup), gcc, python3 with pip, kubectl
# (for its built-in kustomize) and root or sudo for the Debian packages. Run it again at will:
# what is there is skipped.
#   ./test.sh               set up, then run everything
#   ./test.sh --setup-only  set up only
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
say() { echo "== $*"; }

# buildah/podman/runc: the image build and the container tests; qemu-user with the aarch64 cross
# gcc and glibc: the aarch64 shim test; musl-tools: the musl program the shim must load into;
# patchelf: the image build; util-linux (setpriv, unshare) and binutils: permission and ELF tests.
PACKAGES=(binutils util-linux buildah podman runc qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross musl-tools patchelf)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages: all there"
fi

# Containers in CI machines may not raise ulimits: podman must not try.
conf=/etc/containers/containers.conf.d/cuda-fault-tests.conf
if [ ! -f "$conf" ]; then
  say "writing $conf (podman: no default ulimits)"
  $SUDO mkdir -p "$(dirname "$conf")"
  printf '[containers]\ndefault_ulimits = []\n' | $SUDO tee "$conf" >/dev/null
fi

# NVIDIA's real CUDA runtimes (12.x and 13.x), pynvml, and zig (for the glibc-2.17 and static
# builds of the shipped files); maturin (the Python wheel), pytest and ruff (the Python package's
# tests and lint).
PY_PACKAGES=(nvidia-cuda-runtime-cu12 nvidia-cuda-runtime nvidia-ml-py cargo-zigbuild maturin pytest ruff)
py_missing=()
for p in "${PY_PACKAGES[@]}"; do
  python3 -m pip show --quiet "$p" >/dev/null 2>&1 || py_missing+=("$p")
done
if [ ${#py_missing[@]} -gt 0 ]; then
  say "installing Python packages: ${py_missing[*]}"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${py_missing[@]}"
else
  say "Python packages: all there"
fi
command -v cargo-zigbuild >/dev/null || { echo "cargo-zigbuild is not on PATH after pip install" >&2; exit 1; }

TARGETS=(aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
installed=$(rustup target list --installed)
targets_missing=()
for t in "${TARGETS[@]}"; do grep -qx "$t" <<<"$installed" || targets_missing+=("$t"); done
if [ ${#targets_missing[@]} -gt 0 ]; then
  say "adding rustup targets: ${targets_missing[*]}"
  rustup target add "${targets_missing[@]}"
else
  say "rustup targets: all there"
fi
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || { say "adding rustup component $c"; rustup component add "$c"; }
done

command -v kubectl >/dev/null || { echo "kubectl is not installed: the kustomize render tests need it (https://kubernetes.io/docs/tasks/tools/)" >&2; exit 1; }
say "kubectl: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"

[ "${1:-}" = "--setup-only" ] && exit 0

say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo test --workspace"
cargo test --workspace
say "ruff check, ruff format --check (python/, examples/)"
python3 -m ruff check
python3 -m ruff format --check
say "pytest python/tests (the wheel built and installed into a fresh venv; the API, the plugin, the example)"
python3 -m pytest
