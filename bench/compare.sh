#!/usr/bin/env bash
# What a change costs per callback: the all-in-one built from BASE (a git ref, default the
# commit before HEAD~N given as the first argument) and from the working tree, alternated
# ROUNDS times (3) on the same floor (FLOOR agents, 24), store (STORE, memory) and machine,
# flat out with wrk (DURATION 8s, CONNECTIONS 32), each run divided by the bare ceiling
# (gateway/examples/ceiling.rs) measured right before it, with the server's CPU time per
# callback (from /proc). Prints each run and the ratios of the medians, new / base: 0.97
# of the ceiling means the change costs 3 % of the throughput; 1.03 of the CPU, 3 % more
# work per callback (the steadier of the two on a noisy machine).
#
#   bench/compare.sh 3aa16c3        # this tree against commit 3aa16c3
#   COUNT=instructions bench/compare.sh 3aa16c3
#
# With COUNT=instructions each build instead serves DURATION of callbacks (4 connections)
# under valgrind's callgrind, which counts the instructions the server ran per callback:
# the same figure whatever else the machine is doing (needs valgrind), where wall-clock
# ratios on a small shared machine move by several per cent between runs.
#
# Needs wrk. BASE is built in a worktree of its own under target/compare (first run: a
# release build of it, minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
base_ref=${1:?usage: bench/compare.sh BASE_REF}
rounds=${ROUNDS:-3}
floor=${FLOOR:-24}
store=${STORE:-memory}
duration=${DURATION:-8s}
connections=${CONNECTIONS:-32}
ports=${PORTS:-"18180 15151 18190"}
read -r http grpc ceiling_port <<<"$ports"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

target=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --quiet --bin handoff
cargo build --release --quiet -p handoff-gateway --example ceiling
new_bin="$target/release/handoff"
tree="$target/compare/tree"
rm -rf "$tree"; git worktree prune
git worktree add --detach --force "$tree" "$base_ref" >/dev/null
(cd "$tree" && CARGO_TARGET_DIR="$target/compare/target" cargo build --release --quiet --bin handoff)
base_bin="$target/compare/target/release/handoff"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  git worktree remove --force "$tree" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

{
  printf '[router]\nlisten = "127.0.0.1:%s"\n[router.store]\nkind = "%s"\npath = "%s/state.redb"\n' "$grpc" "$store" "$work"
  printf '[gateway]\nlisten = "127.0.0.1:%s"\n[[apps]]\nsdk_app_id = 1400000001\ntoken = "bench-token"\nconfirm_timeout = "2s"\n' "$http"
  printf '[[apps.groups]]\nid = 1\nname = "floor"\n'
  for ((n = 0; n < floor; n++)); do
    printf '[[apps.agents]]\nid = "agent%05d@example.com"\ngroups = [1]\ncapacity = 10000\n' "$n"
  done
} >"$work/handoff.toml"

signed_url() {
  local now sign
  now=$(date +%s)
  sign=$(printf '%s' "bench-token$now" | sha256sum | cut -d' ' -f1)
  echo "$1/?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&Sign=$sign&RequestTime=$now"
}
measure() {
  wrk -t2 -c"$connections" -d"$duration" -s bench/callback.lua "$(signed_url "$1")" 2>&1 |
    awk '/^RESULT/ { print $2 }'
}

"$target/release/examples/ceiling" "127.0.0.1:$ceiling_port" >"$work/ceiling.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$ceiling_port/" && break; sleep 0.1; done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run() { # binary -> "rps ceiling ratio cpu_us": cpu_us is the server's CPU time per callback
  local ceiling rps server before after seconds
  ceiling=$(measure "http://127.0.0.1:$ceiling_port")
  rm -rf "$work"/state.redb*
  RUST_LOG=warn "$1" --config "$work/handoff.toml" >"$work/handoff.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  before=$(cpu_ticks "$server")
  rps=$(measure "http://127.0.0.1:$http")
  after=$(cpu_ticks "$server")
  kill "$server"; wait "$server" 2>/dev/null || true
  seconds=${duration%s}
  awk -v r="$rps" -v c="$ceiling" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v s="$seconds" \
    'BEGIN { printf "%.0f %.0f %.3f %.1f\n", r, c, r / c, t / hz * 1e6 / (r * s) }'
}

median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

instructions() { # binary -> instructions the server ran per callback, under callgrind
  local server before now sign url requests total
  rm -rf "$work"/state.redb*
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    "$1" --config "$work/handoff.toml" >"$work/handoff.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  callgrind_control -z "$server" >/dev/null 2>&1
  requests=$(wrk -t1 -c4 -d"$duration" -s bench/callback.lua "$(signed_url "http://127.0.0.1:$http")" |
    awk '/requests in/ { print $1 }')
  callgrind_control -d "$server" >/dev/null 2>&1
  kill "$server"; wait "$server" 2>/dev/null || true
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$work/callgrind.out.1")
  rm -f "$work"/callgrind.out*
  echo $((total / requests))
}

if [[ ${COUNT:-} == instructions ]]; then
  command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
  printf '| round | build | instructions per callback |\n|---|---|---|\n'
  for which in base new; do : >"$work/$which"; done
  for ((round = 1; round <= rounds; round++)); do
    for which in base new; do
      bin=$base_bin; [[ $which == new ]] && bin=$new_bin
      count=$(instructions "$bin")
      echo "$count" >>"$work/$which"
      printf '| %d | %s | %s |\n' "$round" "$which" "$count"
    done
  done
  awk -v b="$(median "$work/base")" -v n="$(median "$work/new")" \
    'BEGIN { printf "\nmedians: base %d, new %d instructions per callback (new / base = %.3f)\n", b, n, n / b }'
  exit 0
fi

printf '| round | build | callbacks/s | ceiling /s | of the ceiling | server CPU per callback (us) |\n|---|---|---|---|---|---|\n'
for which in base new; do : >"$work/$which"; : >"$work/$which.cpu"; done
for ((round = 1; round <= rounds; round++)); do
  for which in base new; do
    bin=$base_bin; [[ $which == new ]] && bin=$new_bin
    read -r rps ceiling ratio cpu < <(run "$bin")
    echo "$ratio" >>"$work/$which"
    echo "$cpu" >>"$work/$which.cpu"
    printf '| %d | %s | %s | %s | %s | %s |\n' "$round" "$which" "$rps" "$ceiling" "$ratio" "$cpu"
  done
done
awk -v b="$(median "$work/base")" -v n="$(median "$work/new")" \
  -v bc="$(median "$work/base.cpu")" -v nc="$(median "$work/new.cpu")" \
  'BEGIN { printf "\nmedians: of the ceiling base %.3f, new %.3f (new / base = %.3f); CPU per callback base %.1f us, new %.1f us (new / base = %.3f)\n", b, n, n / b, bc, nc, nc / bc }'
