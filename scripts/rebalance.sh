#!/usr/bin/env bash
# The rebalance run (`just rebalance`, and CI through scripts/e2e.sh): the compose stack scaled
# from 3 to 5 replicas under a goose load, once with the article's config (consistent hashing
# alone) and once with persistent sessions (STICKY_SESSIONS=1, docs/sessions.md).
#
# Per mode:
#   stack.sh up, scale 3          project sticky-rebalance on port 18090, FIRST_CALL_COST 1s
#   goose `-s rebalance`          REBALANCE_USERS users inside the compose network, from 3
#                                 replicas; `stack.sh scale 5` once every user is warm
#   goose `-s sticky`             a second group of users, started after the scale
#   stack.sh down                 nothing of the project left, whatever happened
#
# Verdicts: sessions mode — goose's rebalance verdict with `--max-moved 0` (nobody moved) and 0
# lost caches: every user is served by its first replica, from its cache, through the scale;
# both modes — the late group spreads over all 5 replicas. Hash mode's own rebalance verdict
# (moved within the ideal 40% + 10 points, nobody moved twice) is reported, not judged here: with
# 60 users and the replicas' addresses new each run, 10 points is 1.2 standard deviations, and
# two replicas found by DNS one lookup apart move some users twice (the article's caveat, which
# sessions answer). The users moved and caches lost of each mode are printed side by
# side at the end; summaries in target/rebalance/. Exit 0 when every verdict passed.
#
# Settings (environment): COMPOSE_PROJECT_NAME (sticky-rebalance), GATEWAY_PORT (18090),
# GATEWAY_TLS_PORT (18092), GATEWAY_ADMIN_PORT (18091), FIRST_CALL_COST (1s, whole seconds),
# PROFILE (dev: images must be built, `just rebalance` does it), REBALANCE_USERS (60),
# REBALANCE_MODES ("hash sessions"), REBALANCE_OUT (target/rebalance).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

. scripts/lib.sh
compose_run rebalance 18090 1s
users="${REBALANCE_USERS:-60}"
modes="${REBALANCE_MODES:-hash sessions}"
out="$(out_dir REBALANCE_OUT "${REBALANCE_OUT:-$root/target/rebalance}")"

for n in "$users" "$cost_s"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "REBALANCE_USERS and FIRST_CALL_COST are whole numbers (of seconds), got '$n'"
done
for mode in $modes; do
  [[ "$mode" == hash || "$mode" == sessions ]] || die "REBALANCE_MODES holds hash and/or sessions, got '$mode'"
done
need_stack_images

# Goose starts 50 users a second, each pays one first call; the scale comes a few seconds after.
hatch_rate=50
warm_s=$((users / hatch_rate + cost_s + 4))
run_s=$((warm_s + 20))

rm -rf "$out"
mkdir -p "$out"
compose() { scripts/stack.sh compose "$@"; }

load_pid="" up=""
start=$SECONDS
cleanup() {
  local code=$?
  trap - EXIT
  if [[ -n "$load_pid" ]] && kill -0 "$load_pid" 2>/dev/null; then
    docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
      --filter "label=com.docker.compose.service=loadtest" | xargs -r docker rm -f >/dev/null
    kill -TERM "$load_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  if [[ -n "$up" ]]; then
    scripts/stack.sh down || code=1
  fi
  if ((code == 0)); then
    say "passed in $((SECONDS - start)) s"
  else
    say "FAILED after $((SECONDS - start)) s (files in $out)" >&2
  fi
  exit "$code"
}
trap cleanup EXIT

# Waits (60 s at most) until the gateway routes over $1 replicas.
routable() {
  local deadline=$((SECONDS + 60)) seen=""
  while ((SECONDS < deadline)); do
    seen="$(curl -s --max-time 2 "http://127.0.0.1:$GATEWAY_ADMIN_PORT/clusters" | sed -n 's/.*"routable": \([0-9]*\).*/\1/p' | head -n 1)"
    [[ "$seen" == "$1" ]] && return 0
    sleep 0.2
  done
  say "the gateway did not route over $1 replicas within 60 s (last seen: ${seen:-nothing})" >&2
  return 1
}

# goose inside the compose network, as `just load`; $1 names the run's folder under $out.
goose() {
  local name=$1
  shift
  mkdir -p "$out/$name"
  compose --profile load run --rm -T --user "$(id -u):$(id -g)" -v "$out/$name:/out" loadtest \
    --host http://gateway:8080 --first-call-cost "$FIRST_CALL_COST" --out-dir /out "$@"
}

failed=""
results=()
for mode in $modes; do
  if [[ "$mode" == sessions ]]; then export STICKY_SESSIONS=1; else export STICKY_SESSIONS=0; fi
  step "$mode: stack.sh up, scale 3 ($COMPOSE_PROJECT_NAME on port $GATEWAY_PORT, FIRST_CALL_COST=$FIRST_CALL_COST, $PROFILE images)"
  up=1
  scripts/stack.sh up
  scripts/stack.sh scale 3
  routable 3

  # Latency is not what this run judges (the compose e2e's loads and the chaos run do): two
  # replicas start on the same 2 cores during the load, and a warm p99 of 102 ms against the
  # default 100 ms bound failed a run whose moves were all right. A loose bound still catches a
  # stall.
  verdict=(--max-warm-p99 500ms)
  # With sessions nobody may move and no cache may be lost.
  [[ "$mode" == sessions ]] && verdict+=(--max-moved 0)
  step "$mode: goose -s rebalance, $users users for ${run_s}s after hatching; scale 5 at +${warm_s}s"
  goose "$mode" --scenario rebalance --users "$users" --hatch-rate "$hatch_rate" \
    --run-time "${run_s}s" --key-prefix "rb-$mode" "${verdict[@]}" >"$out/$mode.log" 2>&1 &
  load_pid=$!
  load_started=$SECONDS
  sleep $((warm_s))
  scripts/stack.sh scale 5
  say "scaled to 5 at +$((SECONDS - load_started)) s"
  routable 5
  load_code=0
  wait "$load_pid" || load_code=$?
  load_pid=""
  cat "$out/$mode.log"
  if ((load_code != 0)); then
    if [[ "$mode" == sessions ]] || ((load_code != 1)); then
      say "$mode: goose's rebalance run failed (exit $load_code)" >&2
      failed=1
    else
      say "$mode: goose's rebalance verdict failed (reported, not judged in hash mode)"
    fi
  fi
  moved="$(sed -n 's/^  stickiness .*(\([0-9]*\) of \([0-9]*\) users served by more than one host.*/\1 of \2/p' "$out/$mode.log")"
  lost="$(sed -n 's/^  lost caches  \([0-9]*\).*/\1/p' "$out/$mode.log")"
  if [[ "$mode" == sessions && "$lost" != 0 ]]; then
    say "sessions: $lost caches lost (expected 0)" >&2
    failed=1
  fi

  step "$mode: a second group of users, after the scale"
  late_code=0
  goose "$mode-late" --scenario sticky --users 50 --hatch-rate "$hatch_rate" --run-time 3s \
    --key-prefix "rb-late-$mode" >"$out/$mode-late.log" 2>&1 || late_code=$?
  cat "$out/$mode-late.log"
  hosts="$(sed -n 's/^  users\/host   \(.*\) (max\/mean.*/\1/p' "$out/$mode-late.log" | tr ',' '\n' | grep -c . || true)"
  ((late_code == 0)) || { say "$mode: the late group's verdict failed (exit $late_code)" >&2; failed=1; }
  [[ "$hosts" == 5 ]] || { say "$mode: the late group reached $hosts replicas, not 5" >&2; failed=1; }
  results+=("$mode: users moved ${moved:-?}, caches lost ${lost:-?}, late users over $hosts replicas")

  scripts/stack.sh down
  up=""
done

step "side by side (scale 3 -> 5 under load, $users users)"
printf '  %s\n' "${results[@]}" | tee "$out/summary.txt"
[[ -z "$failed" ]] || exit 1
