#!/usr/bin/env bash
# System calls and sleeps per proxied request, the gateway beside HAProxy and nginx in the same
# run (issue 21): two thirds of the gateway's CPU per request is kernel time, so what it asks of
# the kernel per request is the part of its cost that instructions do not show. Each proxy runs
# with one worker on its own CPU in front of the same 5 sticky-svc replicas (bench/peers.sh's
# set-up); wrk (-t1, CONNECTIONS connections, USERS users) loads one proxy at a time while
# `perf stat` counts that proxy's system calls by name (kernel tracepoints
# syscalls:sys_enter_*: a count, not a sample; the proxy runs at full speed) and its context
# switches, all threads (mostly sleeps: an epoll_wait that found nothing ready, then a wake-up).
#
#   bench/peers-syscalls.sh                         # 3 rounds x 3 proxies x 4 s
#   ROUNDS=1 DURATION=2s bench/peers-syscalls.sh
#   PROTOCOL=HTTP2 bench/peers-syscalls.sh          # HTTP/2 to the replicas (gateway, HAProxy)
#   GATEWAY=/tmp/gateway-old bench/peers-syscalls.sh
#
# Needs perf (linux-perf) with access to tracepoints (root, or kernel.perf_event_paranoid <= -1).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
DURATION=${DURATION%s}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
PROTOCOL=${PROTOCOL:-HTTP}
BASE_PORT=${BASE_PORT:-18300} # replicas BASE_PORT…+4; proxies +10…+13
REPLICAS=5

need wrk wrk
need perf linux-perf
need haproxy haproxy
need nginx nginx-light
export PATH="$PATH:/usr/sbin"
perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 ||
  { echo "perf cannot count system calls here (tracepoints: run as root)" >&2; exit 1; }

nginx_port=$((BASE_PORT + 10)) haproxy_port=$((BASE_PORT + 11))
gateway_port=$((BASE_PORT + 12)) admin_port=$((BASE_PORT + 13))
ports_free $(seq "$BASE_PORT" $((BASE_PORT + REPLICAS - 1))) \
  "$nginx_port" "$haproxy_port" "$gateway_port" "$admin_port"

cargo build --release --quiet -p sticky-svc
[ -n "${GATEWAY:-}" ] || cargo build --release --quiet -p gateway
GATEWAY=${GATEWAY:-target/x86_64-unknown-linux-gnu/release/gateway}
scratch
pinning 0 1

start_backends "$BASE_PORT" "$REPLICAS" "${pin_client[@]}"
gateway_yaml "$BASE_PORT" "$REPLICAS" "$PROTOCOL" >"$work/istio.yaml"
upstreams="" servers=""
for i in $(seq 0 $((REPLICAS - 1))); do
  upstreams+="    server 127.0.0.1:$((BASE_PORT + i));"$'\n'
  servers+="  server svc-$i 127.0.0.1:$((BASE_PORT + i))"$'\n'
done
server_options=""
[ "$PROTOCOL" = HTTP2 ] && server_options="proto h2"
haproxy_conf 1 "127.0.0.1:$haproxy_port" http "$server_options" >"$work/haproxy.cfg"
{
  nginx_head 1
  nginx_upstream
  echo "  server {"
  echo "    listen 127.0.0.1:$nginx_port;"
  nginx_proxy_location
  echo "  }"
  echo "}"
} >"$work/nginx.conf"

"${pin_server[@]}" haproxy -db -f "$work/haproxy.cfg" &
haproxy_pid=$!
RUST_LOG=warn "${pin_server[@]}" "$GATEWAY" run --config "$work/istio.yaml" \
  --listen "127.0.0.1:$gateway_port" --admin "127.0.0.1:$admin_port" --workers 1 &
gateway_pid=$!
pids+=("$haproxy_pid" "$gateway_pid")
targets=(haproxy:$haproxy_port gateway:$gateway_port)
if [ "$PROTOCOL" = HTTP ]; then
  "${pin_server[@]}" nginx -p "$work" -c "$work/nginx.conf" &
  nginx_master=$!
  pids+=("$nginx_master")
  targets=(nginx:$nginx_port "${targets[@]}")
fi
for target in "${targets[@]}"; do wait_http "${target#*:}"; done
declare -A pid_of=([haproxy]=$haproxy_pid [gateway]=$gateway_pid)
if [ "$PROTOCOL" = HTTP ]; then
  # nginx's worker, not its master, serves the requests.
  pid_of[nginx]=$(children "$nginx_master")
fi

export BENCH_USERS=$USERS
wrk_args=(-t1 "-c$CONNECTIONS" -s bench/users.lua)
for target in "${targets[@]}"; do
  "${pin_client[@]}" wrk "${wrk_args[@]}" -d2s "http://127.0.0.1:${target#*:}/ping" >/dev/null
done

echo "machine: $(machine)"
echo "upstream protocol: $PROTOCOL; $CONNECTIONS connections, $USERS users, ${DURATION} s per run"
: >"$work/counts"
for round in $(seq "$ROUNDS"); do
  alternate "$round" "${targets[@]}"
  for target in "${order[@]}"; do
    name=${target%%:*} port=${target#*:} pid=${pid_of[${target%%:*}]}
    perf stat -x, -e 'syscalls:sys_enter_*' -e context-switches -p "$pid" -o "$work/perf.txt" -- sleep "$((DURATION + 1))" &
    perf_pid=$!
    "${pin_client[@]}" wrk "${wrk_args[@]}" "-d${DURATION}s" "http://127.0.0.1:$port/ping" >"$work/wrk.txt"
    wait "$perf_pid"
    if grep -qE 'Non-2xx|Socket errors' "$work/wrk.txt"; then
      cat "$work/wrk.txt" >&2
      echo "$name answered errors: no figure" >&2
      exit 1
    fi
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    # The perf window (DURATION + 1 s) covers wrk's; the proxy is idle outside it.
    awk -F, -v n="$requests" -v r="$round" -v t="$name" \
      '$3 ~ /^syscalls:sys_enter_/ && $1 + 0 > 0 {sub("syscalls:sys_enter_", "", $3); print t, r, $3, $1 / n}' \
      "$work/perf.txt" >>"$work/counts"
    awk -F, -v n="$requests" -v r="$round" -v t="$name" \
      '$3 == "context-switches" {print t, r, "switches", $1 / n}' "$work/perf.txt" >>"$work/counts"
    printf '%-8s round %s: %8d requests\n' "$name" "$round" "$requests"
  done
done

# The median over rounds of each proxy's calls per request, by call; calls under 0.01 per
# request left out of the table but in the total.
names=()
for target in "${targets[@]}"; do names+=("${target%%:*}"); done
python3 - "$work/counts" "${names[@]}" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    proxy, rnd, call, per = line.split()
    rows[call][proxy].append(float(per))
proxies = sys.argv[2:]
rounds = max(len(v) for c in rows.values() for v in c.values())
def med(call, proxy):
    values = rows[call].get(proxy, [])
    values = values + [0.0] * (rounds - len(values))
    return statistics.median(values)
calls = sorted((c for c in rows if c != "switches"), key=lambda c: -max(med(c, p) for p in proxies))
print()
print("per proxied request (median of rounds)")
print(f"{'':<16}" + "".join(f"{p:>10}" for p in proxies))
totals = {p: 0.0 for p in proxies}
for call in calls:
    values = [med(call, p) for p in proxies]
    for p, v in zip(proxies, values):
        totals[p] += v
    if max(values) >= 0.01:
        print(f"{call:<16}" + "".join(f"{v:>10.2f}" for v in values))
print(f"{'all calls':<16}" + "".join(f"{totals[p]:>10.2f}" for p in proxies))
print(f"{'context switches':<16}" + "".join(f"{med('switches', p):>10.3f}" for p in proxies))
PY
