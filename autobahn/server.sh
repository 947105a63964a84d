#!/usr/bin/env bash
# Runs the Autobahn fuzzing client against `ws6455-server --mode echo` and compares the
# results with autobahn/expected-server.json (fails on any regression).
#   autobahn/server.sh            # every case but the compression groups 12.*, 13.*
#   autobahn/server.sh --write    # record the current results as the expectations
#   AUTOBAHN_TLS=1 autobahn/server.sh   # the same over wss:// (self-signed certificate)
# Needs wstest: ../shared/tools/autobahn/install.sh (`.ci/run` does it).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools="$(cd .. && pwd)/shared/tools/autobahn"
[[ -x "$tools/fuzzingclient.sh" ]] || { echo "autobahn harness not found at $tools" >&2; exit 2; }
port="${AUTOBAHN_PORT:-9001}"
report="${AUTOBAHN_REPORT_DIR:-target/autobahn/server}"
rm -rf "$report"
cargo build --release -p ws6455-server
scheme=ws
tls=()
if [[ "${AUTOBAHN_TLS:-0}" == 1 ]]; then
  # wstest does not verify the certificate: any self-signed one will do.
  cargo run -q --release -p ws6455-server --example self_signed_cert -- "$report-cert" 127.0.0.1
  scheme=wss
  tls=(--tls-cert "$report-cert/cert.pem" --tls-key "$report-cert/key.pem")
fi
./target/release/ws6455-server --mode echo --listen "127.0.0.1:$port" "${tls[@]}" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 0.5
# Not some other process that holds the port: ours must still be running.
kill -0 "$server" 2>/dev/null || { echo "ws6455-server did not start (port $port in use?)" >&2; exit 1; }
AUTOBAHN_REPORT_DIR="$report" AUTOBAHN_AGENT=ws6455 AUTOBAHN_TIMEOUT=1200 \
  "$tools/fuzzingclient.sh" "$scheme://127.0.0.1:$port" '*' '12.*,13.*'
kill -0 "$server" || { echo "the server died during the run" >&2; exit 1; }
python3 autobahn/check.py "$report" ws6455 autobahn/expected-server.json "$@"
