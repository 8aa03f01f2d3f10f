#!/usr/bin/env bash
# User-space instructions per proxied request in the gateway, counted by valgrind's callgrind:
# unlike requests/s, this does not move with the load of a shared machine, so it shows what a
# change of the request path costs or buys. The set-up is bench/peers.sh's (5 sticky-svc
# replicas, STATIC ServiceEntry, hash on x-user, 1000 users in rotation); only the gateway runs
# under callgrind, with one worker. Counters are zeroed after a warm-up, so start-up (config
# load, Maglev table) is not counted.
#
#   bench/peers-instructions.sh                 # 8 s of wrk at 16 connections
#   ANNOTATE=1 bench/peers-instructions.sh      # also the costliest functions (inclusive)
#   KEEP=.cache/gw.callgrind bench/peers-instructions.sh   # keep the profile for callgrind_annotate
#   PROTOCOL=HTTP2 bench/peers-instructions.sh  # HTTP/2 to the replicas
#   GATEWAY=/tmp/gateway-old bench/peers-instructions.sh   # a gateway binary built before
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BASE_PORT=${BASE_PORT:-18200} # replicas BASE_PORT…+4; gateway +10, admin +11
DURATION=${DURATION:-8s}
USERS=${USERS:-1000}
REPLICAS=5

need valgrind valgrind
need wrk wrk
gateway_port=$((BASE_PORT + 10)) admin_port=$((BASE_PORT + 11))
ports_free $(seq "$BASE_PORT" $((BASE_PORT + REPLICAS - 1))) "$gateway_port" "$admin_port"

PROFILE=${PROFILE:-release}
bin=target/x86_64-unknown-linux-gnu/$PROFILE
if [ -n "${GATEWAY:-}" ]; then
  cargo build --profile "$PROFILE" --quiet -p sticky-svc
else
  cargo build --profile "$PROFILE" --quiet -p gateway -p sticky-svc
fi
GATEWAY=${GATEWAY:-$bin/gateway}
scratch

BIN_DIR=$bin start_backends "$BASE_PORT" "$REPLICAS"
gateway_yaml "$BASE_PORT" "$REPLICAS" "${PROTOCOL:-HTTP}" >"$work/istio.yaml"
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$GATEWAY" run --config "$work/istio.yaml" \
  --listen "127.0.0.1:$gateway_port" --admin "127.0.0.1:$admin_port" --workers 1 2>/dev/null &
gateway=$!
pids+=("$gateway")
for _ in $(seq 300); do
  curl -fs -o /dev/null -H "x-user: ricky" "http://127.0.0.1:$gateway_port/ping" && break
  sleep 0.1
done

export BENCH_USERS=$USERS
wrk -t1 -c16 -d2s -s bench/users.lua "http://127.0.0.1:$gateway_port/ping" >/dev/null
callgrind_control --zero "$gateway" >/dev/null
wrk -t1 -c16 "-d$DURATION" -s bench/users.lua "http://127.0.0.1:$gateway_port/ping" >"$work/wrk.txt"
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
# An error answer costs less than a proxied one: a run with any is no measure.
if grep -qE 'Non-2xx|Socket errors' "$work/wrk.txt"; then
  cat "$work/wrk.txt" >&2
  echo "the gateway answered errors during the measured run: no figure" >&2
  exit 1
fi
callgrind_control --dump=measured "$gateway" >/dev/null
kill -INT "$gateway"
wait "$gateway" || true
# The dump after the zeroing is the second file (callgrind.out.<pid>.1 style naming).
dump=$(ls "$work"/callgrind.out.* | sort | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
[ -n "${KEEP:-}" ] && cp "$dump" "$KEEP"
echo "requests: $requests"
echo "instructions per request: $((total / requests))"
if [ -n "${ANNOTATE:-}" ]; then
  callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n '1,60p' |
    awk -v n="$requests" '/^ *[0-9,]+ / {v = $1; gsub(",", "", v); printf "%8d  %s\n", v / n, $0; next} {print}'
fi
