#!/usr/bin/env bash
# Two (or more) gateway binaries side by side, in front of the same 5 sticky-svc replicas,
# alternated A B B A (every other round reversed) so the drift of a shared machine and the luck
# of a slot hit all alike: requests/s, p99, the gateway's CPU µs per request, the replicas' CPU
# µs per request and how often per request they slept waiting for input (voluntary context
# switches: wake-ups the gateway's writes caused), then the medians and the median per-round
# ratio of requests/s to the first binary's. For judging a change to the
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
hz=$(getconf CLK_TCK)
printf '%-28s %10s %8s %11s %11s %13s\n' gateway requests/s p99 "CPU µs/req" "replicas µs" "replica sleeps"
for round in $(seq "$ROUNDS"); do
  # Every other round in reverse order, so a slot's luck (what ran before it) evens out.
  alternate "$round" "${!ports[@]}"
  for j in "${order[@]}"; do
    before=$(ticks "${gateways[$j]}") rep_before=$(ticks "${backend_pids[@]}")
    sleeps_before=$(sleeps "${backend_pids[@]}")
    out=$("${other[@]}" wrk -t1 -c64 "-d${D}s" --latency -s bench/users.lua \
      "http://127.0.0.1:${ports[$j]}/ping")
    after=$(ticks "${gateways[$j]}") rep_after=$(ticks "${backend_pids[@]}")
    sleeps_after=$(sleeps "${backend_pids[@]}")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    read -r cpu rep slp < <(awk -v t=$((after - before)) -v r=$((rep_after - rep_before)) \
      -v s=$((sleeps_after - sleeps_before)) -v hz="$hz" -v n="$n" \
      'BEGIN {printf "%.2f %.2f %.3f\n", t * 1e6 / hz / n, r * 1e6 / hz / n, s / n}')
    printf '%-28s %10s %8s %11s %11s %13s\n' "${names[$j]}" "$rps" "$p99" "$cpu" "$rep" "$slp"
    echo "$round ${names[$j]} $rps $cpu $rep $slp" >>"$work/results"
  done
done
echo "medians (ratio: median over rounds of requests/s over the first binary's in the same round):"
printf '%-28s %10s %7s %11s %11s %13s\n' gateway requests/s ratio "CPU µs/req" "replicas µs" "replica sleeps"
for name in "${names[@]}"; do
  col() { awk -v n="$name" -v c="$1" '$2 == n {print $c}' "$work/results" | median; }
  ratio=$(awk -v a="$name" -v b="${names[0]}" '$2 == a {x[$1] = $3} $2 == b {y[$1] = $3}
    END {for (r in x) if (r in y) print x[r] / y[r]}' "$work/results" | median)
  printf '%-28s %10s %7.3f %11s %11s %13s\n' "$name" "$(col 3)" "$ratio" "$(col 4)" "$(col 5)" "$(col 6)"
done
