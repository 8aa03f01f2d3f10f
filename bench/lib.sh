# Shell functions shared by the bench/ scripts. Source it from a script that has `cd`-ed to the
# repository root and runs with `set -euo pipefail`.

# need COMMAND PACKAGE: installs the Debian PACKAGE when COMMAND is missing (apt-get update once
# first, as a fresh machine has no package lists).
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 (apt)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  if [ -z "${_apt_updated:-}" ]; then
    $sudo apt-get update -qq
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}

# ports_free PORT...: fails naming the first port something already listens on.
ports_free() {
  local port
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is already in use; choose other ports (see the script's variables)" >&2
      return 1
    fi
  done
}

# wait_http PORT [PATH]: waits up to 10 s for an HTTP answer (any status) on 127.0.0.1:PORT.
wait_http() {
  local _
  for _ in $(seq 100); do
    curl -s -o /dev/null -H "x-user: ricky" "http://127.0.0.1:$1${2:-/ping}" && return
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  return 1
}

# stat_sum AWK_EXPR PID...: the sum over the processes of an expression of /proc/<pid>/stat's
# fields.
stat_sum() {
  local expr=$1 pid sum=0
  shift
  for pid in "$@"; do
    sum=$((sum + $(awk "{print $expr}" "/proc/$pid/stat")))
  done
  echo "$sum"
}

# ticks PID...: CPU time (user + system, in clock ticks) the processes have used so far, all
# their threads included.
ticks() { stat_sum '$14 + $15' "$@"; }

# system_ticks PID...: the kernel-mode share of `ticks` (system calls, the TCP stack).
system_ticks() { stat_sum '$15' "$@"; }

# cpu_ticks CPU: "busy steal total" clock ticks of that CPU so far, from /proc/stat: busy is
# user + nice + system + irq + softirq (whatever ran there, every process), steal the time the
# hypervisor ran something else while this CPU had work, total every field up to steal
# ("0 0 0" for a CPU the machine does not have).
cpu_ticks() {
  awk -v cpu="cpu$1" '$1 == cpu {print $2 + $3 + $4 + $7 + $8, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; found = 1}
    END {if (!found) print 0, 0, 0}' /proc/stat
}

# status_sum FIELD PID...: the sum over the processes of a numeric /proc/<pid>/status field
# (FIELD with its colon, e.g. VmHWM:).
status_sum() {
  local field=$1 pid sum=0
  shift
  for pid in "$@"; do
    sum=$((sum + $(awk -v f="$field" '$1 == f {print $2}' "/proc/$pid/status")))
  done
  echo "$sum"
}

# peak_rss_kib PID...: the sum of the processes' peak resident set (VmHWM), in KiB.
peak_rss_kib() { status_sum VmHWM: "$@"; }

# sleeps PID...: the processes' voluntary context switches so far: how often they slept
# waiting for input.
sleeps() { status_sum voluntary_ctxt_switches: "$@"; }

# children PID: the pids of PID's direct children (nginx's workers), waiting up to 5 s for
# at least one.
children() {
  local _ kids
  for _ in $(seq 50); do
    kids=$(pgrep -P "$1" | paste -sd' ' || true)
    [ -n "$kids" ] && break
    sleep 0.1
  done
  echo "$kids"
}

# alternate ROUND ITEM...: sets the array `order` to the items, in reverse on every other round
# (2, 4, …), so a slow or fast spell of the shared machine, or what ran just before a slot, does
# not always fall on the same item.
alternate() {
  local round=$1 i
  shift
  order=("$@")
  if ((round % 2 == 0)); then
    order=()
    for ((i = $#; i >= 1; i--)); do order+=("${!i}"); done
  fi
}

# median: the median of the numbers on stdin, one per line.
median() {
  sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# machine: one line naming the CPUs, memory and kernel.
machine() {
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
    "$(awk '/^MemTotal:/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)), Linux $(uname -r)"
}

# pinning SERVER_CPUS CLIENT_CPUS: sets the arrays pin_server and pin_client to `taskset -c …`
# prefixes when taskset exists and the machine has more than one CPU (taskset execs, so a
# background job's $! is the program's own pid); empty otherwise.
pinning() {
  pin_server=() pin_client=()
  if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -gt 1 ]; then
    pin_server=(taskset -c "$1")
    pin_client=(taskset -c "$2")
  fi
}

# start_backends FIRST_PORT COUNT [PREFIX...]: starts COUNT sticky-svc replicas `svc-0`… on
# 127.0.0.1:FIRST_PORT… (one worker each, first-call cost 0 s, so the bench measures the warm
# path), run under the optional PREFIX command (taskset). Appends their pids to the array
# `pids` and sets the array `backend_pids`.
start_backends() {
  local first=$1 count=$2 i
  shift 2
  backend_pids=()
  for i in $(seq 0 $((count - 1))); do
    "$@" "${BIN_DIR:-target/x86_64-unknown-linux-gnu/release}/sticky-svc" --listen "127.0.0.1:$((first + i))" \
      --workers 1 --first-call-cost 0s --host-name "svc-$i" --log-filter warn &
    pids+=($!)
    backend_pids+=($!)
  done
  for i in $(seq 0 $((count - 1))); do wait_http $((first + i)); done
}

# gateway_yaml FIRST_PORT COUNT [PROTOCOL]: the Istio YAML of the gateway in front of those
# replicas: a STATIC ServiceEntry (port protocol PROTOCOL, default HTTP; HTTP2 makes the gateway
# speak HTTP/2 to the replicas), the article's VirtualService and a DestinationRule hashing
# `x-user`.
gateway_yaml() {
  local first=$1 count=$2 protocol=${3:-HTTP} i
  cat <<YAML
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: sticky-svc}
spec:
  hosts: [sticky-svc.default.svc.cluster.local]
  ports:
  - {number: 8080, name: http, protocol: $protocol}
  resolution: STATIC
  endpoints:
YAML
  for i in $(seq 0 $((count - 1))); do
    echo "  - {address: 127.0.0.1, ports: {http: $((first + i))}}"
  done
  cat <<YAML
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: sticky-svc}
spec:
  hosts: ['*']
  http:
  - route:
    - destination:
        host: sticky-svc.default.svc.cluster.local
        port: {number: 8080}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: sticky-svc}
spec:
  host: sticky-svc.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
YAML
}

# scratch: a temporary folder in `work` and an empty `pids` list; on exit every process in
# `pids` is stopped and the folder removed.
scratch() {
  work=$(mktemp -d)
  pids=()
  trap scratch_cleanup EXIT
}

scratch_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# nginx_head WORKERS: the start of an nginx.conf that keeps every file in `work`, up to and
# including the opening of its `http` block (no access log).
nginx_head() {
  cat <<NGINX
worker_processes $1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
NGINX
}

# nginx_upstream: the `sticky` upstream over $upstreams (`server` lines), hashed on x-user as
# the gateway and HAProxy hash, with keep-alive connections; nginx_proxy_location: the
# `location /` that proxies to it with the headers every proxy sets (bench/peers.sh, tls.sh).
nginx_upstream() {
  cat <<NGINX
  upstream sticky {
    hash \$http_x_user consistent;
$upstreams    keepalive 64;
  }
NGINX
}

nginx_proxy_location() {
  cat <<NGINX
    location / {
      proxy_pass http://sticky;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-ID \$request_id;
      add_header X-Request-ID \$request_id always;
    }
NGINX
}

# haproxy_conf THREADS BIND PROTO [SERVER_OPTIONS]: HAProxy in front of the replicas of `servers`
# (`server` lines), hashing `x-user` consistently, with the same header work as the other proxies
# (x-request-id generated and returned, x-forwarded-for, x-forwarded-proto PROTO); BIND is the
# bind line's address and options (TLS ones for bench/tls.sh), SERVER_OPTIONS go on every server
# line (`proto h2`), HAPROXY_GLOBAL lines into `global`.
haproxy_conf() {
  sed '/^$/d' <<HAPROXY
global
  nbthread $1
  maxconn 4096
${HAPROXY_GLOBAL:-}
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
  option forwardfor
frontend bench
  bind $2
  unique-id-format %[uuid()]
  http-request set-header x-request-id %[unique-id]
  http-request set-header x-forwarded-proto $3
  http-response set-header x-request-id %[unique-id]
  default_backend sticky
backend sticky
  balance hdr(x-user)
  hash-type consistent
$(sed "/^\$/d; s/\$/${4:+ $4}/" <<<"$servers")
HAPROXY
}
