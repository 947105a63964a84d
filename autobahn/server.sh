#!/usr/bin/env bash
# Runs the Autobahn fuzzing client against `ws6455-server --mode echo` and compares the
# results with autobahn/expected-server.json (fails on any regression).
#   autobahn/server.sh            # every case but the slow compression cases: of 12.* and
#                                 # 13.* only 12.1.* and 13.1.* (about 2 minutes)
#   AUTOBAHN_FULL=1 autobahn/server.sh   # all 517 cases (about 13 minutes more)
#   autobahn/server.sh --write    # record the current results as the expectations
#   AUTOBAHN_TLS=1 autobahn/server.sh   # the same over wss:// (self-signed certificate)
#   AUTOBAHN_SERVER=blocking autobahn/server.sh   # the blocking std::net example server
#                                 # (core/examples/blocking_server.rs), same expectations
#   AUTOBAHN_SERVER=tokio autobahn/server.sh      # the tokio echo server
#                                 # (io-tokio/examples/echo_server.rs), expected-server-tokio.json
# Needs wstest: ../shared/tools/autobahn/install.sh (`.ci/run` does it).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools="$(cd .. && pwd)/shared/tools/autobahn"
[[ -x "$tools/fuzzingclient.sh" ]] || { echo "autobahn harness not found at $tools" >&2; exit 2; }
port="${AUTOBAHN_PORT:-9001}"
# The compression groups take 13 minutes on the suite's side; CI runs their first parts.
exclude='12.2.*,12.3.*,12.4.*,12.5.*,13.2.*,13.3.*,13.4.*,13.5.*,13.6.*,13.7.*'
[[ "${AUTOBAHN_FULL:-0}" == 1 ]] && exclude=""
report="${AUTOBAHN_REPORT_DIR:-target/autobahn/server}"
rm -rf "$report"
server_kind="${AUTOBAHN_SERVER:-mio}"
expected=autobahn/expected-server.json
cargo build --release -p ws6455-server
case "$server_kind" in
  mio) ;;
  blocking) cargo build --release -p ws6455-core --example blocking_server ;;
  tokio) cargo build --release -p ws6455-tokio --example echo_server
         expected=autobahn/expected-server-tokio.json ;;
  *) echo "AUTOBAHN_SERVER: mio, blocking or tokio" >&2; exit 2 ;;
esac
scheme=ws
tls=()
if [[ "${AUTOBAHN_TLS:-0}" == 1 ]]; then
  # wstest does not verify the certificate: any self-signed one will do.
  cargo run -q --release -p ws6455-server --example self_signed_cert -- "$report-cert" 127.0.0.1
  scheme=wss
  tls=(--tls-cert "$report-cert/cert.pem" --tls-key "$report-cert/key.pem")
fi
if [[ "$server_kind" != mio ]]; then
  [[ ${#tls[@]} -eq 0 ]] || { echo "the $server_kind example server speaks ws:// only" >&2; exit 2; }
  if [[ "$server_kind" == blocking ]]; then
    ./target/release/examples/blocking_server "127.0.0.1:$port" &
  else
    ./target/release/examples/echo_server "127.0.0.1:$port" &
  fi
else
  ./target/release/ws6455-server --mode echo --deflate --listen "127.0.0.1:$port" "${tls[@]}" &
fi
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 0.5
# Not some other process that holds the port: ours must still be running.
kill -0 "$server" 2>/dev/null || { echo "ws6455-server did not start (port $port in use?)" >&2; exit 1; }
AUTOBAHN_REPORT_DIR="$report" AUTOBAHN_AGENT=ws6455 AUTOBAHN_TIMEOUT=2400 \
  "$tools/fuzzingclient.sh" "$scheme://127.0.0.1:$port" '*' "$exclude"
kill -0 "$server" || { echo "the server died during the run" >&2; exit 1; }
python3 autobahn/check.py "$report" ws6455 "$expected" --exclude "$exclude" "$@"
