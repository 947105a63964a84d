#!/usr/bin/env bash
# Runs the Autobahn fuzzing server and drives it with the ws6455 client
# (client/examples/autobahn_client.rs), then compares the results with
# autobahn/expected-client.json (fails on any regression).
#   autobahn/client.sh            # every case but the slow compression cases: of 12.* and
#                                 # 13.* only 12.1.* and 13.1.*
#   AUTOBAHN_FULL=1 autobahn/client.sh   # all 517 cases
#   autobahn/client.sh --write    # record the current results as the expectations
#   AUTOBAHN_CLIENT=blocking autobahn/client.sh   # the blocking std::net example client
#                                 # (core/examples/blocking_client.rs), same expectations
#   AUTOBAHN_CLIENT=tokio autobahn/client.sh      # the tokio client
#                                 # (io-tokio/examples/autobahn_tokio_client.rs), expected-client-tokio.json
# Needs wstest: ../shared/tools/autobahn/install.sh (`.ci/run` does it).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools="$(cd .. && pwd)/shared/tools/autobahn"
[[ -x "$tools/fuzzingserver.sh" ]] || { echo "autobahn harness not found at $tools" >&2; exit 2; }
port="${AUTOBAHN_PORT:-9002}"
exclude='12.2.*,12.3.*,12.4.*,12.5.*,13.2.*,13.3.*,13.4.*,13.5.*,13.6.*,13.7.*'
[[ "${AUTOBAHN_FULL:-0}" == 1 ]] && exclude=""
report="${AUTOBAHN_REPORT_DIR:-target/autobahn/client}"
rm -rf "$report"
mkdir -p "$report"
client_kind="${AUTOBAHN_CLIENT:-mio}"
expected=autobahn/expected-client.json
case "$client_kind" in
  mio) cargo build --release -p ws6455-client --example autobahn_client
       client=./target/release/examples/autobahn_client ;;
  blocking) cargo build --release -p ws6455-core --example blocking_client ;;
  tokio) cargo build --release -p ws6455-tokio --example autobahn_tokio_client
         client=./target/release/examples/autobahn_tokio_client
         expected=autobahn/expected-client-tokio.json ;;
  *) echo "AUTOBAHN_CLIENT: mio, blocking or tokio" >&2; exit 2 ;;
esac
AUTOBAHN_REPORT_DIR="$report" "$tools/fuzzingserver.sh" "$port" '*' "$exclude" > "$report/fuzzingserver.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$report/fuzzingserver.log" >&2; exit 1; }
  sleep 0.2
done
base="ws://127.0.0.1:$port"
if [[ "$client_kind" == blocking ]]; then
  # One process per case: the example prints what it receives, or echoes with --echo.
  client=./target/release/examples/blocking_client
  count="$(timeout 60 "$client" "$base/getCaseCount")"
  echo "$count cases"
  for case in $(seq 1 "$count"); do
    timeout 120 "$client" --echo "$base/runCase?case=$case&agent=ws6455" 2>/dev/null \
      || echo "case $case: the client failed or timed out" >&2
  done
  timeout 60 "$client" "$base/updateReports?agent=ws6455" >/dev/null
else
  timeout 2400 "$client" "$base" ws6455
fi
"$tools/summarize.sh" "$report" ws6455
python3 autobahn/check.py "$report" ws6455 "$expected" --exclude "$exclude" "$@"
