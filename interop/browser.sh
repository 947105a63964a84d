#!/usr/bin/env bash
# A real browser (headless Chromium) against `ws6455-server --mode echo`, over ws:// and
# then wss:// (a self-signed certificate, which the browser is told to accept): text
# with non-ASCII, empty text, binary up to 1 MiB, a close with an application code.
# interop/browser.html does the work and writes PASS or FAIL into the page.
# Needs chromium (Debian package `chromium`) and Python's `websockets` (for the DevTools
# protocol that reads the verdict).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
port="${BROWSER_PORT:-9003}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$browser" ]] || { echo "chromium not found" >&2; exit 2; }
cargo build --release -p ws6455-server
# The page is a file: its Origin is "null", which the server allows only when told.
./target/release/ws6455-server --mode echo --listen "127.0.0.1:$port" --log warn --allow-origin null &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 0.5
kill -0 "$server" 2>/dev/null || { echo "ws6455-server did not start (port $port in use?)" >&2; exit 1; }
page="file://$PWD/interop/browser.html?url=ws://127.0.0.1:$port/"
python3 interop/browser_run.py "$browser" "$page" 60

dir=target/interop-browser-tls
cargo run -q --release -p ws6455-server --example self_signed_cert -- "$dir" 127.0.0.1
tls_port=$((port + 10))
./target/release/ws6455-server --mode echo --listen "127.0.0.1:$tls_port" --log warn --allow-origin null \
  --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" &
tls_server=$!
trap 'kill "$server" "$tls_server" 2>/dev/null || true' EXIT
sleep 0.5
kill -0 "$tls_server" 2>/dev/null || { echo "ws6455-server (TLS) did not start" >&2; exit 1; }
page="file://$PWD/interop/browser.html?url=wss://127.0.0.1:$tls_port/"
python3 interop/browser_run.py "$browser" "$page" 60 --ignore-certificate-errors
