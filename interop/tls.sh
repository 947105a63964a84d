#!/usr/bin/env bash
# wss:// against an independent TLS stack and WebSocket implementation (Python's
# `websockets` over OpenSSL), both ways, with a self-signed certificate made here:
#   1. the Python client against `ws6455-server --mode echo --tls-cert --tls-key`;
#   2. `ws6455-client --ca` against a Python wss echo server (a 256 KiB line included);
#   3. `ws6455-client` without --ca refuses that server's certificate (exit 2).
# Needs Python's `websockets` (`.ci/run` installs it).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
port="${TLS_PORT:-9004}"
peer_port="${TLS_PEER_PORT:-9005}"
dir=target/interop-tls
cargo build --release -p ws6455-server -p ws6455-client
cargo run -q --release -p ws6455-server --example self_signed_cert -- "$dir" localhost 127.0.0.1
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

./target/release/ws6455-server --mode echo --listen "127.0.0.1:$port" --log warn \
  --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" &
pids+=($!)
sleep 0.5
kill -0 "${pids[0]}" 2>/dev/null || { echo "ws6455-server did not start (port $port in use?)" >&2; exit 1; }
timeout 90 python3 interop/python_peer.py client "wss://localhost:$port/" --ca "$dir/cert.pem"

timeout 150 python3 interop/python_peer.py server "$peer_port" --cert "$dir/cert.pem" --key "$dir/key.pem" &
pids+=($!)
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$peer_port") 2>/dev/null && break
  sleep 0.2
done
long="$(head -c 196608 /dev/urandom | base64 -w0)"
printf 'hello from ws6455\n%s\n' "$long" > "$dir/input.txt"
timeout 60 ./target/release/ws6455-client --ca "$dir/cert.pem" "wss://localhost:$peer_port/" \
  < "$dir/input.txt" > "$dir/output.txt"
cmp "$dir/input.txt" "$dir/output.txt" || { echo "FAIL: the echo differs" >&2; exit 1; }
echo "PASS: ws6455-client --ca against the python wss server: $(wc -c < "$dir/input.txt") bytes echoed"

status=0
echo x | timeout 60 ./target/release/ws6455-client "wss://localhost:$peer_port/" \
  2> "$dir/untrusted.txt" > /dev/null || status=$?
[[ $status == 2 ]] && grep -q "not signed by a trusted root" "$dir/untrusted.txt" \
  || { echo "FAIL: an untrusted certificate gave exit $status: $(cat "$dir/untrusted.txt")" >&2; exit 1; }
echo "PASS: without --ca the self-signed certificate is refused: $(cat "$dir/untrusted.txt")"

# 4. A certificate made the way most people make one, with OpenSSL's defaults (CA:TRUE on
# a self-signed certificate): `--ca` with that very certificate is trusted (webpki alone
# refuses a CA as the server's certificate); --insecure connects with a warning.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/openssl-key.pem" -out "$dir/openssl-cert.pem" 2>/dev/null
openssl_port="${TLS_OPENSSL_PORT:-9006}"
./target/release/ws6455-server --mode echo --listen "127.0.0.1:$openssl_port" --log warn \
  --tls-cert "$dir/openssl-cert.pem" --tls-key "$dir/openssl-key.pem" &
pids+=($!)
sleep 0.5
echo "openssl-made" | timeout 30 ./target/release/ws6455-client --ca "$dir/openssl-cert.pem" \
  "wss://localhost:$openssl_port/" > "$dir/openssl-out.txt"
grep -qx "openssl-made" "$dir/openssl-out.txt" \
  || { echo "FAIL: --ca with an openssl-made certificate: $(cat "$dir/openssl-out.txt")" >&2; exit 1; }
echo "PASS: ws6455-client --ca trusts an openssl req -x509 certificate (CA:TRUE)"
echo "insecure" | timeout 30 ./target/release/ws6455-client --insecure \
  "wss://127.0.0.1:$openssl_port/" > "$dir/insecure-out.txt" 2> "$dir/insecure-err.txt"
grep -qx "insecure" "$dir/insecure-out.txt" && grep -q "warning: --insecure" "$dir/insecure-err.txt" \
  || { echo "FAIL: --insecure: $(cat "$dir/insecure-out.txt" "$dir/insecure-err.txt")" >&2; exit 1; }
echo "PASS: ws6455-client --insecure connects and warns: $(cat "$dir/insecure-err.txt")"
