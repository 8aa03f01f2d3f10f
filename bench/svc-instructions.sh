#!/usr/bin/env bash
# User-space instructions per warm /ping, counted by valgrind's callgrind. Unlike requests/s,
# this does not move with the load of a shared machine, so it shows what a code change costs.
# Instructions of start-up are included and spread over the requests (a few hundred thousand
# over tens of thousands of requests: noise below 1%).
#
#   bench/svc-instructions.sh              # 8 s of wrk at 16 connections, user "ricky"
#   KEEP=.cache/svc.callgrind bench/svc-instructions.sh   # keep the profile for callgrind_annotate
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

PORT=${PORT:-18091}
DURATION=${DURATION:-8s}

need valgrind valgrind
need wrk wrk

cargo build --release --quiet -p sticky-svc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  target/x86_64-unknown-linux-gnu/release/sticky-svc --listen "127.0.0.1:$PORT" --workers 1 \
  --first-call-cost 0s --log-filter warn 2>/dev/null &
server=$!
for _ in $(seq 100); do
  curl -fs -o /dev/null -H "x-user: ricky" "http://127.0.0.1:$PORT/ping" && break
  sleep 0.1
done
requests=$(wrk -t1 -c16 "-d$DURATION" -H "x-user: ricky" "http://127.0.0.1:$PORT/ping" |
  awk '/requests in/ {print $1}')
kill -INT "$server"
wait "$server" || true
total=$(callgrind_annotate "$work/callgrind.out" 2>/dev/null |
  awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
[ -n "${KEEP:-}" ] && cp "$work/callgrind.out" "$KEEP"
echo "requests: $requests"
echo "instructions per request: $((total / requests))"
