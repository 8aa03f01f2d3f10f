#!/usr/bin/env bash
# Where the Istio corpus tests (gateway/tests/config_corpus.rs) find Istio's own YAML, said in one
# line before `just test` runs them: `cargo test` keeps what the tests print to itself.
#
# The lookup rule is the tests' (gateway/tests/support/corpus.rs says it; a test there checks this
# script finds the same folder): ISTIO_CORPUS unset or empty, the first shared/istio-corpus folder
# above gateway/; `require`, the same but none is an error; `own` or `skip`, none; else a folder,
# relative to the repository root.
#
# Usage: scripts/istio-corpus.sh [note|dir]
#   note (default)  one line: where the corpus tests read Istio's YAML from, or why they do not;
#                   exit 1 when it is required and missing
#   dir             the corpus folder the tests read, or nothing
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-note}"
setting="${ISTIO_CORPUS:-}"
[[ "$mode" == note || "$mode" == dir ]] || { echo "usage: $0 [note|dir]" >&2; exit 2; }

die() { echo "config-corpus: $*" >&2; exit 1; }

# The first shared/istio-corpus above gateway/, as Path::ancestors walks it (/ included).
above() {
    local dir="$root/gateway"
    while :; do
        if [[ -d "$dir/shared/istio-corpus" ]]; then
            echo "$dir/shared/istio-corpus"
            return
        fi
        [[ "$dir" == / ]] && return
        dir="$(dirname "$dir")"
    done
}

corpus=""
why=""
case "$setting" in
    "" | require)
        corpus="$(above)"
        if [[ -z "$corpus" && "$setting" == require ]]; then
            die "ISTIO_CORPUS=require, but there is no shared/istio-corpus above $root/gateway"
        fi
        why="no shared/istio-corpus above this checkout ($root), so the corpus tests read the project's own Istio YAML (set ISTIO_CORPUS=require to make that an error)"
        ;;
    own) why="ISTIO_CORPUS=own: the corpus tests read the project's own Istio YAML" ;;
    skip) why="ISTIO_CORPUS=skip: the corpus tests do nothing" ;;
    /*) corpus="$setting" ;;
    *) corpus="$root/$setting" ;;
esac
if [[ -n "$corpus" && ! -d "$corpus" ]]; then
    die "ISTIO_CORPUS=$setting: $corpus is not a folder"
fi

if [[ "$mode" == dir ]]; then
    [[ -z "$corpus" ]] || echo "$corpus"
elif [[ -n "$corpus" ]]; then
    echo "config-corpus: runs on Istio's YAML in $corpus"
else
    echo "config-corpus: not run: $why"
fi
