#!/usr/bin/env bash
# Fairness under hostile load: with CONNS hostile connections of one kind held against the
# gateway (release build, DEFAULT flags: --max-connections 10000, idle timeout 30 s, body
# timeout 30 s, HTTP/2 idle 60 s), are legitimate users still served, and how fast?
#
# One sticky-svc setup (5 replicas, first-call cost FIRST_CALL_COST, 100ms: a user's first call
# is visible in the latency, the rest are warm) serves every mode; each mode gets a fresh gateway
# (one mode's leftovers must not weigh on the next). Per hostile mode (tools/hostile: idle-h1,
# idle-h2, stalled-head, stalled-body with --content-length 10000, below the gateway's 64 KiB
# retry buffer so the gateway itself waits for the body, and flood):
#   1. hostile opens CONNS connections at RATE per second and holds them; the script waits
#      (bounded) for its `ready` line: every connection has played its opening move;
#   2. "held": LEGIT sequential fresh-connection curl requests (USERS users in turn, so the first
#      USERS calls pay the first-call cost and the rest are warm, --max-time 10), then a keep-alive
#      wrk run (10 connections, WRK_DURATION, one user warmed by a request first; WRK=0: none);
#   3. stalled-head and stalled-body only: wait (at most CLOSE_WAIT s) until the gateway's
#      timeouts have closed every hostile connection (hostile's progress shows open=0), then
#      measure again: "after timeout".
# A row per mode and phase: hostile opened/open and the server's closes (close_after: since each
# connection opened), legit answers (2xx / 429 / other / failed), legit latency p50 / p99 / max
# (every request, failed ones too), wrk requests/s, p50/p99 and non-2xx / socket errors, the
# gateway's VmRSS when the phase starts, hostile's done line (the mode's last row), and whether
# legit users were served (>= 99% 2xx). The table goes to stdout and target/fairness/summary.md,
# with each mode's verdict: "served"; "NOT served"; for stalled-body at the connection cap
# "429 until body timeout, then served", which is EXPECTED: a stalled body is a request in
# flight, so the gateway's eviction of the idlest idle connection at the cap cannot make room and
# fresh connections are answered 429 at once until the body timeout closes them (408,
# --body-timeout after the last byte: 30 s here). The raw outputs
# (hostile, curl, wrk, the gateway's log) stay in target/fairness/.
#
# A measurement: no latency is asserted, a "NOT served" verdict does not fail the script. It
# exits non-zero when it could not run a mode (a prerequisite missing, hostile not ready in
# time, the gateway dead, the timeouts not closing the stalled connections within CLOSE_WAIT).
# Loopback only; everything started here is stopped on exit, failures and Ctrl-C included.
#
#   bench/fairness.sh                        # 10 000 connections, every mode (~3 min)
#   CONNS=2000 bench/fairness.sh             # below the cap: nothing has to be evicted
#   MODES="idle-h1 flood" bench/fairness.sh  # some modes only
#   WRK=0 LEGIT=100 bench/fairness.sh        # curl only, fewer requests
#
# Installs curl and wrk (apt) when missing. Needs about CONNS + 1024 open files (the soft limit is
# raised to the hard one; the gateway and hostile are separate processes, each holds CONNS).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CONNS=${CONNS:-10000}
RATE=${RATE:-2000}                      # hostile connections opened per second
MODES=${MODES:-idle-h1 idle-h2 stalled-head stalled-body flood}
LEGIT=${LEGIT:-200}                     # fresh-connection curl requests per phase
USERS=${USERS:-20}                      # distinct legit users among them, in turn
WRK=${WRK:-1}                           # 0: no keep-alive wrk run
WRK_DURATION=${WRK_DURATION:-5s}
FIRST_CALL_COST=${FIRST_CALL_COST:-100ms}
# Seconds to wait for the timeouts to close the stalled connections, from the end of the "held"
# measurement: the gateway cuts a stalled body 30 s after its last byte, a stalled head 30 s
# after it connected, and the last connection's last byte came when hostile was ready.
CLOSE_WAIT=${CLOSE_WAIT:-45}
HOLD=${HOLD:-600s}                      # hostile's own bound; the script stops it well before
BASE_PORT=${BASE_PORT:-18400}           # replicas BASE_PORT..+4; gateway +10, admin +11
REPLICAS=5
STALLED_BODY_LENGTH=10000               # below the gateway's 64 KiB --retry-buffer-size
out_dir=target/fairness

for n in CONNS RATE LEGIT USERS CLOSE_WAIT; do
  [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || { echo "$n must be a positive number, got '${!n}'" >&2; exit 2; }
done
read -ra modes <<<"$MODES"
[ "${#modes[@]}" -gt 0 ] || { echo "MODES is empty" >&2; exit 2; }
for mode in "${modes[@]}"; do
  case $mode in
  idle-h1 | idle-h2 | stalled-head | stalled-body | flood) ;;
  *) echo "unknown mode '$mode' (idle-h1 idle-h2 stalled-head stalled-body flood)" >&2; exit 2 ;;
  esac
done

# hostile and the gateway each hold CONNS sockets: raise the soft open-files limit to the hard one.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 1024)) ]; then
  echo "CONNS=$CONNS needs about $((CONNS + 1024)) open files; the hard limit is $(ulimit -Hn)" >&2
  exit 2
fi

need curl curl
[ "$WRK" = 0 ] || need wrk wrk

gateway_port=$((BASE_PORT + 10)) admin_port=$((BASE_PORT + 11))
read -ra replica_ports <<<"$(seq -s' ' "$BASE_PORT" $((BASE_PORT + REPLICAS - 1)))"
ports_free "${replica_ports[@]}" "$gateway_port" "$admin_port"

cargo build --release --quiet -p gateway -p sticky-svc -p hostile
bin=target/x86_64-unknown-linux-gnu/release

rm -rf "$out_dir"
mkdir -p "$out_dir"
scratch
trap 'exit 130' INT TERM # the EXIT trap (scratch_cleanup) stops everything started here
: >"$work/rows"
verdicts=()
started=$SECONDS

# alive PID: the process runs (a zombie, dead but not yet waited for, does not).
alive() {
  local state
  state=$(awk '$1 == "State:" {print $2}' "/proc/$1/status" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop PID SECONDS: SIGTERM, SIGKILL if still running after SECONDS; returns its exit status.
stop() {
  local _
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq $(($2 * 10))); do
    alive "$1" || break
    sleep 0.1
  done
  if alive "$1"; then
    echo "pid $1 still running ${2}s after SIGTERM: SIGKILL" >&2
    kill -KILL "$1" 2>/dev/null || true
  fi
  forget "$1"
  wait "$1"
}

# forget PID: drops a stopped process from `pids`, so the cleanup never signals a recycled pid.
forget() {
  local pid kept=()
  for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  pids=("${kept[@]}")
}

# die MESSAGE: the mode could not be run: says why (with the ends of the gateway's log and
# hostile's output), writes the rows so far, exits 1 (the EXIT trap stops everything).
die() {
  echo "fairness: FAILED: $*" >&2
  if [ -n "${gateway_log:-}" ] && [ -f "$gateway_log" ]; then
    echo "--- last lines of $gateway_log" >&2
    tail -n 20 "$gateway_log" >&2
  fi
  if [ -n "${hostile_out:-}" ] && [ -f "$hostile_out" ]; then
    echo "--- last lines of $hostile_out" >&2
    tail -n 5 "$hostile_out" >&2
  fi
  report "FAILED: $*" >&2 || true
  exit 1
}

# field NAME LINE: the value of NAME=value in a hostile line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# last_progress: hostile's latest progress line (its ready line if none came after it).
last_progress() { { grep -E '^hostile: (progress|ready)' "$hostile_out" || true; } | tail -n 1; }

# closes LINE: "N (first..last)", the connections the gateway closed and when, from a hostile line.
closes() {
  local n after
  n=$(field server_closed "$1") after=$(field close_after "$1")
  if [ "$after" = - ]; then echo "$n"; else echo "$n ($after)"; fi
}

start_backends_costly() {
  local i
  for i in $(seq 0 $((REPLICAS - 1))); do
    "$bin/sticky-svc" --listen "127.0.0.1:$((BASE_PORT + i))" --workers 1 \
      --first-call-cost "$FIRST_CALL_COST" --host-name "svc-$i" --log-filter warn &
    pids+=($!)
  done
  for i in $(seq 0 $((REPLICAS - 1))); do wait_http $((BASE_PORT + i)); done
}

# gateway_up MODE: a fresh gateway with its default flags; sets gateway_pid and gateway_log.
gateway_up() {
  gateway_log=$out_dir/gateway-$1.log
  "$bin/gateway" run --config "$work/istio.yaml" \
    --listen "127.0.0.1:$gateway_port" --admin "127.0.0.1:$admin_port" >"$gateway_log" 2>&1 &
  gateway_pid=$!
  pids+=("$gateway_pid")
  wait_http "$gateway_port" || die "$1: the gateway does not answer on port $gateway_port"
}

# hostile_up MODE: starts hostile's CONNS connections and waits (bounded) for its ready line.
hostile_up() {
  local mode=$1 deadline=$((SECONDS + CONNS / RATE + 60)) extra=()
  [ "$mode" != stalled-body ] || extra=(--content-length "$STALLED_BODY_LENGTH")
  hostile_out=$out_dir/hostile-$mode.out
  : >"$hostile_out" # here, not by the job's redirection: the wait below may come first
  "$bin/hostile" "$mode" --target "127.0.0.1:$gateway_port" --connections "$CONNS" \
    --rate "$RATE" --hold "$HOLD" --progress 1s "${extra[@]}" >"$hostile_out" 2>&1 &
  hostile_pid=$!
  pids+=("$hostile_pid")
  while ! grep -q '^hostile: ready' "$hostile_out"; do
    alive "$hostile_pid" || die "$mode: hostile exited before every connection was ready"
    alive "$gateway_pid" || die "$mode: the gateway died while hostile opened its connections"
    [ "$SECONDS" -lt "$deadline" ] ||
      die "$mode: hostile not ready within $((CONNS / RATE + 60)) s ($(last_progress || echo 'no progress line'))"
    sleep 0.2
  done
  ready_at=$SECONDS
  echo "$mode: $(grep -m1 '^hostile: ready' "$hostile_out")" >&2
}

# legit USER_PREFIX FILE: LEGIT sequential fresh-connection requests, USERS users in turn;
# FILE gets "status seconds" per request (status 000: no answer).
legit() {
  local i line
  : >"$2"
  for i in $(seq 0 $((LEGIT - 1))); do
    line=$(curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}' \
      -H "x-user: $1-$((i % USERS))" "http://127.0.0.1:$gateway_port/ping" || true)
    echo "${line:-000 0}" >>"$2"
  done
}

# legit_stats FILE: "2xx 429 other failed p50 p99 max" (latencies in ms, nearest rank).
legit_stats() {
  sort -k2,2g "$1" | awk '
    {t[NR] = $2 * 1000}
    $1 ~ /^2/ {ok++; next}
    $1 == "429" {tooMany++; next}
    $1 == "000" {failed++; next}
    {other++}
    END {
      p50 = int((NR * 50 + 99) / 100); p99 = int((NR * 99 + 99) / 100)
      printf "%d %d %d %d %.1f %.1f %.1f\n", ok, tooMany, other, failed, t[p50], t[p99], t[NR]
    }'
}

# wrk_ms PERCENT FILE: wrk's latency at that percentile, in ms.
wrk_ms() {
  awk -v p="$1" '$1 == p {v = $2; n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else n *= 1000
    printf "%.1f", n}' "$2"
}

# phase MODE TAG LABEL: measures the legit users now; appends a row to $work/rows.
phase() {
  local mode=$1 tag=$2 label=$3 rss stats ok tooMany other failed p50 p99 max progress wrk_out
  local rps=- wrk_lat=- wrk_bad=- served
  alive "$gateway_pid" || die "$mode: the gateway died before the '$label' measurement"
  rss=$(status_sum VmRSS: "$gateway_pid")
  legit "legit-$mode-$tag" "$out_dir/legit-$mode-$tag.txt"
  if [ "$WRK" != 0 ]; then
    wrk_out=$out_dir/wrk-$mode-$tag.txt
    # Its user's first call paid first: wrk's percentiles weigh the 10 connections' first
    # requests (100 ms) far more than their share (p99 ~80 ms with no load at all).
    curl -s -o /dev/null --max-time 10 -H "x-user: legit-wrk-$mode-$tag" \
      "http://127.0.0.1:$gateway_port/ping" || true
    wrk -c 10 -t 1 -d "$WRK_DURATION" --timeout 10s --latency -H "x-user: legit-wrk-$mode-$tag" \
      "http://127.0.0.1:$gateway_port/ping" >"$wrk_out" 2>&1 || die "$mode: wrk failed: $(cat "$wrk_out")"
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$wrk_out")
    wrk_lat="$(wrk_ms 50% "$wrk_out") / $(wrk_ms 99% "$wrk_out")"
    wrk_bad="$(awk '/Non-2xx or 3xx responses:/ {n = $NF} END {print n + 0}' "$wrk_out") / $(
      awk '/Socket errors:/ {gsub(",", ""); n = $4 + $6 + $8 + $10} END {print n + 0}' "$wrk_out")"
  fi
  alive "$gateway_pid" || die "$mode: the gateway died during the '$label' measurement"
  ! grep -q 'shutting down' "$gateway_log" ||
    die "$mode: the gateway was told to shut down (SIGTERM/SIGINT, not from here) during the '$label' measurement"
  progress=$(last_progress)
  stats=$(legit_stats "$out_dir/legit-$mode-$tag.txt")
  read -r ok tooMany other failed p50 p99 max <<<"$stats"
  if awk -v ok="$ok" -v n="$LEGIT" 'BEGIN {exit !(ok * 100 >= n * 99)}'; then served=yes; else served=NO; fi
  served="$served ($(awk -v ok="$ok" -v n="$LEGIT" 'BEGIN {printf "%.1f", ok * 100 / n}')% 2xx)"
  # mode | phase | opened / open | closed | legit | latency | wrk rps | wrk lat | wrk bad | RSS | served | done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$label" \
    "$(field opened "$progress") / $(field open "$progress")" "$(closes "$progress")" \
    "$ok / $tooMany / $other / $failed" "$p50 / $p99 / $max" "$rps" "$wrk_lat" "$wrk_bad" \
    "$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')" "$served" "" >>"$work/rows"
  echo "$mode, $label: legit 2xx/429/other/failed $ok/$tooMany/$other/$failed," \
    "p50/p99/max $p50/$p99/$max ms, wrk $rps req/s non-2xx/errors $wrk_bad; hostile ${progress#hostile: }" >&2
  last_served=${served%% *} last_ok=$ok last_refused=$((other + failed))
}

# wait_closed MODE: waits (at most CLOSE_WAIT s) until the gateway closed every hostile connection.
wait_closed() {
  local deadline=$((SECONDS + CLOSE_WAIT)) line
  while :; do
    line=$(last_progress)
    [ "$(field open "$line")" != 0 ] || break
    alive "$gateway_pid" || die "$1: the gateway died while the stalled connections were timing out"
    alive "$hostile_pid" || die "$1: hostile exited while its connections were timing out"
    [ "$SECONDS" -lt "$deadline" ] ||
      die "$1: the gateway's timeouts did not close every stalled connection within ${CLOSE_WAIT}s (${line#hostile: })"
    sleep 0.5
  done
  echo "$1: every hostile connection closed by the gateway $((SECONDS - ready_at)) s after ready: ${line#hostile: }" >&2
}

# run_mode MODE: one hostile mode against a fresh gateway, its rows and verdict.
run_mode() {
  local mode=$1 first_served first_ok first_refused verdict done_line after
  gateway_up "$mode"
  hostile_up "$mode"
  phase "$mode" held "held"
  # first_refused: answers neither 2xx nor 429 (other statuses, failures).
  first_served=$last_served first_ok=$last_ok first_refused=$last_refused
  case $mode in
  stalled-head | stalled-body)
    wait_closed "$mode"
    if [ "$mode" = stalled-head ]; then after="after idle timeout"; else after="after body timeout"; fi
    phase "$mode" after "$after (+$((SECONDS - ready_at)) s)"
    ;;
  esac
  stop "$hostile_pid" 10 || die "$mode: hostile exited with status $?"
  done_line=$(grep '^hostile: done' "$hostile_out") || die "$mode: hostile printed no done line"
  # The done line goes into the mode's last row.
  DONE_LINE=${done_line#hostile: done } awk -F'\t' -v OFS='\t' -v last="$(wc -l <"$work/rows")" \
    'NR == last {$NF = ENVIRON["DONE_LINE"]} {print}' "$work/rows" >"$work/rows.new"
  mv "$work/rows.new" "$work/rows"
  alive "$gateway_pid" || die "$mode: the gateway died"
  stop "$gateway_pid" 15 || true
  case $mode in
  stalled-head | stalled-body)
    if [ "$first_served" = yes ] && [ "$last_served" = yes ]; then
      verdict="served"
    elif [ "$mode" = stalled-body ] && [ "$last_served" = yes ] && [ "$first_refused" = 0 ] &&
      [ "$first_ok" -lt "$LEGIT" ]; then
      verdict="429 until body timeout, then served (expected: stalled bodies are requests in flight, not evictable)"
    elif [ "$last_served" = yes ]; then
      verdict="NOT served until the gateway's timeout closed the stalled connections, then served"
    else
      verdict="NOT served"
    fi
    ;;
  *) if [ "$first_served" = yes ]; then verdict="served"; else verdict="NOT served"; fi ;;
  esac
  verdicts+=("$mode: $verdict")
  echo "$mode: verdict: $verdict" >&2
}

# report [FAILURE]: the markdown summary, to stdout and $out_dir/summary.md.
report() {
  {
    echo "# Fairness under hostile load"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git describe --always --dirty 2>/dev/null || echo unknown)," \
      "machine: $(machine)"
    echo
    echo "Gateway: release build, default flags (--max-connections 10000, idle timeout 30 s, body" \
      "timeout 30 s, HTTP/2 idle 60 s), a fresh one per mode, in front of $REPLICAS sticky-svc replicas" \
      "(first-call cost $FIRST_CALL_COST). Hostile: $CONNS connections at $RATE/s per mode (stalled-body:" \
      "--content-length $STALLED_BODY_LENGTH). Legit: $LEGIT sequential fresh-connection curl requests over" \
      "$USERS users (--max-time 10)$([ "$WRK" = 0 ] || echo ", then wrk -c 10 -t 1 -d $WRK_DURATION (keep-alive, its user warmed first)")."
    echo "Latency: every legit request, failed ones too; RSS: the gateway's VmRSS when the phase starts;" \
      "hostile opened / open and server closes (close_after since each connection opened) at the phase's end."
    echo
    echo "| mode | phase | hostile opened / open | closed by gateway (after) | legit 2xx / 429 / other / failed" \
      "| legit p50 / p99 / max ms | wrk req/s | wrk p50 / p99 ms | wrk non-2xx / errors | gateway RSS MiB" \
      "| legit served | hostile done |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' '{printf "|"; for (i = 1; i <= NF; i++) printf " %s |", ($i == "" ? "-" : $i); print ""}' "$work/rows"
    echo
    for v in "${verdicts[@]}"; do echo "- $v"; done
    [ -z "${1:-}" ] || echo "- $1"
    echo
    echo "Took $((SECONDS - started)) s; raw outputs in $out_dir/."
  } | tee "$out_dir/summary.md"
}

gateway_yaml "$BASE_PORT" "$REPLICAS" >"$work/istio.yaml"
start_backends_costly
for mode in "${modes[@]}"; do run_mode "$mode"; done
report
