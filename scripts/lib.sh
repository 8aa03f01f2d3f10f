# What the compose runs beside `just up` (scripts/chaos.sh, scripts/rebalance.sh) share: their
# own project and ports, the output folder, messages, and the images they need. Sourced, with
# `root` set to the repository and the working directory there.

# compose_run NAME BASE_PORT COST: project sticky-NAME, the gateway on BASE_PORT, its admin on
# +1 and HTTPS on +2 (off the default 443, which `just up` may hold), FIRST_CALL_COST COST, the
# dev images; each overridable from the environment. Sets `run` (messages' prefix) and `cost_s`.
compose_run() {
  run="$1"
  export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-sticky-$1}"
  export GATEWAY_PORT="${GATEWAY_PORT:-$2}"
  export GATEWAY_ADMIN_PORT="${GATEWAY_ADMIN_PORT:-$(($2 + 1))}"
  export GATEWAY_TLS_PORT="${GATEWAY_TLS_PORT:-$(($2 + 2))}"
  export FIRST_CALL_COST="${FIRST_CALL_COST:-$3}"
  export PROFILE="${PROFILE:-dev}"
  cost_s="${FIRST_CALL_COST%s}"
}

say() { printf '%s: %s\n' "$run" "$*"; }
step() { printf '\n== %s\n' "$*"; }
die() { printf '%s: %s\n' "$run" "$*" >&2; exit 2; }

# out_dir SETTING VALUE: VALUE as an absolute path (relative ones from the repository); it is
# emptied by the run, so never the root or the repository itself.
out_dir() {
  local out="$2"
  [[ "$out" == /* ]] || out="$root/$out"
  out="$(realpath -m "$out")"
  [[ "$out" != / && "$out" != "$root" ]] || die "$1 may not be $out"
  printf '%s\n' "$out"
}

# need_stack_images: docker, curl and the three images of this version, or a message saying how
# to build them (`just <run>` does).
need_stack_images() {
  command -v docker >/dev/null 2>&1 || die "docker is not installed"
  command -v curl >/dev/null 2>&1 || die "curl is not installed"
  local version image
  version="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version *=/ { print $2; exit }' Cargo.toml)"
  for image in sticky-svc gateway loadtest; do
    docker image inspect "sticky/$image:$version" >/dev/null 2>&1 ||
      die "no sticky/$image:$version image: run PROFILE=$PROFILE scripts/images.sh (just $run does it)"
  done
}
