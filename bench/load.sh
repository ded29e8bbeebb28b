#!/usr/bin/env bash
# Load run of the HTTP path: signed OnAssignHuman callbacks through the real gateway, gRPC
# and router (each a new session, so each decides and reserves), against a baseline measured
# on the same server in the same run: GET /healthz, the gateway's bare HTTP answer.
# Needs wrk (apt-get install wrk). Tunables: DURATION, CONNECTIONS, THREADS, and STORE
# (embedded, the default: every assignment committed to disk before the answer; or memory).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
config=bench/handoff.bench.toml
base=http://127.0.0.1:18080

store=${STORE:-embedded}

cargo build --release --quiet --bin handoff
rm -f target/bench-handoff.redb
HANDOFF__ROUTER__STORE__KIND="$store" RUST_LOG=warn ./target/release/handoff --config "$config" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f target/bench-handoff.redb' EXIT
for _ in $(seq 50); do curl -fs "$base/readyz" >/dev/null && break; sleep 0.1; done

run() { wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@"; }
rps() { awk '/^Requests\/sec/ { print $2 }'; }

echo "== baseline: GET /healthz"
baseline=$(run "$base/healthz" | tee /dev/stderr | rps)

now=$(date +%s)
sign=$(printf '%s' "bench-token$now" | sha256sum | cut -d' ' -f1)
url="$base/?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&Sign=$sign&RequestTime=$now"
echo "== callback: signed OnAssignHuman, gateway -> gRPC -> router ($store store)"
callback=$(run -s bench/callback.lua "$url" | tee /dev/stderr | rps)

awk -v b="$baseline" -v c="$callback" 'BEGIN {
  printf "\nbaseline %.0f req/s, callback %.0f req/s: the callback path runs at %.2f of bare HTTP\n", b, c, c / b }'
