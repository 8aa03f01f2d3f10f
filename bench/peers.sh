#!/usr/bin/env bash
# The gateway against nginx and HAProxy, side by side, in front of the same 5 sticky-svc
# replicas on loopback (issue 9).
#
# For each worker count in WORKERS (default "1 2"): nginx (`hash $http_x_user consistent`,
# upstream keepalive, `worker_processes N`), HAProxy (`balance hdr(x-user)`, `hash-type
# consistent`, `http-reuse always`, `nbthread N`) and the gateway (`gateway run --workers N`,
# STATIC ServiceEntry + DestinationRule `consistentHash.httpHeaderName: x-user`), plus direct
# access to one replica as the ceiling. All three proxies set x-forwarded-for,
# x-forwarded-proto and x-request-id, so each does the same header work. Two more rows give
# HAProxy (`proto h2`) and the gateway (ServiceEntry port protocol HTTP2) HTTP/2 to the
# replicas, each proxy's other upstream protocol; nginx proxies HTTP only over HTTP/1.x.
#
# First a stickiness check of each proxy (STICKY_USERS users x STICKY_REPEAT requests, each
# user's answers must name one replica in `x-served-by`); then, after a warm-up of each, wrk
# (-t1, CONNECTIONS connections, USERS users in rotation) runs direct, nginx, HAProxy, gateway
# in turn, ROUNDS times, every other round in reverse order, so drift on a shared machine hits
# all alike. The report (medians,
# ratios, goals, a plot) replaces the marked section of docs/benchmarks.md (DOC= to change,
# DOC= empty to only print).
#
#   bench/peers.sh                        # 2 x (3 rounds x 6 targets x 4 s): about 4 minutes
#   ROUNDS=5 DURATION=3s WORKERS=1 bench/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
WORKERS=${WORKERS:-1 2}
STICKY_USERS=${STICKY_USERS:-300}
STICKY_REPEAT=${STICKY_REPEAT:-3}
BASE_PORT=${BASE_PORT:-18100} # replicas BASE_PORT…+4; proxies +10…+16
PROXY_CPU=${PROXY_CPU:-0}     # one-worker proxies run here…
OTHER_CPU=${OTHER_CPU:-1}     # …and replicas and wrk here
DOC=${DOC-docs/benchmarks.md}
PNG=${PNG:-docs/benchmarks-peers.png}
REPLICAS=5

need wrk wrk
need nginx nginx-light
need haproxy haproxy
need python3 python3
export PATH="$PATH:/usr/sbin"

nginx_port=$((BASE_PORT + 10)) haproxy_port=$((BASE_PORT + 11))
gateway_port=$((BASE_PORT + 12)) admin_port=$((BASE_PORT + 13))
haproxy_h2_port=$((BASE_PORT + 14)) gateway_h2_port=$((BASE_PORT + 15)) admin_h2_port=$((BASE_PORT + 16))
ports_free $(seq "$BASE_PORT" $((BASE_PORT + REPLICAS - 1))) \
  "$nginx_port" "$haproxy_port" "$gateway_port" "$admin_port" \
  "$haproxy_h2_port" "$gateway_h2_port" "$admin_h2_port"

cargo build --release --quiet -p gateway -p sticky-svc
GATEWAY_BIN=target/x86_64-unknown-linux-gnu/release/gateway

# The plot needs matplotlib: a venv under .cache/ (gitignored), made once.
venv=.cache/bench-venv
if [ -n "$DOC" ] && [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib ||
    echo "no matplotlib (pip failed): the report will have no plot" >&2
fi
report_python=python3
[ -x "$venv/bin/python" ] && report_python=$venv/bin/python

scratch

pinning "$PROXY_CPU" "$OTHER_CPU"
start_backends "$BASE_PORT" "$REPLICAS" "${pin_client[@]}"
gateway_yaml "$BASE_PORT" "$REPLICAS" >"$work/istio.yaml"
gateway_yaml "$BASE_PORT" "$REPLICAS" HTTP2 >"$work/istio-h2.yaml"

upstreams="" servers=""
for i in $(seq 0 $((REPLICAS - 1))); do
  upstreams+="    server 127.0.0.1:$((BASE_PORT + i));"$'\n'
  servers+="  server svc-$i 127.0.0.1:$((BASE_PORT + i))"$'\n'
done

nginx_conf() {
  nginx_head "$1"
  nginx_upstream
  cat <<NGINX
  server {
    listen 127.0.0.1:$nginx_port;
NGINX
  nginx_proxy_location
  cat <<NGINX
  }
}
NGINX
}

export BENCH_USERS=$USERS
wrk_args=(-t1 "-c$CONNECTIONS" -s bench/peers.lua)
: >"$work/results" && : >"$work/rss" && : >"$work/sticky"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine: $(machine)"
echo "load average before: $load_before"

# run WORKERS TARGET ROUND PORT PID...: one wrk run; appends a results line, prints a summary.
run() {
  local w=$1 target=$2 round=$3 port=$4 before after line
  shift 4
  before=$(ticks "$@") sys_before=$(system_ticks "$@") rep_before=$(ticks "${backend_pids[@]}")
  read -r other_busy_before other_steal_before other_total_before < <(cpu_ticks "$OTHER_CPU")
  read -r proxy_busy_before proxy_steal_before proxy_total_before < <(cpu_ticks "$PROXY_CPU")
  line=$("${pin_client[@]}" wrk "${wrk_args[@]}" "-d$DURATION" "http://127.0.0.1:$port/ping" |
    awk '$1 == "result"')
  after=$(ticks "$@") sys_after=$(system_ticks "$@") rep_after=$(ticks "${backend_pids[@]}")
  read -r other_busy other_steal other_total < <(cpu_ticks "$OTHER_CPU")
  read -r proxy_busy proxy_steal proxy_total < <(cpu_ticks "$PROXY_CPU")
  read -r _ requests duration p50 p99 p999 errors status <<<"$line"
  echo "$w $target $round $requests $duration $p50 $p99 $p999 $errors $status $((after - before))" \
    "$((sys_after - sys_before))" "$((rep_after - rep_before))" \
    "$((other_busy - other_busy_before)) $((other_total - other_total_before))" \
    "$((proxy_steal - proxy_steal_before + other_steal - other_steal_before))" \
    "$((proxy_total - proxy_total_before + other_total - other_total_before))" >>"$work/results"
  awk -v w="$w" -v t="$target" -v r="$round" -v n="$requests" -v d="$duration" -v p="$p99" \
    -v e=$((errors + status)) -v c=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%s worker(s) round %s %-10s %9.0f requests/s  p99 %7.2f ms  errors %d  CPU %.2f s/100k\n",
      w, r, t, n / d * 1e6, p / 1000, e, c / hz / n * 1e5}'
}

for w in $WORKERS; do
  # One worker: the proxy alone on its CPU. More: the proxy may use every CPU.
  proxy_pin=("${pin_server[@]}")
  [ "$w" -gt 1 ] && proxy_pin=()
  nginx_conf "$w" >"$work/nginx.conf"
  haproxy_conf "$w" "127.0.0.1:$haproxy_port" http >"$work/haproxy.cfg"
  haproxy_conf "$w" "127.0.0.1:$haproxy_h2_port" http "proto h2" >"$work/haproxy-h2.cfg"
  "${proxy_pin[@]}" nginx -p "$work" -c "$work/nginx.conf" &
  nginx_master=$!
  "${proxy_pin[@]}" haproxy -db -f "$work/haproxy.cfg" &
  haproxy_pid=$!
  "${proxy_pin[@]}" haproxy -db -f "$work/haproxy-h2.cfg" &
  haproxy_h2_pid=$!
  RUST_LOG=warn "${proxy_pin[@]}" "$GATEWAY_BIN" run --config "$work/istio.yaml" \
    --listen "127.0.0.1:$gateway_port" --admin "127.0.0.1:$admin_port" --workers "$w" &
  gateway_pid=$!
  RUST_LOG=warn "${proxy_pin[@]}" "$GATEWAY_BIN" run --config "$work/istio-h2.yaml" \
    --listen "127.0.0.1:$gateway_h2_port" --admin "127.0.0.1:$admin_h2_port" --workers "$w" &
  gateway_h2_pid=$!
  pids+=("$nginx_master" "$haproxy_pid" "$gateway_pid" "$haproxy_h2_pid" "$gateway_h2_pid")
  for port in "$nginx_port" "$haproxy_port" "$gateway_port" "$haproxy_h2_port" "$gateway_h2_port"; do
    wait_http "$port"
  done
  read -ra nginx_pids <<<"$nginx_master $(children "$nginx_master")"

  for target in nginx:$nginx_port haproxy:$haproxy_port gateway:$gateway_port \
    haproxy-h2:$haproxy_h2_port gateway-h2:$gateway_h2_port; do
    python3 bench/peers.py sticky --port "${target#*:}" --users "$STICKY_USERS" \
      --repeat "$STICKY_REPEAT" --out "$work/sticky" --workers "$w" --target "${target%%:*}" ||
      true
  done

  for port in "$BASE_PORT" "$nginx_port" "$haproxy_port" "$gateway_port" "$haproxy_h2_port" \
    "$gateway_h2_port"; do
    "${pin_client[@]}" wrk "${wrk_args[@]}" "-d$WARMUP" "http://127.0.0.1:$port/ping" >/dev/null
  done
  # Every other round in reverse order (lib.sh `alternate`).
  slots=(direct nginx haproxy gateway haproxy-h2 gateway-h2)
  for round in $(seq "$ROUNDS"); do
    alternate "$round" "${slots[@]}"
    for slot in "${order[@]}"; do
      case $slot in
        direct) run "$w" direct "$round" "$BASE_PORT" "${backend_pids[0]}" ;;
        nginx) run "$w" nginx "$round" "$nginx_port" "${nginx_pids[@]}" ;;
        haproxy) run "$w" haproxy "$round" "$haproxy_port" "$haproxy_pid" ;;
        gateway) run "$w" gateway "$round" "$gateway_port" "$gateway_pid" ;;
        haproxy-h2) run "$w" haproxy-h2 "$round" "$haproxy_h2_port" "$haproxy_h2_pid" ;;
        gateway-h2) run "$w" gateway-h2 "$round" "$gateway_h2_port" "$gateway_h2_pid" ;;
      esac
    done
  done
  {
    echo "$w direct $(peak_rss_kib "${backend_pids[0]}")"
    echo "$w nginx $(peak_rss_kib "${nginx_pids[@]}")"
    echo "$w haproxy $(peak_rss_kib "$haproxy_pid")"
    echo "$w gateway $(peak_rss_kib "$gateway_pid")"
    echo "$w haproxy-h2 $(peak_rss_kib "$haproxy_h2_pid")"
    echo "$w gateway-h2 $(peak_rss_kib "$gateway_h2_pid")"
  } >>"$work/rss"
  kill "$nginx_master" "$haproxy_pid" "$gateway_pid" "$haproxy_h2_pid" "$gateway_h2_pid"
  wait "$nginx_master" "$haproxy_pid" "$gateway_pid" "$haproxy_h2_pid" "$gateway_h2_pid" \
    2>/dev/null || true
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average after: $load_after"

command="just bench-peers"
overrides=$(env | grep -E '^(ROUNDS|DURATION|WARMUP|CONNECTIONS|USERS|WORKERS|STICKY_USERS|STICKY_REPEAT)=' |
  sort | tr '\n' ' ' || true)
[ -n "$overrides" ] && command="$overrides$command"
cat >"$work/meta" <<META
date=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway services || echo ' (with uncommitted changes)')
command=$command
machine=$(machine)
versions=$(nginx -v 2>&1 | sed 's/.*version: //'), HAProxy $(haproxy -v | awk 'NR == 1 {print $3}'), $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}'), $(rustc --version | awk '{print $1, $2}')
load_before=$load_before
load_after=$load_after
connections=$CONNECTIONS
duration=$DURATION
users=$USERS
rounds=$ROUNDS
clk_tck=$(getconf CLK_TCK)
pinning=${pin_server:+With one worker each proxy is pinned to CPU $PROXY_CPU and the replicas and wrk to CPU $OTHER_CPU; with two, the proxy may run on both.}
META
"$report_python" bench/peers.py report --results "$work/results" --rss "$work/rss" \
  --sticky "$work/sticky" --meta "$work/meta" ${DOC:+--doc "$DOC" --png "$PNG"}
if grep -q '"ok": false' "$work/sticky"; then
  echo "a proxy failed the stickiness check (see above)" >&2
  exit 1
fi
