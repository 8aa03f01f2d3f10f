#!/usr/bin/env bash
# The compose end-to-end run (CI, and `just e2e`): the README's quickstart through `just`, with
# every answer checked.
#
#   just up                     five replicas + gateway, healthy; it printed both curl lines
#   curl (twice)                cold: >= FIRST_CALL_COST; warm: fast; same replica
#   curl --cacert (twice)       the same over HTTPS with the local CA; HTTP/2 negotiated (ALPN);
#                               without the CA the certificate is refused
#   just scale 0                503 "no healthy upstream"
#   just scale 5                served again: cold once more, then warm
#   just load                   goose inside the network (the sticky/loadtest image is required)
#   LOAD_SCHEME=https just load the same users over HTTPS: as sticky, and every one warm on the
#                               replica it had over HTTP (one route table, one Maglev table)
#   just down                   no container or network of the project left
#
# It runs as its own compose project (sticky-e2e), so a stack you have up is not touched, and on
# ports 80 and 443 when they are free, else on free ones. Images must be built (`just e2e` does
# it). The local CA and certificate are .sticky/certs/'s, made by `just up` if missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-sticky-e2e}"
# Short enough for CI, long enough to tell a cold call from a warm one at a glance.
export FIRST_CALL_COST="${FIRST_CALL_COST:-2s}"
export PROFILE="${PROFILE:-dev}"
cost_s="${FIRST_CALL_COST%s}"
[[ "$cost_s" =~ ^[0-9]+$ ]] || { echo "compose-e2e: FIRST_CALL_COST must be whole seconds" >&2; exit 2; }

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'compose-e2e: FAIL: %s\n' "$*" >&2; exit 1; }

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for p in "$@"; do
    port_taken "$p" || { echo "$p"; return; }
  done
  fail "none of the ports $* is free"
}
export GATEWAY_PORT="${GATEWAY_PORT:-$(free_port 80 18080 18081 18082)}"
export GATEWAY_TLS_PORT="${GATEWAY_TLS_PORT:-$(free_port 443 18443 18444 18445)}"
export GATEWAY_ADMIN_PORT="${GATEWAY_ADMIN_PORT:-$(free_port 15000 15100 15101 15102)}"
url="http://localhost:$GATEWAY_PORT/ping"
tls_url="https://localhost:$GATEWAY_TLS_PORT/ping"
ca=.sticky/certs/ca/ca.crt

start=$SECONDS
cleanup() {
  local code=$?
  step "just down"
  # Stops everything and fails if a container or the network is left behind.
  scripts/stack.sh down || code=1
  if ((code == 0)); then
    echo "compose-e2e: passed in $((SECONDS - start)) s"
  else
    echo "compose-e2e: FAILED after $((SECONDS - start)) s" >&2
  fi
  exit "$code"
}
trap cleanup EXIT

# One call as the article makes it (USER [MAX_TIME [URL [CURL OPTIONS...]]]); sets status, host,
# seconds and version (the HTTP version curl spoke).
call() {
  local user="$1" max_time="${2:-30}" target="${3:-$url}"
  shift $(($# < 3 ? $# : 3))
  local headers out
  headers="$(mktemp)"
  out="$(curl --silent --max-time "$max_time" -D "$headers" -o /dev/null -H "x-user: $user" "$@" \
    --write-out '%{http_code} %{time_total} %{http_version}' "$target" || true)"
  read -r status seconds version <<<"$out"
  host="$(tr -d '\r' <"$headers" | sed -n 's/^x-served-by: //Ip')"
  rm -f "$headers"
  printf '  x-user: %-9s -> %s in %ss from %s (HTTP/%s)\n' "$user" "$status" "$seconds" "${host:--}" "${version:--}"
}
slower_than() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

step "just up (ports $GATEWAY_PORT and $GATEWAY_TLS_PORT, FIRST_CALL_COST=$FIRST_CALL_COST, $PROFILE images)"
up_log="$(mktemp)"
just up 2>&1 | tee "$up_log"
tls_host=localhost
[[ "$GATEWAY_TLS_PORT" == 443 ]] || tls_host="localhost:$GATEWAY_TLS_PORT"
printed="curl --cacert $ca https://$tls_host/ping -H \"x-user: ricky\""
grep -qF "$printed" "$up_log" || { rm -f "$up_log"; fail "just up did not print: $printed"; }
rm -f "$up_log"
[[ -r "$ca" ]] || fail "just up made no local CA at $ca"
# `just up` builds every image, the loadtest one included; the load step needs it, so a missing
# image fails the run here, before the checks, instead of the run passing without its load.
version="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version *=/ { print $2; exit }' Cargo.toml)"
for image in sticky-svc gateway loadtest; do
  docker image inspect "sticky/$image:$version" >/dev/null 2>&1 ||
    fail "no sticky/$image:$version image after \`just up\` (scripts/images.sh builds it from docker/$image.Dockerfile and the $image binary)"
done

step "the article's curl, twice: cold, then warm on the same replica"
call ricky
[[ "$status" == 200 ]] || fail "first call answered $status"
slower_than "$seconds" "$cost_s" || fail "first call took ${seconds}s, less than $FIRST_CALL_COST"
cold_host="$host"
call ricky
[[ "$status" == 200 ]] || fail "second call answered $status"
slower_than 0.5 "$seconds" || fail "second call took ${seconds}s: not a cache hit"
[[ "$host" == "$cold_host" ]] || fail "second call served by $host, first by $cold_host"

step "the dashboard just up printed: the page, and ricky's replica with one cold and one warm call"
admin="http://localhost:$GATEWAY_ADMIN_PORT"
curl --silent --fail --max-time 5 "$admin/" | grep -q '<title>sticky gateway</title>' ||
  fail "no dashboard page at $admin/"
# The sampler reads once a second: wait for a sample taken after the two calls.
deadline=$((SECONDS + 10))
until state="$(curl --silent --max-time 5 "$admin/state")" &&
  grep -q "\"cold\":1,[^}]*\"name\":\"$cold_host\"[^}]*\"warm\":1" <<<"$state"; do
  ((SECONDS < deadline)) || fail "the dashboard's /state does not show $cold_host with 1 cold and 1 warm call: $state"
  sleep 0.2
done
[[ "$(grep -o '"address":' <<<"$state" | wc -l)" == 5 ]] || fail "the dashboard does not list 5 replicas: $state"
echo "  /state: 5 replicas, $cold_host with ricky's cold and warm call"

step "HTTPS with the local CA (curl --cacert $ca): cold, then warm on the same replica"
# Another user than ricky: cold here, and after the dashboard counted ricky's two calls.
call ricky-tls 30 "$tls_url" --cacert "$ca"
[[ "$status" == 200 ]] || fail "first HTTPS call answered ${status:-nothing} (is the certificate served?)"
slower_than "$seconds" "$cost_s" || fail "first HTTPS call took ${seconds}s, less than $FIRST_CALL_COST"
cold_host="$host"
call ricky-tls 30 "$tls_url" --cacert "$ca"
[[ "$status" == 200 ]] || fail "second HTTPS call answered $status"
slower_than 0.5 "$seconds" || fail "second HTTPS call took ${seconds}s: not a cache hit"
[[ "$host" == "$cold_host" ]] || fail "second HTTPS call served by $host, first by $cold_host"
if curl -V | grep -qw HTTP2; then
  call ricky-tls 30 "$tls_url" --cacert "$ca" --http2
  [[ "$status" == 200 && "$version" == 2 ]] ||
    fail "curl --http2 spoke HTTP/$version (status $status): ALPN h2 not negotiated"
  [[ "$host" == "$cold_host" ]] || fail "the HTTP/2 call was served by $host, not $cold_host"
else
  echo "  HTTP/2 check: SKIPPED (this curl lacks the HTTP2 feature: curl -V)"
fi
# Without the CA curl must refuse the certificate: the answers above were verified ones.
call ricky-tls 10 "$tls_url"
[[ "$status" == 000 ]] || fail "curl without --cacert got $status: the certificate was not checked"

step "just scale 0: no replica, 503 at once"
just scale 0
deadline=$((SECONDS + 5))
while :; do
  call ricky 2
  [[ "$status" == 503 ]] && break
  ((SECONDS < deadline)) || fail "no 503 within 5 s of scaling to 0 (last: $status)"
  sleep 0.2
done

step "just scale 5: served again, each user cold once more"
just scale 5
deadline=$((SECONDS + 10))
while :; do
  call ricky
  [[ "$status" == 200 ]] && break
  ((SECONDS < deadline)) || fail "not served within 10 s of scaling to 5 (last: $status)"
  sleep 0.2
done
slower_than "$seconds" "$cost_s" || fail "first call after scale 5 took ${seconds}s: not cold"
cold_host="$host"
call ricky
slower_than 0.5 "$seconds" || fail "second call after scale 5 took ${seconds}s: not warm"
[[ "$host" == "$cold_host" ]] || fail "served by $host, then by $cold_host"

step "the dashboard's timeline: the replicas removed by scale 0 and added by scale 5"
history="$(curl --silent --max-time 2 "$admin/events" || true)"
grep -q '"kind":"removed"' <<<"$history" || fail "no 'removed' event on the timeline: $history"
grep -q '"kind":"added"' <<<"$history" || fail "no 'added' event on the timeline: $history"
echo "  timeline: removed and added events"

# `just load` with LOAD_SCHEME=$1; sets `report`, the run's folder (target/loadtest/<time>).
load() {
  local log
  log="$(mktemp)"
  LOAD_SCHEME="$1" LOAD_USERS="${LOAD_USERS:-50}" LOAD_RUN_TIME="${LOAD_RUN_TIME:-10s}" just load 2>&1 |
    tee "$log" || { rm -f "$log"; fail "just load failed (goose's verdict above)"; }
  report="$(sed -n 's|^report: \(target/loadtest/[^/]*\)/report.html$|\1|p' "$log")"
  rm -f "$log"
  [[ -n "$report" && -f "$report/summary.json" ]] || fail "just load named no report folder with a summary.json"
}
# A figure of a load's summary.json: REPORT_FOLDER PYTHON_EXPRESSION_ON_s.
figure() { python3 -c "import json, sys; s = json.load(open(sys.argv[1])); print($2)" "$1/summary.json"; }

step "just load: goose inside the compose network"
load http
http_report="$report"

step "LOAD_SCHEME=https just load: the same users over HTTPS (https://gateway:8443, the local CA)"
load https
target="$(figure "$report" "s['host']")"
[[ "$target" == https://gateway:8443/ ]] || fail "the HTTPS load ran against $target"
# Their caches are on the replicas the HTTP load found: over HTTPS each user's first call is
# already warm, on the same replica, only if both listeners route by the same table.
cold="$(figure "$report" "s['cold']['count']")"
[[ "$cold" == 0 ]] || fail "$cold users were cold over HTTPS: routed elsewhere than over HTTP"
spread() { figure "$1" "sorted(s['users_per_host'].items())"; }
[[ "$(spread "$report")" == "$(spread "$http_report")" ]] ||
  fail "users per replica differ between the HTTP and the HTTPS load: $(spread "$http_report") vs $(spread "$report")"
echo "  every user warm over HTTPS, on its replica from the HTTP load"
