#!/usr/bin/env bash
# Two (or more) gateway binaries side by side, in front of the same 5 sticky-svc replicas,
# alternated A B A B so the drift of a shared machine hits all alike: requests/s, p99 and the
# gateway's CPU µs per request of each run, then the medians. For judging a change to the
# request path: build the old binary, copy it aside, build the new one. `BINARY@HTTP2` runs that
# binary with HTTP/2 to the replicas (ServiceEntry port protocol HTTP2).
#
#   cp target/x86_64-unknown-linux-gnu/release/gateway /tmp/gateway-old   # before the change
#   W=2 bench/gateway-ab.sh /tmp/gateway-old target/x86_64-unknown-linux-gnu/release/gateway
#
# W workers (1: each gateway pinned to CPU 0, replicas and wrk to CPU 1), ROUNDS rounds of D
# seconds, wrk -t1 -c64 over 1000 users. Loopback only, about ROUNDS x binaries x D seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

W=${W:-2}
ROUNDS=${ROUNDS:-6}
D=${D:-4}
BASE_PORT=${BASE_PORT:-18500} # replicas BASE_PORT…+4; gateways +20, +22, … (admin +1)
REPLICAS=5
[ $# -ge 1 ] || { echo "usage: $0 GATEWAY_BINARY..." >&2; exit 2; }
need wrk wrk
ports_free $(seq "$BASE_PORT" $((BASE_PORT + REPLICAS - 1)))
cargo build --release --quiet -p sticky-svc
scratch

pin=() other=()
if [ "$W" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
  pin=(taskset -c 0) other=(taskset -c 1)
fi
start_backends "$BASE_PORT" "$REPLICAS" "${other[@]}"

names=() ports=() gateways=() i=0
for arg in "$@"; do
  bin=${arg%@*} protocol=HTTP
  [ "$arg" != "$bin" ] && protocol=${arg##*@}
  port=$((BASE_PORT + 20 + 2 * i))
  ports_free "$port" $((port + 1))
  gateway_yaml "$BASE_PORT" "$REPLICAS" "$protocol" >"$work/istio-$i.yaml"
  RUST_LOG=warn "${pin[@]}" "$bin" run --config "$work/istio-$i.yaml" --listen "127.0.0.1:$port" \
    --admin "127.0.0.1:$((port + 1))" --workers "$W" &
  pids+=($!) gateways+=($!) ports+=("$port") names+=("$i:$(basename "$bin")@$protocol")
  i=$((i + 1))
done
for port in "${ports[@]}"; do wait_http "$port"; done

export BENCH_USERS=1000
for port in "${ports[@]}"; do
  "${other[@]}" wrk -t1 -c64 -d2s -s bench/users.lua "http://127.0.0.1:$port/ping" >/dev/null
done
printf '%-28s %12s %10s %14s\n' gateway requests/s p99 "CPU µs/req"
for _ in $(seq "$ROUNDS"); do
  for j in "${!ports[@]}"; do
    before=$(ticks "${gateways[$j]}")
    out=$("${other[@]}" wrk -t1 -c64 "-d${D}s" --latency -s bench/users.lua \
      "http://127.0.0.1:${ports[$j]}/ping")
    after=$(ticks "${gateways[$j]}")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
      'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
    printf '%-28s %12s %10s %14s\n' "${names[$j]}" "$rps" "$p99" "$cpu" | tee -a "$work/results"
  done
done
echo "medians:"
for name in "${names[@]}"; do
  rps=$(awk -v n="$name" '$1 == n {print $2}' "$work/results" | median)
  cpu=$(awk -v n="$name" '$1 == n {print $4}' "$work/results" | median)
  printf '%-28s %12s requests/s %8s CPU µs/req\n' "$name" "$rps" "$cpu"
done
