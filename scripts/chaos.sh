#!/usr/bin/env bash
# The chaos run (`just chaos`, and CI through scripts/e2e.sh): the compose stack under a goose
# load while one replica hangs and hostile clients hold connections to the gateway.
#
#   stack.sh up                 5 replicas + gateway, as project sticky-chaos on port 18080
#   goose `-s chaos`            100 users inside the compose network (the sticky/loadtest image)
#   hostile x 3 (on the host)   200 stalled bodies, 200 idle h2c, 200 stalled heads against the
#                               published port, opened while the users are warm, held to the end
#   docker pause / unpause      the replica of user chaos-0, paused 20 s once every user is warm
#   verdict (goose's)           reads the pause's record (target/chaos/record.json) when the
#                               load ends: no error for the other replicas' users, no call of
#                               the paused replica's users over 15 s, everyone home and warm
#                               5 s after the resume (docs/reliability.md, "Chaos run")
#   stack.sh down               nothing of the project left, whatever happened
#
# Prints the gateway's memory (docker stats) before, during the pause and after, and keeps the
# load's summary, the hostile reports and the gateway's log in target/chaos/. Exit 0 when the
# verdict passed, 1 otherwise. Images must be built (`just chaos` does it; PROFILE=dev by
# default, the build `cargo test` made).
#
# Settings (environment): COMPOSE_PROJECT_NAME (sticky-chaos), GATEWAY_PORT (18080),
# GATEWAY_TLS_PORT (18082), GATEWAY_ADMIN_PORT (18081), FIRST_CALL_COST (2s, whole seconds),
# PROFILE (dev), CHAOS_USERS (100), CHAOS_PAUSE (20, s), CHAOS_SETTLE (5, s),
# CHAOS_MAX_LATENCY (15s), CHAOS_HOSTILE (200 connections per hostile mode), CHAOS_OUT
# (target/chaos).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

. scripts/lib.sh
# The users' first calls must be over before the pause; 2 s keeps CI short. The latency bound
# scales with it: see docs/reliability.md.
compose_run chaos 18080 2s
users="${CHAOS_USERS:-100}"
pause_s="${CHAOS_PAUSE:-20}"
settle_s="${CHAOS_SETTLE:-5}"
max_latency="${CHAOS_MAX_LATENCY:-15s}"
hostile_connections="${CHAOS_HOSTILE:-200}"
out="$(out_dir CHAOS_OUT "${CHAOS_OUT:-$root/target/chaos}")"

for n in "$users" "$pause_s" "$settle_s" "$hostile_connections" "$cost_s"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "CHAOS_USERS, CHAOS_PAUSE, CHAOS_SETTLE, CHAOS_HOSTILE and FIRST_CALL_COST are whole numbers (of seconds), got '$n'"
done

case "$PROFILE" in
  release) hostile="target/x86_64-unknown-linux-gnu/release/hostile" ;;
  dev | debug) hostile="target/x86_64-unknown-linux-gnu/debug/hostile" ;;
  *) die "PROFILE must be dev or release, not '$PROFILE'" ;;
esac
need_stack_images
[[ -x "$hostile" ]] || die "no $hostile: build it (PROFILE=$PROFILE scripts/images.sh builds every binary)"

# The timeline, in seconds from the load's start. Goose starts 50 users a second, each pays one
# first call, then the pause waits a few seconds more: every user has a home before it.
hatch_rate=50
warm_s=$((users / hatch_rate + cost_s + 8))
hostile_s=$((warm_s - 5))
# After the settle, 10 s of calls show every user home; goose's run time starts once all
# users are started.
run_s=$((warm_s + pause_s + settle_s + 10))

rm -rf "$out"
mkdir -p "$out"
compose() { scripts/stack.sh compose "$@"; }

paused="" resumed="" load_pid="" hostile_pids=() gateway=""
start=$SECONDS
cleanup() {
  local code=$?
  trap - EXIT
  step "cleanup"
  if [[ -n "$paused" && -z "$resumed" ]]; then
    docker unpause "$paused" >/dev/null 2>&1 || true
  fi
  local pid
  for pid in "${hostile_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  if [[ -n "$load_pid" ]] && kill -0 "$load_pid" 2>/dev/null; then
    # The load container first: its `compose run` then returns.
    docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
      --filter "label=com.docker.compose.service=loadtest" | xargs -r docker rm -f >/dev/null
    kill -TERM "$load_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  if [[ -n "$gateway" ]]; then
    docker logs "$gateway" >"$out/gateway.log" 2>&1 || true
    if ((code != 0)); then
      say "the gateway's last log lines ($out/gateway.log has them all):"
      tail -n 40 "$out/gateway.log" >&2 || true
    fi
  fi
  # Stops everything and fails if a container or the network is left behind.
  scripts/stack.sh down || code=1
  if ((code == 0)); then
    say "passed in $((SECONDS - start)) s"
  else
    say "FAILED after $((SECONDS - start)) s (files in $out)" >&2
  fi
  exit "$code"
}
trap cleanup EXIT

# UTC wall clock with milliseconds, the form the loadtest reads.
now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
# Sleeps until `$2` seconds after the epoch time `$1` (date +%s.%N), to the millisecond.
sleep_until() { sleep "$(awk -v from="$1" -v s="$2" -v now="$(date +%s.%N)" 'BEGIN { w = from + s - now; printf "%.3f", (w > 0 ? w : 0) }')"; }
memory() { docker stats --no-stream --format '{{.MemUsage}}' "$gateway" | awk '{ print $1 }'; }
# Sleeps until `$1` seconds after the load started.
until_s() {
  local wait=$((load_started + $1 - SECONDS))
  ((wait <= 0)) || sleep "$wait"
}

step "stack.sh up ($COMPOSE_PROJECT_NAME on port $GATEWAY_PORT, FIRST_CALL_COST=$FIRST_CALL_COST, $PROFILE images)"
scripts/stack.sh up
gateway="$(compose ps -q gateway)"
[[ -n "$gateway" ]] || { say "no gateway container" >&2; exit 1; }
rss_before="$(memory)"
say "gateway memory before the load: $rss_before"

step "goose -s chaos: $users users for ${run_s}s after hatching (pause at +${warm_s}s for ${pause_s}s)"
# Inside the compose network, as `just load`: the load does not share the host's port proxy
# with the hostile clients. The folder is mounted for the record and the summary; the host's
# user owns what the load writes there.
compose --profile load run --rm -T --user "$(id -u):$(id -g)" -v "$out:/chaos" loadtest \
  --host http://gateway:8080 --scenario chaos --users "$users" --hatch-rate "$hatch_rate" \
  --run-time "${run_s}s" --first-call-cost "$FIRST_CALL_COST" --key-prefix chaos \
  --chaos-record /chaos/record.json --chaos-settle "${settle_s}s" \
  --max-chaos-latency "$max_latency" --out-dir /chaos/load >"$out/load.log" 2>&1 &
load_pid=$!
load_started=$SECONDS

until_s "$hostile_s"
step "hostile clients on 127.0.0.1:$GATEWAY_PORT: $hostile_connections each of stalled-body, idle-h2, stalled-head"
hold_s=$((run_s + 5 - hostile_s))
# The stalled bodies announce 10 000 bytes, under the gateway's 64 KiB retry buffer: the gateway
# waits for such a body itself (a larger one would be streamed to sticky-svc, which answers a
# POST 405 without reading it), so its body timeout (30 s) answers them 408 within the run.
for mode in stalled-body idle-h2 stalled-head; do
  "$hostile" "$mode" --target "127.0.0.1:$GATEWAY_PORT" --connections "$hostile_connections" \
    --rate 100 --hold "${hold_s}s" --progress 0s --content-length 10000 \
    >"$out/hostile-$mode.log" 2>&1 &
  hostile_pids+=("$!")
done

until_s "$warm_s"
step "pause the replica of user chaos-0"
headers="$(curl --silent --show-error --max-time 10 -D - -o /dev/null -H "x-user: chaos-0" \
  "http://127.0.0.1:$GATEWAY_PORT/ping" | tr -d '\r')"
host="$(sed -n 's/^x-served-by: //Ip' <<<"$headers")"
cache="$(sed -n 's/^x-cache: //Ip' <<<"$headers")"
[[ -n "$host" ]] || { say "no x-served-by for chaos-0: $headers" >&2; exit 1; }
[[ "$cache" == hit ]] || say "chaos-0 was not warm yet (x-cache: $cache); the verdict will say who was"
for id in $(compose ps -q sticky-svc); do
  if [[ "$(docker inspect --format '{{.Config.Hostname}}' "$id")" == "$host" ]]; then
    paused="$id"
  fi
done
[[ -n "$paused" ]] || { say "no sticky-svc container has the host name $host" >&2; exit 1; }
paused_epoch="$(date +%s.%N)"
paused_at="$(date -u -d "@$paused_epoch" +%Y-%m-%dT%H:%M:%S.%3NZ)"
docker pause "$paused" >/dev/null
say "paused $host (container ${paused:0:12}) at $paused_at"
sleep_until "$paused_epoch" $((pause_s / 2))
rss_during="$(memory)"
say "gateway memory during the pause, hostile connections open: $rss_during"
sleep_until "$paused_epoch" "$pause_s"
docker unpause "$paused" >/dev/null
resumed_at="$(now)"
resumed=1
say "resumed $host at $resumed_at"
printf '{"replica": "%s", "container": "%s", "paused_at": "%s", "resumed_at": "%s"}\n' \
  "$host" "$paused" "$paused_at" "$resumed_at" >"$out/record.json.tmp"
mv "$out/record.json.tmp" "$out/record.json"

step "waiting for the load to end (goose's verdict)"
load_code=0
wait "$load_pid" || load_code=$?
load_pid=""
for pid in "${hostile_pids[@]}"; do
  wait "$pid" || say "hostile $pid exited with $?" >&2
done
hostile_pids=()
rss_after="$(memory)"
cat "$out/load.log"
step "the gateway's active checks of the replicas"
docker logs "$gateway" 2>&1 | grep 'active health check changed' || say "no change seen by the gateway's checks"
step "hostile clients"
hostile_failed=""
for mode in stalled-body idle-h2 stalled-head; do
  grep -E '^hostile: (done|ready)' "$out/hostile-$mode.log" | sed "s/^hostile:/  $mode:/" || true
  done_line="$(grep -E '^hostile: done ' "$out/hostile-$mode.log" || true)"
  # The gateway's defaults close the stalled ones within the run: every stalled body answered
  # 408 (--body-timeout 30 s), every stalled head closed (--idle-timeout 30 s). Idle h2c
  # connections (60 s) outlast the run: reported only.
  case $mode in
    stalled-body) want="open=0 server_closed=$hostile_connections .*answers=408:$hostile_connections " ;;
    stalled-head) want="open=0 server_closed=$hostile_connections " ;;
    *) want="" ;;
  esac
  if [[ -z "$done_line" ]] || ! grep -Eq -- "$want" <<<"$done_line"; then
    say "$mode: expected '$want' in hostile's done line: ${done_line:-none (see $out/hostile-$mode.log)}" >&2
    hostile_failed=1
  fi
done
step "gateway memory (docker stats): before $rss_before, during the pause $rss_during, after $rss_after"
[[ -z "$hostile_failed" ]] || { say "the gateway did not close the stalled clients as its defaults say (above)" >&2; exit 1; }
case "$load_code" in
  0) ;;
  1) say "goose's verdict: FAIL (above)" >&2; exit 1 ;;
  *) say "the load could not run (exit $load_code, above)" >&2; exit 1 ;;
esac
