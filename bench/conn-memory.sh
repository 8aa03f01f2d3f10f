#!/usr/bin/env bash
# Memory per idle client connection: the gateway's resident set (VmRSS of /proc/<pid>/status)
# before and after CONNS idle connections are open, over HTTP/1.1 (one keep-alive GET /ping
# each, then idle) and h2c with prior knowledge (one stream each, then idle), next to nginx in
# front of the same sticky-svc replica. tools/hostile plays the clients (idle-h1, idle-h2).
#
# Each row starts a fresh proxy (memory an earlier row freed and kept would hide the next
# one's growth), warms it with WARM connections of the same kind, reads VmRSS, opens CONNS
# connections at RATE per second, waits until every one has its answer, lets SETTLE pass, reads
# VmRSS again, then drops them: KiB per connection = (after - before) / CONNS. SETTLE (2 s) is
# past the gateway's idle sweep (once a second with its default flags), at which an idle
# HTTP/1.1 connection lets go of hyper's buffers and state until its next request
# (gateway/src/proxy/listener/keepalive.rs): what every idle connection holds. The gateway runs
# with its default flags, so its idle timeouts (30 s HTTP/1.1, 60 s HTTP/2) close nothing while
# a row is measured (a few seconds); a row where the proxy closed connections anyway, or not
# all opened and were answered 200, is marked invalid. nginx: Debian's (nginx-light, apt),
# one worker per CPU as the gateway, keepalive_timeout 75s, h2c on a second port
# (`listen ... http2` before 1.25.1, `http2 on` after); its h2 row is skipped, saying why, when
# that port does not speak h2c. RSS of nginx is the master's plus its workers'.
#
#   bench/conn-memory.sh                   # 5 000 connections a row: gateway and nginx (~1 min)
#   CONNS=2000 bench/conn-memory.sh        # another count (the gateway answers 429 past 10 000)
#   NGINX=0 bench/conn-memory.sh           # the gateway only, no apt
#   SMAPS=1 bench/conn-memory.sh           # also where the gateway's growth went, by mapping
#   GATEWAY=/tmp/gateway-old bench/conn-memory.sh   # a gateway binary built before
#
# CI check: with CHECK_KIB_H1 and/or CHECK_KIB_H2 set, the script exits 1 when the gateway's
# KiB per connection over that protocol is above the bound, or when that row could not be
# measured validly (nothing is skipped silently); nginx is then left out unless NGINX=1.
#
#   CHECK_KIB_H1=64 CHECK_KIB_H2=128 CONNS=2000 bench/conn-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CONNS=${CONNS:-5000}
RATE=${RATE:-2000}      # connections opened per second (hostile --rate)
WARM=${WARM:-50}        # connections of the same kind opened and dropped before "before"
SETTLE=${SETTLE:-2}     # seconds between the last answer (or the start) and a reading
BASE_PORT=${BASE_PORT:-18300} # replica BASE_PORT; gateway +10, admin +11; nginx +12, nginx h2c +13
CHECK_KIB_H1=${CHECK_KIB_H1:-}
CHECK_KIB_H2=${CHECK_KIB_H2:-}
if [ -n "$CHECK_KIB_H1$CHECK_KIB_H2" ]; then NGINX=${NGINX:-0}; else NGINX=${NGINX:-1}; fi

[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || { echo "CONNS must be a positive number, got '$CONNS'" >&2; exit 2; }
# hostile and the proxy each hold CONNS sockets: raise the soft open-files limit to the hard one.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 1024)) ]; then
  echo "CONNS=$CONNS needs about $((CONNS + 1024)) open files; the hard limit is $(ulimit -Hn)" >&2
  exit 2
fi

need curl curl
if [ "$NGINX" = 1 ]; then
  need nginx nginx-light
  export PATH="$PATH:/usr/sbin"
fi

gateway_port=$((BASE_PORT + 10)) admin_port=$((BASE_PORT + 11))
nginx_port=$((BASE_PORT + 12)) nginx_h2_port=$((BASE_PORT + 13))
ports_free "$BASE_PORT" "$gateway_port" "$admin_port" "$nginx_port" "$nginx_h2_port"

bin=target/x86_64-unknown-linux-gnu/release
if [ -n "${GATEWAY:-}" ]; then
  cargo build --release --quiet -p sticky-svc -p hostile
else
  cargo build --release --quiet -p gateway -p sticky-svc -p hostile
fi
GATEWAY=${GATEWAY:-$bin/gateway}

scratch
trap 'exit 130' INT TERM # the EXIT trap (scratch_cleanup) stops everything started here
start_backends "$BASE_PORT" 1
gateway_yaml "$BASE_PORT" 1 >"$work/istio.yaml"
: >"$work/rows"

# proxy_up NAME: starts a fresh proxy; sets proxy_pids (every process whose RSS counts).
proxy_up() {
  case $1 in
  gateway)
    RUST_LOG=warn "$GATEWAY" run --config "$work/istio.yaml" \
      --listen "127.0.0.1:$gateway_port" --admin "127.0.0.1:$admin_port" &
    proxy_pids=($!)
    pids+=($!)
    wait_http "$gateway_port"
    ;;
  nginx)
    nginx_conf >"$work/nginx.conf"
    nginx -p "$work" -c "$work/nginx.conf" &
    pids+=($!)
    wait_http "$nginx_port"
    read -ra proxy_pids <<<"$! $(children $!)"
    ;;
  esac
}

proxy_down() {
  kill "${proxy_pids[@]}" 2>/dev/null || true
  wait "${proxy_pids[0]}" 2>/dev/null || true
}

nginx_conf() {
  local version h2_listen
  version=$(nginx -v 2>&1 | sed 's|.*nginx/||; s| .*||')
  if [ "$(printf '%s\n' 1.25.1 "$version" | sort -V | head -1)" = 1.25.1 ]; then
    h2_listen="listen 127.0.0.1:$nginx_h2_port; http2 on;"
  else
    h2_listen="listen 127.0.0.1:$nginx_h2_port http2;"
  fi
  # nginx_head's 4096 worker_connections would cap a worker below CONNS.
  nginx_head auto | sed "s/worker_connections 4096;/worker_connections $((CONNS + 1024));/
    1i worker_rlimit_nofile $(ulimit -n | sed 's/unlimited/1048576/');"
  cat <<NGINX
  keepalive_timeout 75s;
  upstream sticky {
    server 127.0.0.1:$BASE_PORT;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / { proxy_pass http://sticky; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    $h2_listen
    location / { proxy_pass http://sticky; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
}

# field NAME LINE: the value of NAME=value in a hostile line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# hostile MODE PORT CONNECTIONS OUT: starts hostile in the background; sets hostile_pid. It
# holds the connections until told to stop (SIGTERM: it reports and exits 0), 20 s at most.
hostile() {
  : >"$4" # emptied here, not by the job's redirection: wait_ready must not see an old line
  "$bin/hostile" "$1" --target "127.0.0.1:$2" --connections "$3" --rate "$RATE" --hold 20s \
    --progress 0s >"$4" 2>&1 &
  hostile_pid=$!
  pids+=("$hostile_pid")
}

# wait_ready OUT [quiet]: waits (up to 60 s) for hostile's ready line.
wait_ready() {
  local _
  for _ in $(seq 600); do
    grep -q '^hostile: ready' "$1" && return
    kill -0 "$hostile_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "${2:-}" ] || { echo "hostile never reported every connection settled:" >&2 && cat "$1" >&2; }
  return 1
}

# hostile_stop: ends hostile's hold; fails if hostile did.
hostile_stop() {
  kill -TERM "$hostile_pid" 2>/dev/null || true
  wait "$hostile_pid"
}

# smaps_kib PID: "mapping KiB" lines, the resident KiB of each kind of mapping.
smaps_kib() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {kib[name] += $2}
    END {for (n in kib) print n, kib[n]}' "/proc/$1/smaps" | sort
}

# measure PROXY PROTOCOL MODE PORT: one row of the table (appended to $work/rows).
measure() {
  local proxy=$1 protocol=$2 mode=$3 port=$4 out=$work/hostile.out before after done ready ok=yes
  proxy_up "$proxy"
  hostile "$mode" "$port" "$WARM" "$out"
  wait_ready "$out"
  hostile_stop
  sleep "$SETTLE"
  before=$(status_sum VmRSS: "${proxy_pids[@]}")
  [ "${SMAPS:-}" = 1 ] && [ "$proxy" = gateway ] && smaps_kib "${proxy_pids[0]}" >"$work/smaps-before"
  hostile "$mode" "$port" "$CONNS" "$out"
  wait_ready "$out"
  sleep "$SETTLE"
  after=$(status_sum VmRSS: "${proxy_pids[@]}")
  [ "${SMAPS:-}" = 1 ] && [ "$proxy" = gateway ] && smaps_kib "${proxy_pids[0]}" >"$work/smaps-after"
  hostile_stop
  proxy_down
  ready=$(grep '^hostile: ready' "$out") done=$(grep '^hostile: done' "$out")
  # Valid: every connection was still open when "after" was read, and each had its 200.
  if [ "$(field open "$done")" != "$CONNS" ] || [ "$(field server_closed "$done")" != 0 ] ||
    [ "$(field answers "$done")" != "200:$CONNS" ]; then
    ok=no
    echo "$proxy $protocol: not every connection was open and answered 200 at the reading:" >&2
    echo "  $done" >&2
  fi
  echo "$proxy $protocol $CONNS $before $after $ok" >>"$work/rows"
  [ "$ok" = yes ] || invalid=1
  echo "$proxy $protocol: ${ready#hostile: ready }" >&2
  if [ "${SMAPS:-}" = 1 ] && [ "$proxy" = gateway ]; then
    echo "gateway $protocol: resident growth by mapping (KiB):" >&2
    join -a2 -e0 -o 0,1.2,2.2 "$work/smaps-before" "$work/smaps-after" |
      awk '$3 - $2 != 0 {printf "  %-40s %+9d\n", $1, $3 - $2}' >&2
  fi
}

skipped=() invalid=0
measure gateway HTTP/1.1 idle-h1 "$gateway_port"
measure gateway h2c idle-h2 "$gateway_port"
if [ "$NGINX" = 1 ]; then
  measure nginx HTTP/1.1 idle-h1 "$nginx_port"
  # The h2c row only when that port answers h2c with prior knowledge.
  proxy_up nginx
  hostile idle-h2 "$nginx_h2_port" 1 "$work/probe.out"
  wait_ready "$work/probe.out" quiet || true
  hostile_stop || true
  proxy_down
  if grep -q '^hostile: done .* answers=200:1 ' "$work/probe.out"; then
    measure nginx h2c idle-h2 "$nginx_h2_port"
  else
    skipped+=("nginx h2c: $(nginx -v 2>&1) did not answer h2c with prior knowledge on" \
      "'listen ... http2' ($(grep '^hostile: done' "$work/probe.out" || echo 'no report'))")
  fi
fi

echo "machine: $(machine)"
echo "gateway: default flags ($(nproc) workers)$([ "$NGINX" = 1 ] &&
  echo "; $(nginx -v 2>&1 | sed 's/.*version: //'), worker_processes auto ($(nproc))")"
echo "one sticky-svc replica; clients: tools/hostile at $RATE connections/s; RSS = VmRSS"
echo
awk 'BEGIN {printf "%-8s %-9s %11s %15s %14s %19s\n", "proxy", "protocol", "connections",
    "RSS before MiB", "RSS after MiB", "KiB per connection"}
  {printf "%-8s %-9s %11d %15.1f %14.1f %19s\n", $1, $2, $3, $4 / 1024, $5 / 1024,
    ($6 == "yes" ? sprintf("%.1f", ($5 - $4) / $3) : "invalid")}' "$work/rows"
for line in "${skipped[@]}"; do echo "skipped: $line"; done
[ "$invalid" = 0 ] || echo "invalid rows: see above why (the bench exits 1)" >&2

# check PROTOCOL BOUND: fails when the gateway's row is invalid or above BOUND KiB per connection.
status=0
check() {
  [ -n "$2" ] || return 0
  local kib
  kib=$(awk -v p="$1" '$1 == "gateway" && $2 == p && $6 == "yes" {printf "%.1f", ($5 - $4) / $3}' \
    "$work/rows")
  if [ -z "$kib" ]; then
    echo "check: FAIL gateway $1: no valid measurement" >&2
    status=1
  elif awk -v k="$kib" -v b="$2" 'BEGIN {exit !(k > b)}'; then
    echo "check: FAIL gateway $1: $kib KiB per connection, above the bound $2" >&2
    status=1
  else
    echo "check: ok gateway $1: $kib KiB per connection (bound $2)"
  fi
}
check HTTP/1.1 "$CHECK_KIB_H1"
check h2c "$CHECK_KIB_H2"
[ "$invalid" = 0 ] || status=1
exit "$status"
