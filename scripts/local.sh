#!/usr/bin/env bash
# `just local`: the compose stack as local processes, for machines without Docker.
# Five sticky-svc on 127.0.0.1:18081-18085 and the gateway on 127.0.0.1:$GATEWAY_PORT (8080),
# configured by k8s/istio/ plus local/istio/ (a STATIC ServiceEntry naming those five ports in
# place of DNS). Ctrl-C stops them all; so does any one of them dying.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

profile="${PROFILE:-release}"
case "$profile" in
  release) dir=release ;;
  dev | debug) profile=dev dir=debug ;;
  *) echo "local: PROFILE must be dev or release" >&2; exit 2 ;;
esac
port="${GATEWAY_PORT:-8080}"
admin="${GATEWAY_ADMIN_PORT:-15000}"
bin="target/x86_64-unknown-linux-gnu/$dir"
# These are the ports local/istio/service-entry.yaml names.
replica_ports=(18081 18082 18083 18084 18085)

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$port" "$admin" "${replica_ports[@]}"; do
  if port_taken "$p"; then
    echo "local: port $p is taken (\`ss -ltnp 'sport = :$p'\` shows by what)." >&2
    echo "       The gateway's ports move with GATEWAY_PORT / GATEWAY_ADMIN_PORT;" \
      "18081-18085 are fixed by local/istio/service-entry.yaml." >&2
    exit 1
  fi
done

echo "local: cargo build --bins --profile $profile"
cargo build --quiet --profile "$profile" -p sticky-svc -p gateway --bins

pids=()
# shellcheck disable=SC2317  # called from the traps
stop() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  echo "local: stopped"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

for i in "${!replica_ports[@]}"; do
  LISTEN="127.0.0.1:${replica_ports[$i]}" POD_NAME="sticky-svc-$((i + 1))" \
    FIRST_CALL_COST="${FIRST_CALL_COST:-5s}" "$bin/sticky-svc" &
  pids+=($!)
done
GATEWAY_CONFIG="k8s/istio,local/istio" GATEWAY_LISTEN="127.0.0.1:$port" \
  GATEWAY_ADMIN="127.0.0.1:$admin" "$bin/gateway" run &
pids+=($!)

deadline=$((SECONDS + 20))
until GATEWAY_ADMIN="127.0.0.1:$admin" "$bin/gateway" healthcheck 2>/dev/null; do
  ((SECONDS < deadline)) || { echo "local: the gateway did not become healthy" >&2; exit 1; }
  sleep 0.2
done
echo
echo "local: 5 sticky-svc (127.0.0.1:18081-18085) behind the gateway on http://localhost:$port"
echo "  curl -H \"x-user: ricky\" http://localhost:$port/ping"
echo "Ctrl-C stops everything."
# Return when any process ends (a crash must not leave a half stack running).
wait -n "${pids[@]}"
echo "local: a process exited; stopping the others" >&2
exit 1
