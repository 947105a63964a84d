#!/usr/bin/env bash
# ws6455-server against the peer echo servers (tokio-tungstenite, fastwebsockets), under
# the same load from target/release/loadgen, pinned the same way, interleaved, 3
# repetitions: prints one table of medians and ratios to the best peer.
#
#   benches/compare.sh [--seconds S] [--reps N] [--idle-conns N] [--threads N] [--servers a,b]
#                      [--peer NAME=COMMAND ...]   (another echo server: {port} in COMMAND)
#
# Needs taskset (util-linux) for pinning, python3, and for the syscall columns perf
# (Debian: linux-perf) allowed to trace (root, or kernel.perf_event_paranoid <= -1).
# Takes about 7 minutes with the defaults on a 2-core machine.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Two builds: a `--bin` filter would apply to both packages and skip the server binary.
cargo build --release -q -p ws6455-server --bins
cargo build --release -q -p ws6455-benches --bin loadgen --examples
cargo build --release -q -p ws6455-tokio --example echo_server
# 10k idle connections need a descriptor each on both sides.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 benches/compare.py "$@"
