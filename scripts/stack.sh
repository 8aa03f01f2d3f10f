#!/usr/bin/env bash
# The compose stack's verbs, called by the justfile (`just up`, `just scale 3`, ...):
#
#   scripts/stack.sh preflight     Docker and compose present, the gateway ports free
#   scripts/stack.sh up            the local certificate (cert), then 5 replicas + gateway, wait
#                                  until healthy, print the curl lines (HTTP and HTTPS)
#   scripts/stack.sh scale N       N sticky-svc replicas (0 allowed)
#   scripts/stack.sh ping [USER]   the article's curl, with the status and the time it took
#   scripts/stack.sh load [ARGS]   goose inside the compose network (sticky/loadtest image);
#                                  reports in target/loadtest/<UTC time>/, path printed;
#                                  LOAD_SCHEME=https: over HTTPS, trusting the local CA
#   scripts/stack.sh logs          follow every container's log
#   scripts/stack.sh down          stop and remove everything, then check nothing is left
#   scripts/stack.sh compose ARGS  the detected compose command, with the project's flags
#   scripts/stack.sh session-key   make .sticky/session.key if it is missing, print its path
#   scripts/stack.sh cert          make or renew the local CA and the gateway's certificate in
#                                  .sticky/certs/ (`gateway cert` decides), print the folder
#
# Works with `docker compose` (v2) and `docker-compose` v1.29: whichever exists, v2 first.
# Settings (environment): GATEWAY_PORT (80), GATEWAY_TLS_PORT (443), GATEWAY_ADMIN_PORT (15000),
# FIRST_CALL_COST (5s), COMPOSE_PROJECT_NAME (sticky), LOAD_USERS (100), LOAD_RUN_TIME (20s),
# LOAD_SCHEME (http), STICKY_SESSIONS (0), PROFILE (release: which build's gateway makes the
# certificate, as scripts/images.sh).
#
# The certificate (docs/tls.md): `gateway cert --dir .sticky/certs` with the gateway binary the
# image build made keeps a local CA in .sticky/certs/ca/ (its key 0600, never mounted) and issues
# .sticky/certs/sticky-cert/{tls.crt,tls.key,ca.crt} for localhost, 127.0.0.1, ::1 and `gateway`
# (the loadtest's name for it), again only when missing, within 7 days of expiry or not covering
# those hosts. compose mounts sticky-cert/ read-only into the gateway, which runs as uid 65532,
# not as you: so this script makes that folder 0755 and tls.key 0644 after each run, and .sticky/
# itself 0700, which keeps the key from every other user of this machine (as session.key).
#
# STICKY_SESSIONS=1 (read by `up` only): persistent sessions (docs/sessions.md). `up` adds
# compose.sessions.yaml after compose.yaml, makes the key file .sticky/session.key if it is
# missing, and remembers the switch in .sticky/<project>.sessions until `down`. Every other verb
# follows that file, not the variable: compose needs the same files to address the stack as it
# was started (`compose run`, for `just load`, would otherwise recreate the gateway with the other
# config). `up` without it: the article's config, compose.yaml alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

project="${COMPOSE_PROJECT_NAME:-sticky}"
port="${GATEWAY_PORT:-80}"
tls_port="${GATEWAY_TLS_PORT:-443}"
admin_port="${GATEWAY_ADMIN_PORT:-15000}"
replicas_default=5
# Long enough for five replicas and the gateway to pass two health checks on a busy machine.
wait_seconds="${STACK_WAIT_SECONDS:-90}"
# Never committed (.gitignore): the session key and which stacks run with sessions.
state_dir="$root/.sticky"
session_key="$state_dir/session.key"
sessions_marker="$state_dir/$project.sessions"
# The local CA and the gateway's certificate: the Secret sticky-cert's files (k8s/tls/).
certs_dir="$state_dir/certs"
cert_name=sticky-cert
cert_hosts=(localhost 127.0.0.1 ::1 gateway)

say() { printf '%s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

require_docker() {
  command -v docker >/dev/null 2>&1 || die "Docker is not installed. Install Docker Engine \
(https://docs.docker.com/engine/install/), or run the same stack as local processes: just local"
  docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon: is it running, and may \
$(id -un) use it (the docker group)? Without Docker: just local"
}

# Sets the array `compose_cmd`.
detect_compose() {
  if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
  else
    die "neither \`docker compose\` (v2) nor \`docker-compose\` is installed"
  fi
}

compose() {
  "${compose_cmd[@]}" --project-name "$project" "${compose_files[@]}" "$@"
}

# Sets `sessions` (1 or 0) and `compose_files` for VERB: `up` from STICKY_SESSIONS, every other
# verb from what `up` remembered for this project.
select_files() {
  local verb="$1" asked="${STICKY_SESSIONS:-}"
  case "$asked" in
    0 | 1 | "") ;;
    *) die "STICKY_SESSIONS is 1 (persistent sessions) or 0 (the default), not '$asked'" ;;
  esac
  if [[ "$verb" == up ]]; then
    sessions="${asked:-0}"
  else
    sessions=0
    if [[ -f "$sessions_marker" ]]; then sessions=1; fi
    if [[ -n "$asked" && "$asked" != "$sessions" && " scale load logs down compose " == *" $verb "* ]]; then
      local was=off
      if ((sessions)); then was=on; fi
      say "stack: STICKY_SESSIONS is read by \`up\`; this stack was started with sessions $was" \
        "(to change: STICKY_SESSIONS=$asked just up)" >&2
    fi
  fi
  compose_files=(--file "$root/compose.yaml")
  if ((sessions)); then compose_files+=(--file "$root/compose.sessions.yaml"); fi
}

make_state_dir() {
  mkdir -p "$state_dir"
  # The key below is world-readable for the container's uid; the folder keeps it from others.
  chmod 0700 "$state_dir"
}

# The persistent-session key file (one secret per line, the first signs): made once, random,
# kept across runs so sessions outlive a restart. Prints nothing; `session-key` prints the path.
ensure_session_key() {
  make_state_dir
  if [[ ! -f "$session_key" || ! -s "$session_key" ]]; then
    [[ ! -e "$session_key" ]] || die "${session_key#"$root"/} exists but is not a key file (empty, \
or a directory a compose run made in its place): remove it and run again"
    local secret tmp
    if command -v openssl >/dev/null 2>&1; then
      secret="$(openssl rand -base64 48)"
    elif command -v python3 >/dev/null 2>&1; then
      secret="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
    else
      die "cannot make a session key: neither openssl nor python3 is installed"
    fi
    tmp="$(mktemp "$state_dir/session.key.XXXXXX")"
    printf '%s\n' "# sticky's persistent-session keys (scripts/stack.sh made this; never commit it)." \
      "# One secret per line, 32+ characters: the first signs, every line verifies." \
      "$secret" >"$tmp"
    # A hard link never replaces a key another run made meanwhile.
    ln "$tmp" "$session_key" 2>/dev/null || true
    rm -f "$tmp"
    say "stack: made a persistent-session key: ${session_key#"$root"/}" >&2
  fi
  # The gateway runs as uid 65532, not as the owner of the file: it must be readable by others
  # (only through the bind mount, since .sticky/ is 0700).
  chmod 0644 "$session_key"
}

# A gateway binary to run `gateway cert` with: PROFILE's build (the one scripts/images.sh just put
# in the image), else the other profile's (the command is the same in both), else a dev build
# made now (`just k8s-up` without the images, say).
gateway_binary() {
  local dirs=(release debug) dir bin
  case "${PROFILE:-release}" in
    release) ;;
    dev | debug) dirs=(debug release) ;;
    *) die "PROFILE must be dev or release, not '$PROFILE'" ;;
  esac
  for dir in "${dirs[@]}"; do
    bin="$root/target/x86_64-unknown-linux-gnu/$dir/gateway"
    if [[ -x "$bin" ]]; then
      printf '%s\n' "$bin"
      return
    fi
  done
  say "stack: building the gateway (dev) to make the certificate" >&2
  cargo build --quiet -p gateway --bin gateway >&2 ||
    die "cannot build the gateway (cargo build -p gateway --bin gateway)"
  bin="$root/target/x86_64-unknown-linux-gnu/debug/gateway"
  [[ -x "$bin" ]] || die "no gateway binary at ${bin#"$root"/} after the build"
  printf '%s\n' "$bin"
}

# The local CA and the gateway's certificate (see the top of this file). Of what `gateway cert`
# says, one line per file, only what it made is shown: "kept ..." is every run's news, and its
# last line, the curl to try, `up` prints in its own words.
ensure_cert() {
  make_state_dir
  local bin args=() host out line
  bin="$(gateway_binary)"
  for host in "${cert_hosts[@]}"; do args+=(--host "$host"); done
  out="$("$bin" cert --dir "$certs_dir" --name "$cert_name" "${args[@]}")" ||
    die "gateway cert failed (above); to start over: rm -r ${certs_dir#"$root"/}"
  while IFS= read -r line; do
    [[ "$line" == "kept "* || "$line" == "curl "* || -z "$line" ]] ||
      say "stack: cert: ${line//"$root/"/}" >&2
  done <<<"$out"
  # Readable by the container's uid 65532, through the read-only bind mount only.
  chmod 0755 "$certs_dir/$cert_name"
  chmod 0644 "$certs_dir/$cert_name/tls.key"
}

# True when something accepts connections on 127.0.0.1:$1.
port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

gateway_running() {
  [[ -n "$(compose ps -q gateway 2>/dev/null)" ]]
}

preflight() {
  require_docker
  detect_compose
  # Our own running gateway holds the ports: `just up` again is fine.
  if gateway_running; then
    return
  fi
  if port_taken "$port"; then
    die "port $port is taken by another program (\`ss -ltnp 'sport = :$port'\` shows which). \
Pick another: GATEWAY_PORT=8080 just up"
  fi
  if port_taken "$tls_port"; then
    die "port $tls_port (HTTPS) is taken by another program (\`ss -ltnp 'sport = :$tls_port'\` \
shows which). Pick another: GATEWAY_TLS_PORT=8443 just up"
  fi
  if port_taken "$admin_port"; then
    die "port $admin_port (gateway admin) is taken. Pick another: GATEWAY_ADMIN_PORT=15001 just up"
  fi
}

# Waits until every container of the project is running and healthy, and `want` replicas of
# sticky-svc exist.
wait_healthy() {
  local want="$1" deadline=$((SECONDS + wait_seconds)) ids states
  while :; do
    ids="$(compose ps -q sticky-svc)"
    local count
    count="$(grep -c . <<<"$ids" || true)"
    ids="$(compose ps -q)"
    states=""
    if [[ -n "$ids" ]]; then
      # Health status where a check is defined, else the plain state.
      # shellcheck disable=SC2086
      states="$(docker inspect --format \
        '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' \
        $ids)"
    fi
    if [[ "$count" -eq "$want" ]] && ! grep -qv ' healthy$' <<<"$states"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      say "stack: not healthy after ${wait_seconds}s:" >&2
      say "$states" >&2
      compose logs --tail=20 >&2 || true
      exit 1
    fi
    sleep 1
  done
}

up_failed() {
  local log="$1"
  cat "$log" >&2
  if grep -qiE 'address already in use|port is already allocated' "$log"; then
    die "port $port, $tls_port or $admin_port is taken: pick others, e.g. \
GATEWAY_PORT=8080 GATEWAY_TLS_PORT=8443 just up"
  fi
  if grep -qiE 'permission denied' "$log" && ((port < 1024 || tls_port < 1024)); then
    die "Docker may not bind port $port or $tls_port here (rootless Docker?): \
GATEWAY_PORT=8080 GATEWAY_TLS_PORT=8443 just up"
  fi
  if grep -qiE 'no such image|pull access denied|not found' "$log"; then
    die "an image is missing: run \`just images\` (just up does it for you)"
  fi
  die "compose up failed"
}

up() {
  preflight
  if ((sessions)); then
    ensure_session_key
    : >"$sessions_marker"
  else
    rm -f "$sessions_marker"
  fi
  ensure_cert
  local log
  log="$(mktemp)"
  trap 'rm -f "$log"' RETURN
  # --scale on the command line: every compose version honours it (v1.29 ignores
  # deploy.replicas without --compatibility).
  if ! compose up --detach --remove-orphans --scale "sticky-svc=$replicas_default" >"$log" 2>&1; then
    up_failed "$log"
  fi
  wait_healthy "$replicas_default"
  local host=localhost tls_host=localhost
  [[ "$port" == 80 ]] || host="localhost:$port"
  [[ "$tls_port" == 443 ]] || tls_host="localhost:$tls_port"
  say ""
  say "sticky is up: $replicas_default sticky-svc replicas behind the gateway on http://$host and https://$tls_host"
  say "  curl -H \"x-user: ricky\" http://$host/ping     # or: just ping ricky"
  say "  curl --cacert ${certs_dir#"$root"/}/ca/ca.crt https://$tls_host/ping -H \"x-user: ricky\"     # the local CA (docs/tls.md)"
  say "The first call of a user takes ${FIRST_CALL_COST:-5s}; the next ones hit that replica's cache."
  say "Dashboard (replicas, table shares, users, cold/warm calls, live): http://localhost:$admin_port/"
  if ((sessions)); then
    say "Persistent sessions are on (STICKY_SESSIONS=1): every answer carries x-session; send it back:"
    say "  curl -i -H \"x-user: ricky\" http://$host/ping     # the answer's x-session: <value>"
    say "  curl -H \"x-user: ricky\" -H \"x-session: <value>\" http://$host/ping"
  fi
  say "Then: just scale 0, just scale 5, just load, just logs, just down"
}

scale() {
  local n="${1:-}"
  [[ "$n" =~ ^[0-9]+$ ]] || die "usage: just scale N (N replicas of sticky-svc, 0 allowed)"
  require_docker
  detect_compose
  gateway_running || die "the stack is not running: just up"
  compose up --detach --no-deps --no-recreate --scale "sticky-svc=$n" sticky-svc
  wait_healthy "$n"
  say "sticky-svc: $n replica(s). The gateway re-resolves sticky-svc every second (DNS);"
  say "users of a replica that is gone move, and pay their first call again where they land."
}

ping() {
  local user="${1:-ricky}" host=localhost
  [[ "$port" == 80 ]] || host="localhost:$port"
  command -v curl >/dev/null 2>&1 || die "curl is not installed"
  say "\$ curl -H \"x-user: $user\" http://$host/ping"
  curl --silent --show-error --max-time 30 -H "x-user: $user" \
    --write-out '[%{http_code} in %{time_total}s]\n' "http://$host/ping"
}

load() {
  require_docker
  detect_compose
  docker image inspect "sticky/loadtest:0.1.0" >/dev/null 2>&1 ||
    die "no sticky/loadtest image: the loadtest crate builds it (just images), once it is in the workspace"
  gateway_running || die "the stack is not running: just up"
  # The gateway as the containers see it: its plain port, or HTTPS trusting the local CA (the
  # service's LOADTEST_CA_CERT) under the name its certificate carries.
  case "${LOAD_SCHEME:-http}" in
    http) export LOAD_HOST=http://gateway:8080 ;;
    https) export LOAD_HOST=https://gateway:8443 ;;
    *) die "LOAD_SCHEME is http (the default) or https, not '$LOAD_SCHEME'" ;;
  esac
  local arg
  for arg in "$@"; do
    case "$arg" in
      --out-dir | --out-dir=* | --report-file | --report-file=*)
        die "$arg: just load writes to target/loadtest/<time>/ itself (load-local takes it)" ;;
    esac
  done
  # The reports go to a new folder on the host, made here by the caller, and written by the
  # container as the caller's uid: goose's report.html and report.json, and summary.json.
  local rel out
  rel="target/loadtest/$(date -u +%Y%m%dT%H%M%SZ)"
  out="$root/$rel"
  mkdir -p "$(dirname "$out")" || die "cannot create $(dirname "$rel")/"
  mkdir "$out" 2>/dev/null || die "$rel exists (another load started this second?): run again"
  # `run` starts a one-off container in the stack's network; its exit code is goose's verdict.
  # LOADTEST_OUT_DIR and LOADTEST_HOST, not flags: ARGS replace the service's command (whose
  # --host is LOAD_HOST), and a --host among them still wins over the variable.
  local status=0
  compose --profile load run --rm --user "$(id -u):$(id -g)" -v "$out:/out" \
    -e LOADTEST_OUT_DIR=/out -e LOADTEST_HOST="$LOAD_HOST" loadtest "$@" || status=$?
  if [[ -f "$out/report.html" ]]; then
    say "report: $rel/report.html"
  else
    say "report: none in $rel/ (the load did not get to write one)"
  fi
  return "$status"
}

down() {
  require_docker
  detect_compose
  compose --profile load down --remove-orphans --volumes --timeout 15
  rm -f "$sessions_marker"
  local left
  left="$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
  [[ -z "$left" ]] || die "containers left behind: $left"
  if docker network ls --format '{{.Name}}' | grep -qx "${project}_default"; then
    die "network ${project}_default left behind"
  fi
}

cmd="${1:-}"
shift || true
select_files "$cmd"
case "$cmd" in
  preflight) preflight ;;
  up) up ;;
  scale) scale "$@" ;;
  ping) ping "$@" ;;
  load) load "$@" ;;
  logs) require_docker; detect_compose; compose logs --follow --tail=100 ;;
  down) down ;;
  compose) require_docker; detect_compose; compose "$@" ;;
  session-key) ensure_session_key; say "$session_key" ;;
  cert) ensure_cert; say "$certs_dir" ;;
  *) die "unknown verb '$cmd' (preflight, up, scale N, ping [USER], load, logs, down, compose ..., session-key, cert)" ;;
esac
