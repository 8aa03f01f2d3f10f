#!/usr/bin/env bash
# The CI guard on the gateway's cost per request (issue 21): user-space instructions per proxied
# request, counted by callgrind (bench/peers-instructions.sh: 5 replicas, one gateway worker,
# wrk with 1000 users), over HTTP/1.1 and HTTP/2 to the replicas, against the figures committed
# in bench/instructions-baseline.txt. Instructions, unlike seconds, do not move with the load
# of a shared machine: the same binary on the same CPU counts within a fraction of a percent.
#
#   bench/instructions-check.sh           # fails when a median grows past baseline + threshold
#   bench/instructions-check.sh record    # writes the medians of this build as the new baseline
#
# Counted on the release binaries themselves (fat LTO): the gateway and sticky-svc alone build
# from scratch in about 5 minutes on 2 cores (a thin-LTO profile of their own measured 9.7
# minutes beside another build, so it bought nothing), and the figure guarded is then the one
# docs/benchmarks.md quotes.
#
# The count depends on the compiler (a new rustc inlines differently) and, a little, on the CPU
# (glibc picks its memcpy for the CPU it runs on), so the baseline records both. A different
# rustc fails the check: re-record the baseline (`just instructions-baseline`) in a commit of
# its own that gives the old and new figures. A different CPU model is reported, not failed.
#
# The threshold, 3%: the same build counted three times spreads by 0.13% (HTTP/1.1) and 0.38%
# (HTTP/2) on one machine (2026-12-06), but the project's CI machines are not all the same CPU
# (an AMD EPYC one day, an Intel Xeon the next), and glibc's string functions and the kernel's
# share of a pass differ between them by an amount not yet measured; 3% still catches a change
# that costs ~900 instructions per request.
#
# RUNS (default 3) runs per protocol, their median compared; DURATION of each (default 4s).
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=bench/instructions-baseline.txt
mode=${1:-check}
RUNS=${RUNS:-3}
export DURATION=${DURATION:-4s} PROFILE=${PROFILE:-release}

die() {
  echo "instructions-check: $*" >&2
  exit 1
}
[[ $mode == check || $mode == record ]] || die "usage: $0 [check|record]"
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"

# value KEY: a `key = value` line of the baseline.
value() { awk -F' = ' -v k="$1" '$1 == k {print $2; found = 1} END {exit !found}' "$baseline"; }

rustc_now=$(rustc --version)
cpu_now=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
if [[ $mode == check ]]; then
  [[ -f $baseline ]] || die "$baseline is missing: record one with \`just instructions-baseline\`"
  rustc_then=$(value rustc) || die "$baseline has no rustc line"
  [[ $rustc_now == "$rustc_then" ]] ||
    die "the baseline was counted with $rustc_then, this is $rustc_now: a new compiler inlines differently. Re-record it (\`just instructions-baseline\`) in a commit of its own that says why and gives both figures."
  cpu_then=$(value cpu) || die "$baseline has no cpu line"
  [[ $cpu_now == "$cpu_then" ]] ||
    echo "instructions-check: note: the baseline was counted on '$cpu_then', this is '$cpu_now' (glibc's memcpy differs by CPU; a shift of ~1% may be that)"
fi

cargo build --profile "$PROFILE" --quiet -p gateway -p sticky-svc

# median N...: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

declare -A medians spreads
for protocol in HTTP HTTP2; do
  counts=()
  for run in $(seq "$RUNS"); do
    out=$(PROTOCOL=$protocol bench/peers-instructions.sh) || die "the $protocol run $run failed: $out"
    count=$(awk -F': ' '/^instructions per request/ {print $2}' <<<"$out")
    requests=$(awk -F': ' '/^requests/ {print $2}' <<<"$out")
    echo "instructions-check: $protocol run $run: $count instructions per request ($requests requests)"
    counts+=("$count")
  done
  medians[$protocol]=$(median "${counts[@]}")
  sorted=($(printf '%s\n' "${counts[@]}" | sort -n))
  spreads[$protocol]=$(awk -v lo="${sorted[0]}" -v hi="${sorted[-1]}" -v m="${medians[$protocol]}" \
    'BEGIN {printf "%.2f", 100 * (hi - lo) / m}')
done

if [[ $mode == record ]]; then
  threshold=$(value threshold_percent 2>/dev/null || echo 3)
  cat >"$baseline" <<EOF
# Instructions per proxied request, median of $RUNS callgrind runs per protocol, written by
# \`just instructions-baseline\` (bench/instructions-check.sh record) on $(date -u '+%Y-%m-%d %H:%M UTC')
# at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown). Spread of those runs
# ((max - min) / median): HTTP/1.1 ${spreads[HTTP]}%, HTTP/2 ${spreads[HTTP2]}%.
# The check fails when a median exceeds its figure by more than threshold_percent (why 3%: see
# the script's header). Change this file only in a commit of its own that says why (a new rustc,
# a change that costs and is worth it).
rustc = $rustc_now
cpu = $cpu_now
profile = $PROFILE
http1 = ${medians[HTTP]}
http2 = ${medians[HTTP2]}
threshold_percent = $threshold
EOF
  echo "instructions-check: recorded $baseline (HTTP/1.1 ${medians[HTTP]}, HTTP/2 ${medians[HTTP2]})"
  exit 0
fi

threshold=$(value threshold_percent) || die "$baseline has no threshold_percent line"
failed=0
for protocol in HTTP HTTP2; do
  key=http1 name=HTTP/1.1
  [[ $protocol == HTTP2 ]] && key=http2 name=HTTP/2
  then=$(value "$key") || die "$baseline has no $key line"
  now=${medians[$protocol]}
  verdict=$(awk -v now="$now" -v then="$then" -v t="$threshold" 'BEGIN {
    d = 100 * (now - then) / then
    printf "%s %+.2f%%", (d > t ? "FAIL" : "ok"), d }')
  echo "instructions-check: $name: $now instructions per request against the baseline's $then (${verdict#* }, limit +$threshold%; spread of these runs ${spreads[$protocol]}%): ${verdict%% *}"
  [[ $verdict == ok* ]] || failed=1
done
((failed == 0)) || die "a figure grew past the baseline: find the change that costs (ANNOTATE=1 PROFILE=$PROFILE bench/peers-instructions.sh), or, if it is worth its cost, re-record the baseline in a commit of its own that says why"
