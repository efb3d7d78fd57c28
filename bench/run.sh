#!/usr/bin/env bash
# Benchmarks, side by side in one run: ns per call with faults off (direct call, through the
# shim's runtime export, through a driver trampoline from cuGetProcAddress_v2, through the dlsym
# override) against the original Dynamo tool's design (toggle file read + dlsym on every call); the
# cost of one
# dlsym lookup; toggle reaction; process start-up cost of the preload.
# Usage: bench/run.sh            (builds the shim in release mode first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p cuda-fault-shim >&2
SHIM=$PWD/target/release/libcuda_intercept.so
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
CFLAGS="-O2 -Wall -Wextra -Werror"
gcc $CFLAGS -shared -fPIC -Wl,-soname,libcudart.so.12 -o "$W/libcudart.so.12" bench/fake_target.c
gcc $CFLAGS -shared -fPIC -DFAKE_DRIVER -Wl,-soname,libcuda.so.1 -o "$W/libcuda.so.1" bench/fake_target.c
gcc $CFLAGS -shared -fPIC -o "$W/original_shim.so" bench/original_shim.c -ldl
gcc $CFLAGS -o "$W/bench" bench/bench.c "$W/libcudart.so.12" -ldl -Wl,-rpath,"$W"
gcc $CFLAGS -pthread -o "$W/reaction" bench/reaction.c "$W/libcudart.so.12" -Wl,-rpath,"$W"
gcc $CFLAGS -o "$W/startup" bench/startup.c
export LD_LIBRARY_PATH=$W
TOGGLE=$W/toggle
run() { env CUDA_FAULT_TOGGLE_FILE="$TOGGLE" "$@"; }

direct=$(run "$W/bench" runtime)
shim=$(run env LD_PRELOAD="$SHIM" "$W/bench" runtime)
driver_direct=$(run "$W/bench" gpa)
gpa=$(run env LD_PRELOAD="$SHIM" "$W/bench" gpa)
dls=$(run env LD_PRELOAD="$SHIM" "$W/bench" dlsym)
lookup_direct=$(run "$W/bench" lookup 2000000)
lookup_shim=$(run env LD_PRELOAD="$SHIM" "$W/bench" lookup 2000000)
mkdir -p /host-fault 2>/dev/null || true
orig_absent=$(env LD_PRELOAD="$W/original_shim.so" "$W/bench" runtime 200000)
orig_present=NA
if [ -w /host-fault ] && [ ! -e /host-fault/cuda_fault_enabled ]; then
  echo 0 > /host-fault/cuda_fault_enabled
  orig_present=$(env LD_PRELOAD="$W/original_shim.so" "$W/bench" runtime 200000)
  rm -f /host-fault/cuda_fault_enabled
fi
read -r react_med _ react_max _ < <(run env CUDA_FAULT_LOG=0 LD_PRELOAD="$SHIM" "$W/reaction" "$TOGGLE" 40 1 1)
# Under load: 64 busy threads on this machine's cores, 20 runs of 30 flips each; the worst run
# counts, and turning faults off and on apart (on is seen by the poller thread alone).
read -r load10_p50 load10_p99 load10_max load10_off load10_on _ < <(run env CUDA_FAULT_LOG=0 LD_PRELOAD="$SHIM" "$W/reaction" "$TOGGLE" 30 64 20)
read -r load0_p50 load0_p99 load0_max _ < <(run env CUDA_FAULT_LOG=0 CUDA_FAULT_POLL_MS=0 LD_PRELOAD="$SHIM" "$W/reaction" "$TOGGLE" 30 64 20)

# With faults on: every call takes the slow path. ns/call of a faulting call, and with a share.
on_path() {  # toggle line -> ns/call of cudaStreamQuery through the shim
  printf '%s\n' "$1" > "$TOGGLE"
  run env CUDA_FAULT_LOG=0 LD_PRELOAD="$SHIM" "$W/bench" faulting 2000000
}
on_all=$(on_path "1 48")
on_percent=$(on_path "1 48 percent=50 seed=1")
on_percent_count=$(on_path "1 48 percent=50 seed=1 count=18446744073709551615")
on_spared=$(on_path "1 48 functions=cudaMalloc")
rm -f "$TOGGLE"

# Start-up: /bin/true with no shim, the release shim and the shipped one (glibc 2.17 build,
# as the image carries it; needs cargo-zigbuild), 1000 starts each, interleaved.
SHIPPED=""
if command -v cargo-zigbuild >/dev/null; then
  SHIPPED=$(CUDA_FAULT_IMAGE_STAGE_ONLY=1 CUDA_FAULT_IMAGE_STAGE_DIR="$W/stage" manifests/image/build.sh x86_64 2>/dev/null | tail -1)/cuda_intercept.so
fi
{ read -r start_plain _; read -r _ _ start_shim _; read -r _ _ start_shipped _ || start_shipped=NA; } \
  < <("$W/startup" 1000 /bin/true "" "$SHIM" ${SHIPPED:+"$SHIPPED"})

# The image: its size and the init container's copy time (needs buildah, podman, runc, cargo-zigbuild).
image_size=NA; install_ms=NA
if command -v buildah >/dev/null && command -v podman >/dev/null && command -v cargo-zigbuild >/dev/null; then
  read -r image archive < <(manifests/image/build.sh x86_64 "$W/image.tar" 2>/dev/null | tail -1)
  P="podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs --root $W/store --runroot /tmp/cfb-$$"
  printf '[containers]\ndefault_ulimits = []\n' > "$W/containers.conf"
  export CONTAINERS_CONF=$W/containers.conf
  $P load --input "$archive" >/dev/null
  image_size=$($P image inspect --format '{{.Size}}' "$image")
  $P volume create benchvol >/dev/null
  best=999999
  for _ in 1 2 3 4 5; do
    t0=$(date +%s%N)
    $P run --rm --network none --read-only --user 65532:65532 --cap-drop ALL -v benchvol:/cuda-fault "$image" install /cuda-fault >/dev/null
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 )); [ "$ms" -lt "$best" ] && best=$ms
  done
  install_ms=$best
  $P rm --all --force >/dev/null 2>&1 || true; $P volume rm --all --force >/dev/null 2>&1 || true
  $P rmi --all --force >/dev/null 2>&1 || true
  rm -rf "/tmp/cfb-$$"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "-" }'; }
plus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f", a - b }'; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "Machine: $cpu, $(nproc) cores, $(uname -sr), $(ldd --version | head -1 | awk '{print $NF}' | sed 's/^/glibc /')"
echo
echo "| Path (faults off) | ns/call | vs direct |"
echo "|---|---|---|"
echo "| direct call into libcudart (no shim) | $direct | |"
echo "| shim runtime export (\`cudaStreamQuery\`) | $shim | $(plus "$shim" "$direct") ns |"
echo "| direct driver pointer from \`cuGetProcAddress_v2\` (no shim) | $driver_direct | |"
echo "| shim trampoline from \`cuGetProcAddress_v2\` | $gpa | $(plus "$gpa" "$driver_direct") ns |"
echo "| shim trampoline from \`dlsym(libcuda, …)\` | $dls | $(plus "$dls" "$driver_direct") ns |"
echo "| original Dynamo tool (file read + \`dlsym\` on every call), toggle file absent | $orig_absent | $(ratio "$orig_absent" "$shim")× the shim |"
echo "| original Dynamo tool, toggle file present | $orig_present | $(ratio "$orig_present" "$shim")× the shim |"
echo
echo "| Other | value |"
echo "|---|---|"
echo "| one \`dlsym(libcuda, \"cuStreamQuery\")\`, no shim / shim | $lookup_direct / $lookup_shim ns |"
echo "| toggle reaction, one busy thread, CUDA_FAULT_POLL_MS=10 (median / max of 40 flips: how long after a write a call could still start and see the old state) | $react_med / $react_max ms |"
echo "| the same with 64 busy threads, CUDA_FAULT_POLL_MS=10 (p50 / p99 / max over 20 runs of 30 flips; worst turning off / on) | $load10_p50 / $load10_p99 / $load10_max ms; $load10_off / $load10_on ms |"
echo "| the same with 64 busy threads, CUDA_FAULT_POLL_MS=0 (p50 / p99 / max over 20 runs of 30 flips) | $load0_p50 / $load0_p99 / $load0_max ms |"
echo "| start-up of /bin/true (median of 1000 starts each, interleaved): no shim; added by the release shim / the shipped shim | $start_plain ms; $start_shim / $start_shipped ms |"
echo "| image size (helper, generator and shim, FROM scratch) | $image_size bytes |"
echo "| init container install (podman run, container start included; best of 5) | $install_ms ms |"
echo
echo "| Faults on (runtime export, \`cudaStreamQuery\`) | ns/call |"
echo "|---|---|"
echo "| every call faults (\`1 48\`) | $on_all |"
echo "| half the calls fault (\`1 48 percent=50 seed=1\`) | $on_percent |"
echo "| same, with a \`count\` budget | $on_percent_count |"
echo "| spared by \`functions=cudaMalloc\` (forwarded after the slow path) | $on_spared |"
