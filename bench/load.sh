#!/usr/bin/env bash
# The HTTP load run: signed OnAssignHuman callbacks through the real gateway, gRPC and router
# (each a new session, so each decides and reserves), for several floors and stores, each
# as a ratio to a ceiling measured right before it in the same run: a bare axum server that
# parses the same callback and answers a constant JSON (gateway/examples/ceiling.rs).
#
# Each row runs in one of two shapes: `one`, the all-in-one `handoff` (the gateway calls its
# router in process), or `two`, `handoff-gateway` and `handoff-router` as two processes over
# gRPC, the design's own shape. A `two` row also measures the hop's own ceiling right
# before it (gateway/examples/hop.rs: the bare ceiling making the same AssignHuman call as
# the gateway makes it, on a Multiplex stream with the gateway's own client, to a bare tonic
# server), shown beside it.
#
# Each floor and store is measured twice: paced at PACE callbacks/s for PACE_SECONDS
# (examples/pace.rs: latency from when each request was due), then as fast as wrk goes.
#
# Needs wrk (apt-get install wrk) and, for STORES with redis, redis-server on PATH.
# Tunables: FLOORS (example: the example config's app, groups and rules, five of them, four
# with a CEL `when`, over 24 agents in its groups; 24, 24+10000, 1000, 10000, 10000f: one rule
# without CEL over N agents in its group, +M outside it, f: with a CEL agent filter), STORES
# (memory, embedded, redis), SHAPES (one, two), DURATION (8s), CONNECTIONS (32), THREADS (2),
# PACE (1000), PACE_SECONDS (5), PORTS (the gateway's, the router's, the ceiling's, the hop
# ceiling's and its bare router's: "18080 15051 18090 18091 15091").
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-8s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
floors=${FLOORS:-"example 24 24+10000 1000 10000 10000f"}
stores=${STORES:-"memory embedded redis"}
shapes=${SHAPES:-"one two"}
pace=${PACE:-1000}
pace_seconds=${PACE_SECONDS:-5}
ports=${PORTS:-"18080 15051 18090 18091 15091"}
read -r http_port grpc_port ceiling_port hop_port echo_port <<<"$ports"
base=http://127.0.0.1:$http_port
ceiling_addr=127.0.0.1:$ceiling_port
hop_addr=127.0.0.1:$hop_port

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --bin handoff --bin handoff-router --bin handoff-gateway
cargo build --release --quiet -p handoff-gateway --example ceiling --example hop
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

# The example config's app (its settings, groups and rules) over 24 agents of capacity
# 10,000 in its groups, with skills and attributes its rules read. Left out: its own agents
# and customers (a dozen agents of two to five seats would be full at once), its fair
# share (12 sessions an hour each), and its token (the bench signs with its own).
example_config() {
  local text
  text=$(<config/handoff.example.toml)
  local app=${text#*$'\n[[apps]]\n'}
  app=${app%%$'\n[[apps.agents]]\n'*}
  local rules=${text#*$'\n[[apps.rules]]\n'}
  printf '[router]\nlisten = "127.0.0.1:%s"\n[router.store]\npath = "%s/state.redb"\n' "$grpc_port" "$work"
  printf '[gateway]\nlisten = "127.0.0.1:%s"\nrouter_url = "http://127.0.0.1:%s"\n' "$http_port" "$grpc_port"
  printf '[[apps]]\nconfirm_timeout = "2s"\ntoken = "bench-token"\n'
  grep -v -e '^token = ' -e '^fair_share = ' <<<"$app"
  local n others=(6522 6523 6524)
  for ((n = 0; n < 24; n++)); do
    printf '[[apps.agents]]\nid = "agent%05d@example.com"\ngroups = [6521, %d]\ncapacity = 10000\n' "$n" "${others[n % 3]}"
    printf 'skills = { products = %d, "language.zh" = %d, billing = %d }\n' $((n % 6)) $((n % 5 + 1)) $((n % 4))
    printf 'attributes = { seniority = "%s" }\n' "$( ((n % 2)) && echo junior || echo senior)"
  done
  printf '[[apps.rules]]\n%s\n' "$rules"
}

# A config for a floor: N agents in the target group (+M outside it), f = a CEL agent filter.
floor_config() {
  local spec=$1 inside outside=0 filter=""
  [[ $spec == example ]] && { example_config; return; }
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

start() { # name binary -> pid, serving the config with $store
  HANDOFF__ROUTER__STORE__KIND="$store" HANDOFF__ROUTER__STORE__URL="${redis_url:-redis://unused}" \
    RUST_LOG=warn "$target/release/$2" --config "$work/handoff.toml" >"$work/$1.log" 2>&1 &
  pids+=($!)
  server=$!
}

# The machine's speed drifts over a run: the ceiling is measured again right before each
# row, and the row is divided by it.
printf '\n| floor | store | shape | paced: /s | p50 ms | p99 ms | p99.9 ms | errors | flat out: callbacks/s | p50 ms | p99 ms | p99.9 ms | errors | ceiling /s | of the ceiling | hop ceiling /s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for floor in $floors; do
  floor_config "$floor" >"$work/handoff.toml"
  for store in $stores; do
    for shape in $shapes; do
      read -r ceiling _ < <(measure "$(signed_url "http://$ceiling_addr")")
      hop="-"
      if [[ $shape == two ]]; then
        "$target/release/examples/hop" echo "127.0.0.1:$echo_port" >"$work/echo.log" 2>&1 &
        echo_pid=$!
        "$target/release/examples/hop" ceiling-mux "$hop_addr" "http://127.0.0.1:$echo_port" >"$work/hop.log" 2>&1 &
        hop_pid=$!
        for _ in $(seq 50); do curl -s -o /dev/null "http://$hop_addr/" && break; sleep 0.1; done
        read -r hop _ < <(measure "$(signed_url "http://$hop_addr")")
        kill "$hop_pid" "$echo_pid"; wait "$hop_pid" "$echo_pid" 2>/dev/null || true
      fi
      rm -rf "$work"/state.redb*
      [[ $store == redis ]] && redis-cli -u "$redis_url" flushall >/dev/null
      running=()
      if [[ $shape == one ]]; then
        start handoff handoff; running+=("$server")
      else
        start router handoff-router; running+=("$server")
        start gateway handoff-gateway; running+=("$server")
      fi
      wait_for "$base/readyz" "$([[ $shape == one ]] && echo handoff || echo gateway)" "$server"
      read -r paced q50 q99 q999 qerr < <("$target/release/examples/pace" "$base" "$pace" "$pace_seconds" bench-token |
        awk '/^PACED/ { print $2, $3, $4, $5, $6 }')
      read -r rps p50 p99 p999 errors < <(measure "$(signed_url "$base")")
      for pid in "${running[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | ' "$floor" "$store" "$shape" "$paced" "$q50" "$q99" "$q999" "$qerr"
      awk -v r="$rps" -v a="$p50" -v b="$p99" -v c="$p999" -v e="$errors" -v base="$ceiling" -v hop="$hop" \
        'BEGIN { printf "%.0f | %s | %s | %s | %s | %.0f | %.2f | %s |\n", r, a, b, c, e, base, r / base, hop }'
    done
  done
done
