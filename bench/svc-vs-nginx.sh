#!/usr/bin/env bash
# Warm /ping throughput of sticky-svc against nginx answering a fixed `return 200`, on loopback.
#
# Both servers get ONE worker (sticky-svc --workers 1, nginx worker_processes 1) and, when
# `taskset` exists, the same CPU; wrk runs on another CPU. Runs alternate A B A B so drift on a
# shared machine hits both alike; the report is the median of each. Everything is bounded:
# ROUNDS x 2 runs of DURATION each, plus a short warm-up.
#
#   bench/svc-vs-nginx.sh                  # 9 rounds of 5 s, 64 connections, user "ricky"
#   ROUNDS=3 DURATION=5s USERS=1000 bench/svc-vs-nginx.sh
#
# Goal (issue 2): sticky-svc >= 0.8x nginx's requests/s, and p99 < 1 ms at 64 connections.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-9}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1}          # 1: every request is `x-user: ricky`; N: round robin over N users
SVC_PORT=${SVC_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

need wrk wrk
need nginx nginx-light
export PATH="$PATH:/usr/sbin"

# Servers on one CPU, wrk on another, when `taskset` exists.
pinning "$SERVER_CPU" "$CLIENT_CPU"

ports_free "$SVC_PORT" "$NGINX_PORT"

cargo build --release --quiet -p sticky-svc
SVC_BIN=target/x86_64-unknown-linux-gnu/release/sticky-svc

scratch

body="Call was processed by host bench for user ricky and it took 1.2µs"
{
nginx_head 1
cat <<NGINX
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type text/plain; return 200 "$body\n"; }
  }
}
NGINX
} >"$work/nginx.conf"

"${pin_server[@]}" "$SVC_BIN" --listen "127.0.0.1:$SVC_PORT" --workers 1 --first-call-cost 0s \
  --host-name bench --log-filter warn &
pids+=($!)
svc_pid=$!
"${pin_server[@]}" nginx -p "$work" -c "$work/nginx.conf" &
pids+=($!)
nginx_master=$!

wait_http "$SVC_PORT"
wait_http "$NGINX_PORT"

wrk_args=(-t1 "-c$CONNECTIONS" --latency)
if [ "$USERS" -gt 1 ]; then
  export BENCH_USERS=$USERS
  wrk_args+=(-s bench/users.lua)
else
  wrk_args+=(-H "x-user: ricky")
fi

nginx_worker=$(children "$nginx_master")

# Warm-up: pays every user's (0 s) first call and fills caches and branch predictors.
for port in "$SVC_PORT" "$NGINX_PORT"; do
  "${pin_client[@]}" wrk "${wrk_args[@]}" -d2s "http://127.0.0.1:$port/ping" >/dev/null
done

# requests/s, p99 (ms) and server CPU per request (µs) of one wrk run against port $1, pid $2.
# CPU per request does not depend on how busy the rest of a shared machine is.
run() {
  local out rps p99 before after requests cpu
  before=$(ticks "$2")
  out=$("${pin_client[@]}" wrk "${wrk_args[@]}" "-d$DURATION" "http://127.0.0.1:$1/ping")
  after=$(ticks "$2")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "non-2xx answers from port $1:" >&2
    echo "$out" >&2
    exit 1
  fi
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {
    v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v) }
    else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
    printf "%.3f", v }' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
  echo "$rps $p99 $cpu"
}

echo "machine: $(machine)"
echo "wrk -t1 -c$CONNECTIONS -d$DURATION, users=$USERS, rounds=$ROUNDS (A = sticky-svc, B = nginx)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-10s %12s %10s %16s\n' round server "requests/s" "p99 ms" "CPU µs/request"
: >"$work/svc" && : >"$work/nginx"
for round in $(seq "$ROUNDS"); do
  read -r rps p99 cpu < <(run "$SVC_PORT" "$svc_pid")
  echo "$rps $p99 $cpu" >>"$work/svc"
  printf '%-6s %-10s %12s %10s %16s\n' "$round" sticky-svc "$rps" "$p99" "$cpu"
  read -r rps p99 cpu < <(run "$NGINX_PORT" "$nginx_worker")
  echo "$rps $p99 $cpu" >>"$work/nginx"
  printf '%-6s %-10s %12s %10s %16s\n' "$round" nginx "$rps" "$p99" "$cpu"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

svc_rps=$(cut -d' ' -f1 "$work/svc" | median)
svc_p99=$(cut -d' ' -f2 "$work/svc" | median)
svc_cpu=$(cut -d' ' -f3 "$work/svc" | median)
nginx_rps=$(cut -d' ' -f1 "$work/nginx" | median)
nginx_p99=$(cut -d' ' -f2 "$work/nginx" | median)
nginx_cpu=$(cut -d' ' -f3 "$work/nginx" | median)
ratio=$(awk -v a="$svc_rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a / b}')
# Each round's A/B pair ran back to back, so its ratio is less exposed to drift than the medians.
pair_ratio=$(paste -d' ' "$work/svc" "$work/nginx" | awk '{printf "%.4f\n", $1 / $4}' | median)
echo
echo "median sticky-svc: $svc_rps requests/s, p99 $svc_p99 ms, $svc_cpu CPU µs/request"
echo "median nginx:      $nginx_rps requests/s, p99 $nginx_p99 ms, $nginx_cpu CPU µs/request"
echo "median of per-round ratios: $(printf '%.2f' "$pair_ratio")"
echo "ratio sticky-svc / nginx: $ratio (requests/s); $(awk -v a="$nginx_cpu" -v b="$svc_cpu" \
  'BEGIN {printf "%.2f", a / b}') (CPU efficiency, nginx µs / sticky-svc µs)"
awk -v r="$ratio" -v p="$svc_p99" 'BEGIN {
  printf "goal ratio >= 0.80: %s; goal p99 < 1 ms: %s\n", (r >= 0.8 ? "met" : "MISSED"), (p < 1 ? "met" : "MISSED") }'
