#!/usr/bin/env bash
# The demo: the XID recovery story on the bundled fake CUDA stack, in well under a minute.
set -euo pipefail
cd "$(dirname "$0")"
cargo build -q -p cuda-fault -p cuda-fault-demo
exec target/debug/demo "$@"
