#!/usr/bin/env bash
# permessage-deflate against an independent implementation (Python's `websockets`, which
# offers and accepts it by default, on zlib), both ways:
#   1. the Python client against `ws6455-server --mode echo --deflate` (it must accept);
#   2. `ws6455-client --deflate` against a Python echo server (compressible and
#      incompressible lines, 256 KiB included), the negotiation checked on the server.
# Needs Python's `websockets` (`.ci/run` installs it).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
port="${DEFLATE_PORT:-9006}"
peer_port="${DEFLATE_PEER_PORT:-9007}"
dir=target/interop-deflate
mkdir -p "$dir"
cargo build --release -p ws6455-server -p ws6455-client
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

./target/release/ws6455-server --mode echo --deflate --listen "127.0.0.1:$port" --log warn &
pids+=($!)
sleep 0.5
kill -0 "${pids[0]}" 2>/dev/null || { echo "ws6455-server did not start (port $port in use?)" >&2; exit 1; }
timeout 90 python3 interop/python_peer.py client "ws://127.0.0.1:$port/" --expect-deflate

timeout 150 python3 interop/python_peer.py server "$peer_port" > "$dir/peer.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$peer_port") 2>/dev/null && break
  sleep 0.2
done
{
  echo "hello from ws6455"
  python3 -c 'print("the same words again and again " * 8000)'
  echo
  head -c 196608 /dev/urandom | base64 -w0; echo
  echo "ünïcödé ✓"
} > "$dir/input.txt"
# -v prints the negotiated extensions on stderr.
timeout 60 ./target/release/ws6455-client --deflate -v "ws://127.0.0.1:$peer_port/" \
  < "$dir/input.txt" > "$dir/output.txt" 2> "$dir/client.log"
cmp "$dir/input.txt" "$dir/output.txt" || { echo "FAIL: the echo differs" >&2; exit 1; }
grep -q "permessage-deflate" "$dir/client.log" \
  || { echo "FAIL: deflate not negotiated: $(cat "$dir/client.log")" >&2; exit 1; }
echo "PASS: ws6455-client --deflate against the python server: $(wc -c < "$dir/input.txt") bytes echoed; $(grep -m1 permessage-deflate "$dir/client.log")"
