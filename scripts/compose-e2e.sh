#!/usr/bin/env bash
# The compose end-to-end run (CI, and `just e2e`): the README's quickstart through `just`, with
# every answer checked.
#
#   just up                     five replicas + gateway, healthy
#   curl (twice)                cold: >= FIRST_CALL_COST; warm: fast; same replica
#   just scale 0                503 "no healthy upstream"
#   just scale 5                served again: cold once more, then warm
#   just load                   goose inside the network (the sticky/loadtest image is required)
#   just down                   no container or network of the project left
#
# It runs as its own compose project (sticky-e2e), so a stack you have up is not touched, and on
# port 80 when that is free, else on a free port. Images must be built (`just e2e` does it).
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
export GATEWAY_ADMIN_PORT="${GATEWAY_ADMIN_PORT:-$(free_port 15000 15100 15101 15102)}"
url="http://localhost:$GATEWAY_PORT/ping"

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

# One call as the article makes it; sets status, host, seconds.
call() {
  local headers
  headers="$(mktemp)"
  local out
  out="$(curl --silent --max-time "${2:-30}" -D "$headers" -o /dev/null -H "x-user: $1" \
    --write-out '%{http_code} %{time_total}' "$url" || true)"
  status="${out% *}" seconds="${out#* }"
  host="$(tr -d '\r' <"$headers" | sed -n 's/^x-served-by: //Ip')"
  rm -f "$headers"
  printf '  x-user: %-6s -> %s in %ss from %s\n' "$1" "$status" "$seconds" "${host:--}"
}
slower_than() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

step "just up (port $GATEWAY_PORT, FIRST_CALL_COST=$FIRST_CALL_COST, $PROFILE images)"
just up
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

step "just load: goose inside the compose network"
LOAD_USERS="${LOAD_USERS:-50}" LOAD_RUN_TIME="${LOAD_RUN_TIME:-10s}" just load ||
  fail "just load failed (goose's verdict above)"
