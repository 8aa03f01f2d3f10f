#!/usr/bin/env bash
# HTTPS at the edge: the gateway's TLS listener against nginx and HAProxy terminating TLS, in
# front of the same 5 sticky-svc replicas on loopback (bench/peers.sh's set-up, one worker each).
#
# One ECDSA P-256 certificate for all three (`gateway cert`), TLS 1.3 only, X25519 only, no
# resumption for anyone:
#   - nginx: `ssl_protocols TLSv1.3; ssl_ecdh_curve X25519; ssl_session_cache off;
#     ssl_session_tickets off;`, `listen … ssl http2`, `hash $http_x_user consistent`, upstream
#     keepalive;
#   - HAProxy: `bind … ssl crt … ssl-min-ver TLSv1.3 curves X25519 no-tls-tickets alpn
#     h2,http/1.1`, `tune.ssl.cachesize 0`, `balance hdr(x-user)`, `hash-type consistent`;
#   - the gateway: `--listen-tls` with a Gateway server `{protocol: HTTPS, hosts: ["*"], tls:
#     {mode: SIMPLE, credentialName: bench}}` (rustls' defaults: no stateless tickets, but a
#     256-entry stateful session cache; see docs/benchmarks.md for why it does not matter here).
# The clients run with an OpenSSL config of their own (`MinProtocol = TLSv1.3`, `Groups = X25519`,
# `Ciphersuites = SUITE`, by default TLS_AES_256_GCM_SHA384), so what is negotiated is the
# clients' to decide and the same for all; `openssl s_client` checks it per proxy before the load.
#
# Two loads, each proxy pinned to PROXY_CPU, clients and replicas to OTHER_CPU:
#   - keep-alive: `wrk -t1 -cCONNECTIONS` over HTTPS with bench/peers.lua (USERS users in
#     rotation): requests/s, p99, the proxy's CPU per 100k requests;
#   - handshakes: HANDSHAKE_CLIENTS x `openssl s_time -new -tls1_3` (connect, full handshake,
#     close; a fresh SSL object per connection, so it never offers a session to resume):
#     handshakes/s and the proxy's CPU per 1k handshakes.
# CPU is /proc/<pid>/stat utime + stime of all the proxy's processes and threads (bench/lib.sh
# `ticks`), as bench/peers.sh reads it. ROUNDS rounds; in each, both loads run on the three
# proxies in an order that rotates every round. The report (medians, gateway / best peer) replaces
# the marked section of docs/benchmarks.md (DOC= to change, DOC= empty to only print).
#
#   bench/tls.sh                          # 3 rounds x 3 proxies x 2 loads x 5 s: about 2 minutes
#   ROUNDS=5 DURATION=4 bench/tls.sh
#   SUITE=TLS_AES_128_GCM_SHA256 DOC= bench/tls.sh   # browsers' first suite; print only
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5} # seconds per run (whole seconds: s_time's -time)
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
HANDSHAKE_CLIENTS=${HANDSHAKE_CLIENTS:-2}
SUITE=${SUITE:-TLS_AES_256_GCM_SHA384} # the one suite the clients offer (OpenSSL's first)
BASE_PORT=${BASE_PORT:-18600}          # replicas BASE_PORT…+4; nginx +10, HAProxy +11,
#                                        gateway +12 (+13 cleartext, +14 admin)
PROXY_CPU=${PROXY_CPU:-0}
OTHER_CPU=${OTHER_CPU:-1}
DOC=${DOC-docs/benchmarks.md}
REPLICAS=5

need wrk wrk
need nginx nginx-light
need haproxy haproxy
need openssl openssl
need python3 python3
export PATH="$PATH:/usr/sbin"

nginx_port=$((BASE_PORT + 10)) haproxy_port=$((BASE_PORT + 11)) gateway_port=$((BASE_PORT + 12))
gateway_plain_port=$((BASE_PORT + 13)) admin_port=$((BASE_PORT + 14))
ports_free $(seq "$BASE_PORT" $((BASE_PORT + REPLICAS - 1))) "$nginx_port" "$haproxy_port" \
  "$gateway_port" "$gateway_plain_port" "$admin_port"

cargo build --release --quiet -p gateway -p sticky-svc
GATEWAY_BIN=target/x86_64-unknown-linux-gnu/release/gateway

scratch

# One certificate for all: ECDSA P-256 for localhost from the gateway's own `cert` (the leaf
# alone in tls.crt, so every server sends the same one-certificate chain).
certs=$work/certs
"$GATEWAY_BIN" cert --dir "$certs" --name bench --host localhost >/dev/null
cert=$certs/bench/tls.crt key=$certs/bench/tls.key ca=$certs/ca/ca.crt
cat "$cert" "$key" >"$work/bench.pem"

cat >"$work/client.cnf" <<CNF
# The clients' OpenSSL config (wrk, s_time, s_client): TLS 1.3, X25519, one suite.
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Groups = X25519
Ciphersuites = $SUITE
CNF
client_env=(env "OPENSSL_CONF=$work/client.cnf")

pinning "$PROXY_CPU" "$OTHER_CPU"
start_backends "$BASE_PORT" "$REPLICAS" "${pin_client[@]}"

upstreams="" servers=""
for i in $(seq 0 $((REPLICAS - 1))); do
  upstreams+="    server 127.0.0.1:$((BASE_PORT + i));"$'\n'
  servers+="  server svc-$i 127.0.0.1:$((BASE_PORT + i))"$'\n'
done

# nginx 1.25.1+ spells HTTP/2 `http2 on;`; older ones (Debian bookworm's 1.22) `listen … http2`.
nginx_version=$(nginx -v 2>&1 | sed 's/.*nginx\///; s/ .*//')
if printf '1.25.1\n%s\n' "$nginx_version" | sort -V -C; then
  nginx_listen="listen 127.0.0.1:$nginx_port ssl;"$'\n'"    http2 on;"
else
  nginx_listen="listen 127.0.0.1:$nginx_port ssl http2;"
fi
{
  nginx_head 1
  nginx_upstream
  cat <<NGINX
  server {
    $nginx_listen
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_session_cache off;
    ssl_session_tickets off;
    # nginx closes a keep-alive connection after 1000 requests by default (the others never):
    # in the keep-alive load that would be a new handshake every ~1000 requests for nginx only.
    keepalive_requests 1000000;
NGINX
  nginx_proxy_location
  cat <<NGINX
  }
}
NGINX
} >"$work/nginx.conf"

haproxy_tls="ssl crt $work/bench.pem ssl-min-ver TLSv1.3 curves X25519 no-tls-tickets"
haproxy_tls+=" alpn h2,http/1.1"
HAPROXY_GLOBAL="  tune.ssl.cachesize 0" haproxy_conf 1 "127.0.0.1:$haproxy_port $haproxy_tls" https >"$work/haproxy.cfg"

{
  cat <<YAML
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: bench}
---
YAML
  gateway_yaml "$BASE_PORT" "$REPLICAS"
} >"$work/istio.yaml"

"${pin_server[@]}" nginx -p "$work" -c "$work/nginx.conf" &
nginx_master=$!
"${pin_server[@]}" haproxy -db -f "$work/haproxy.cfg" &
haproxy_pid=$!
RUST_LOG=warn "${pin_server[@]}" "$GATEWAY_BIN" run --config "$work/istio.yaml" \
  --listen "127.0.0.1:$gateway_plain_port" --listen-tls "127.0.0.1:$gateway_port" \
  --credentials-dir "$certs" --admin "127.0.0.1:$admin_port" --workers 1 &
gateway_pid=$!
pids+=("$nginx_master" "$haproxy_pid" "$gateway_pid")

# wait_https PORT: up to 10 s for an HTTPS answer on localhost:PORT.
wait_https() {
  local _
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$ca" --resolve "localhost:$1:127.0.0.1" -H "x-user: ricky" \
      "https://localhost:$1/ping" && return
    sleep 0.1
  done
  echo "nothing answers HTTPS on port $1" >&2
  return 1
}
for port in "$nginx_port" "$haproxy_port" "$gateway_port"; do wait_https "$port"; done
read -ra nginx_pids <<<"$nginx_master $(children "$nginx_master")"
targets=("nginx:$nginx_port" "haproxy:$haproxy_port" "gateway:$gateway_port")
declare -A proxy_pids=([nginx]="${nginx_pids[*]}" [haproxy]="$haproxy_pid" [gateway]="$gateway_pid")

echo "machine: $(machine)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load_before"

# What each proxy negotiates with the clients' config, whether it sends session tickets, and
# whether it resumes one; and one request per proxy with the CA: the certificate verifies, and
# the answer names its replica (x-served-by).
: >"$work/checks"
request=$'GET /ping HTTP/1.1\r\nHost: localhost\r\nx-user: ricky\r\nConnection: close\r\n\r\n'
for target in "${targets[@]}"; do
  name=${target%%:*} port=${target#*:}
  s_client=("${client_env[@]}" openssl s_client -connect "127.0.0.1:$port" -servername localhost
    -CAfile "$ca" -alpn http/1.1 -ign_eof)
  out=$(printf '%s' "$request" | "${s_client[@]}" -sess_out "$work/$name.session" 2>&1 || true)
  resumed=$(printf '%s' "$request" | "${s_client[@]}" -sess_in "$work/$name.session" 2>&1 |
    grep -c '^Reused,' || true)
  served=$(curl -s -o /dev/null -D - --cacert "$ca" --resolve "localhost:$port:127.0.0.1" \
    -H "x-user: ricky" -w 'http_version=%{http_version}\n' "https://localhost:$port/ping" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "x-served-by" {s = $2}
      /^http_version=/ {split($0, v, "="); h = v[2]}
      END {print (s == "" ? "-" : s), (h == "" ? "-" : h)}')
  awk -v name="$name" -v resumed="$resumed" -v served="$served" '
    /^New, / {protocol = $2; sub(",", "", protocol); cipher = $NF}
    /^Server Temp Key:/ {group = $4; sub(",", "", group)}
    /^Peer signature type:/ {sig = $4}
    /^ALPN protocol:/ {alpn = $3}
    /^Verify return code:/ && !code {code = $4}
    /New Session Ticket arrived/ {tickets++}
    END {print name, protocol, cipher, group, sig, alpn ? alpn : "-", code, tickets + 0, resumed,
      served}' \
    <<<"$out" >>"$work/checks"
done
echo "checks (proxy protocol suite group signature alpn verify tickets resumed served-by http):"
cat "$work/checks"

export BENCH_USERS=$USERS

# keepalive NAME ROUND PORT: one wrk run over HTTPS; appends a results line.
keepalive() {
  local name=$1 round=$2 port=$3 before sys_before after sys_after line replicas_before replicas
  read -ra cpu_pids <<<"${proxy_pids[$name]}"
  before=$(ticks "${cpu_pids[@]}") sys_before=$(system_ticks "${cpu_pids[@]}")
  read -r other_busy_before _ other_total_before < <(cpu_ticks "$OTHER_CPU")
  replicas_before=$(ticks "${backend_pids[@]}")
  line=$("${client_env[@]}" "${pin_client[@]}" wrk -t1 "-c$CONNECTIONS" -s bench/peers.lua \
    "-d${DURATION}s" "https://localhost:$port/ping" | awk '$1 == "result"')
  after=$(ticks "${cpu_pids[@]}") sys_after=$(system_ticks "${cpu_pids[@]}")
  read -r other_busy _ other_total < <(cpu_ticks "$OTHER_CPU")
  replicas=$(($(ticks "${backend_pids[@]}") - replicas_before))
  read -r _ requests duration p50 p99 p999 errors status <<<"$line"
  echo "keepalive $name $round $requests $duration $p50 $p99 $p999 $((errors + status))" \
    "$((after - before)) $((sys_after - sys_before)) $((other_busy - other_busy_before))" \
    "$((other_total - other_total_before)) $replicas" >>"$work/results"
  tail -n 1 "$work/results" | awk -v hz="$(getconf CLK_TCK)" '{
    printf "round %s keep-alive %-8s %8.0f requests/s  p99 %6.2f ms  errors %d  CPU %.2f s/100k\n",
      $3, $2, $4 / $5 * 1e6, $7 / 1000, $9, $10 / hz / $4 * 1e5}'
}

# handshakes NAME ROUND PORT: HANDSHAKE_CLIENTS s_time processes at once; appends a results line.
handshakes() {
  local name=$1 round=$2 port=$3 before sys_before after sys_after start end i count failed=0
  local replicas_before replicas
  read -ra cpu_pids <<<"${proxy_pids[$name]}"
  local clients=()
  before=$(ticks "${cpu_pids[@]}") sys_before=$(system_ticks "${cpu_pids[@]}")
  read -r other_busy_before _ other_total_before < <(cpu_ticks "$OTHER_CPU")
  replicas_before=$(ticks "${backend_pids[@]}")
  start=$(date +%s%N)
  for i in $(seq "$HANDSHAKE_CLIENTS"); do
    "${client_env[@]}" "${pin_client[@]}" openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 \
      -time "$DURATION" >"$work/s_time.$i" 2>&1 &
    clients+=($!)
  done
  for i in "${clients[@]}"; do wait "$i" || failed=$((failed + 1)); done
  end=$(date +%s%N)
  after=$(ticks "${cpu_pids[@]}") sys_after=$(system_ticks "${cpu_pids[@]}")
  read -r other_busy _ other_total < <(cpu_ticks "$OTHER_CPU")
  replicas=$(($(ticks "${backend_pids[@]}") - replicas_before))
  # "N connections in Xs; …" (user time); the wall time is ours: s_time rounds it to seconds.
  count=$(cat "$work"/s_time.* | awk '/connections in .*user sec/ {n += $1} END {print n + 0}')
  rm -f "$work"/s_time.*
  echo "handshakes $name $round $count $(((end - start) / 1000)) - - - $failed" \
    "$((after - before)) $((sys_after - sys_before)) $((other_busy - other_busy_before))" \
    "$((other_total - other_total_before)) $replicas" >>"$work/results"
  tail -n 1 "$work/results" | awk -v hz="$(getconf CLK_TCK)" '{
    printf "round %s handshakes %-8s %8.0f handshakes/s  failed clients %d  CPU %.3f s/1k (%.0f us each)\n",
      $3, $2, $4 / $5 * 1e6, $9, $10 / hz / $4 * 1e3, $10 / hz / $4 * 1e6}'
}

echo "warm-up: ${WARMUP}s of each load on each proxy"
for target in "${targets[@]}"; do
  "${client_env[@]}" "${pin_client[@]}" wrk -t1 "-c$CONNECTIONS" -s bench/peers.lua \
    "-d${WARMUP}s" "https://localhost:${target#*:}/ping" >/dev/null
  "${client_env[@]}" "${pin_client[@]}" openssl s_time -connect "127.0.0.1:${target#*:}" -new \
    -tls1_3 -time "$WARMUP" >/dev/null 2>&1
done

: >"$work/results"
for round in $(seq "$ROUNDS"); do
  # The order rotates every round: each proxy runs first, second and third in turn.
  order=()
  for i in 0 1 2; do order+=("${targets[$(((i + round - 1) % 3))]}"); done
  for target in "${order[@]}"; do keepalive "${target%%:*}" "$round" "${target#*:}"; done
  for target in "${order[@]}"; do handshakes "${target%%:*}" "$round" "${target#*:}"; done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average after: $load_after"
{
  echo "nginx $(peak_rss_kib "${nginx_pids[@]}")"
  echo "haproxy $(peak_rss_kib "$haproxy_pid")"
  echo "gateway $(peak_rss_kib "$gateway_pid")"
} >"$work/rss"

command="just bench-tls"
overrides=$(env | grep -E '^(ROUNDS|DURATION|WARMUP|CONNECTIONS|USERS|HANDSHAKE_CLIENTS|SUITE)=' |
  sort | tr '\n' ' ' || true)
[ -n "$overrides" ] && command="$overrides$command"
rustls_version=$(awk '/^name = "rustls"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
awslc_version=$(awk '/^name = "aws-lc-rs"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
versions="$(nginx -v 2>&1 | sed 's/.*version: //') and HAProxy $(haproxy -v | awk 'NR == 1 {print $3}')"
versions+=" on $(openssl version | awk '{print $1, $2}')"
versions+=", the gateway on rustls $rustls_version with aws-lc-rs $awslc_version; clients"
versions+=" $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}' || true) and openssl s_time" # wrk -v exits 1
pinned="Each proxy (one worker: nginx \`worker_processes 1\`, HAProxy \`nbthread 1\`,"
pinned+=" \`gateway run --workers 1\`) is pinned to CPU $PROXY_CPU, the replicas and the clients"
pinned+=" to CPU $OTHER_CPU."
cat >"$work/meta" <<META
date=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway services || echo ' (with uncommitted changes)')
command=$command
machine=$(machine)
versions=$versions
load_before=$load_before
load_after=$load_after
connections=$CONNECTIONS
duration=$DURATION
users=$USERS
rounds=$ROUNDS
handshake_clients=$HANDSHAKE_CLIENTS
clk_tck=$(getconf CLK_TCK)
pinning=${pin_server:+$pinned}
META
python3 bench/tls.py --results "$work/results" --checks "$work/checks" --rss "$work/rss" \
  --meta "$work/meta" ${DOC:+--doc "$DOC"}
# Every run without errors; every proxy on TLS 1.3 with X25519, verified, and answering.
if awk '$9 != 0 {bad = 1} END {exit !bad}' "$work/results" ||
  awk '$2 != "TLSv1.3" || $4 != "X25519" || $7 != 0 || $10 == "-" {bad = 1} END {exit !bad}' \
    "$work/checks"; then
  echo "a run had errors, or a proxy negotiated something else or did not answer (see above)" >&2
  exit 1
fi
