#!/usr/bin/env bash
# Counts an echo server's calls to malloc, free and realloc per echoed message, with
# uprobes on the C library's allocator (every Rust allocation goes through them):
#
#   benches/allocs.sh [--in-flight D] [--size BYTES] [--conns N] [-- COMMAND ...]
#
# COMMAND is the server, {port} in it replaced by a free port; by default
# target/release/ws6455-server --mode echo. loadgen (target/release) runs 3 s with no
# warm-up; the counts cover the whole run (the handshakes of N connections included,
# a few hundred calls next to millions). Uprobes trap on every call, so the server
# runs 5-20x slower meanwhile: the counts are the figure, not the rate.
# Needs root and perf (Debian: linux-perf); adds the probes once (perf probe -d to remove).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
in_flight=16 size=64 conns=100
while [[ $# -gt 0 ]]; do
    case "$1" in
        --in-flight) in_flight=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --conns) conns=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "allocs.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] || set -- target/release/ws6455-server --mode echo --log error --listen "127.0.0.1:{port}"
libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
for fn in malloc free realloc; do
    perf probe -l 2>/dev/null | grep -q "probe_libc:$fn " || perf probe -q -x "$libc" --add "$fn"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
command=("${@//\{port\}/$port}")
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 0 "${command[@]}" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
perf stat -x, -o "$work/stat" -e probe_libc:malloc,probe_libc:free,probe_libc:realloc -p "$server" &
stat=$!
sleep 0.2
out=$(taskset -c 1 target/release/loadgen echo --url "ws://127.0.0.1:$port/" --conns "$conns" \
    --size "$size" --in-flight "$in_flight" --seconds 3 --warmup 0)
kill -INT "$stat"
wait "$stat" || true
messages=$(grep -o 'messages=[0-9]*' <<<"$out" | cut -d= -f2)
echo "$conns x $size B, $in_flight in flight: $messages messages echoed"
awk -F, -v m="$messages" '/probe_libc/ { sub("probe_libc:", "", $3); printf "  %-8s %10d  %.2f per message\n", $3, $1, $1 / m }' "$work/stat"
