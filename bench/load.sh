#!/usr/bin/env bash
# The HTTP load run: signed OnAssignHuman callbacks through the real gateway, gRPC and router
# (each a new session, so each decides and reserves), for several floors and stores, each
# as a ratio to a ceiling measured right before it in the same run: a bare axum server that
# parses the same callback and answers a constant JSON (gateway/examples/ceiling.rs).
#
# Each floor and store is measured twice: paced at PACE callbacks/s for PACE_SECONDS
# (examples/pace.rs: latency from when each request was due), then as fast as wrk goes.
#
# Needs wrk (apt-get install wrk) and, for STORES with redis, redis-server on PATH.
# Tunables: FLOORS (24, 24+10000, 1000, 10000, 10000f: a CEL agent filter), STORES (memory,
# embedded, redis), DURATION (8s), CONNECTIONS (32), THREADS (2), PACE (1000), PACE_SECONDS (5),
# PORTS (the gateway's, the router's and the ceiling's: "18080 15051 18090").
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-8s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
floors=${FLOORS:-"24 24+10000 1000 10000 10000f"}
stores=${STORES:-"memory embedded redis"}
pace=${PACE:-1000}
pace_seconds=${PACE_SECONDS:-5}
ports=${PORTS:-"18080 15051 18090"}
read -r http_port grpc_port ceiling_port <<<"$ports"
base=http://127.0.0.1:$http_port
ceiling_addr=127.0.0.1:$ceiling_port

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --bin handoff
cargo build --release --quiet -p handoff-gateway --example ceiling
cargo build --release --quiet --example pace
target=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # url name pid
  for _ in $(seq 100); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { echo "$2 exited before serving; its log:" >&2; cat "$work/$2.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$2 did not start serving within 10 s; its log:" >&2; cat "$work/$2.log" >&2; exit 1
}

# A config for a floor: N agents in the target group (+M outside it), f = a CEL agent filter.
floor_config() {
  local spec=$1 inside outside=0 filter=""
  inside=${spec%%+*}; inside=${inside%f}
  [[ $spec == *+* ]] && outside=${spec#*+}
  [[ $spec == *f ]] && filter="agents = 'agent.attributes.seniority == \"senior\"'"
  cat <<CONF
[router]
listen = "127.0.0.1:$grpc_port"
[router.store]
path = "$work/state.redb"
[gateway]
listen = "127.0.0.1:$http_port"
router_url = "http://127.0.0.1:$grpc_port"
[[apps]]
sdk_app_id = 1400000001
token = "bench-token"
confirm_timeout = "2s"
[[apps.groups]]
id = 1
name = "floor"
[[apps.groups]]
id = 2
name = "elsewhere"
[[apps.rules]]
name = "default"
group = 1
$filter
CONF
  for ((n = 0; n < inside + outside; n++)); do
    local group=1 seniority=senior
    ((n >= inside)) && group=2
    ((n % 2)) && seniority=junior
    printf '[[apps.agents]]\nid = "agent%05d@example.com"\ngroups = [%d]\ncapacity = 10000\nattributes = { seniority = "%s" }\n' \
      "$n" "$group" "$seniority"
  done
}

measure() { # url -> "rps p50 p99 p999 errors"
  wrk -t"$threads" -c"$connections" -d"$duration" -s bench/callback.lua "$1" 2>&1 |
    awk '/^RESULT/ { print $2, $3, $4, $5, $6 }'
}

signed_url() {
  local now sign
  now=$(date +%s)
  sign=$(printf '%s' "bench-token$now" | sha256sum | cut -d' ' -f1)
  echo "$1/?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&Sign=$sign&RequestTime=$now"
}

"$target/release/examples/ceiling" "$ceiling_addr" >"$work/ceiling.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://$ceiling_addr/" && break; sleep 0.1; done

redis_url=""
if [[ " $stores " == *" redis "* ]]; then
  command -v redis-server >/dev/null || { echo "redis-server is not on PATH" >&2; exit 1; }
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis_url="redis://127.0.0.1:$port"
fi

# The machine's speed drifts over a run: the ceiling is measured again right before each
# row, and the row is divided by it.
printf '\n| floor | store | paced: /s | p50 ms | p99 ms | p99.9 ms | errors | flat out: callbacks/s | p50 ms | p99 ms | p99.9 ms | errors | ceiling /s | of the ceiling |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for floor in $floors; do
  floor_config "$floor" >"$work/handoff.toml"
  for store in $stores; do
    read -r ceiling _ < <(measure "$(signed_url "http://$ceiling_addr")")
    rm -f "$work/state.redb"
    [[ $store == redis ]] && redis-cli -u "$redis_url" flushall >/dev/null
    HANDOFF__ROUTER__STORE__KIND="$store" HANDOFF__ROUTER__STORE__URL="${redis_url:-redis://unused}" \
      RUST_LOG=warn "$target/release/handoff" --config "$work/handoff.toml" >"$work/handoff.log" 2>&1 &
    server=$!
    pids+=("$server")
    wait_for "$base/readyz" handoff "$server"
    read -r paced q50 q99 q999 qerr < <("$target/release/examples/pace" "$base" "$pace" "$pace_seconds" bench-token |
      awk '/^PACED/ { print $2, $3, $4, $5, $6 }')
    read -r rps p50 p99 p999 errors < <(measure "$(signed_url "$base")")
    kill "$server"; wait "$server" 2>/dev/null || true
    printf '| %s | %s | %s | %s | %s | %s | %s | ' "$floor" "$store" "$paced" "$q50" "$q99" "$q999" "$qerr"
    awk -v r="$rps" -v a="$p50" -v b="$p99" -v c="$p999" -v e="$errors" -v base="$ceiling" \
      'BEGIN { printf "%.0f | %s | %s | %s | %s | %.0f | %.2f |\n", r, a, b, c, e, base, r / base }'
  done
done
