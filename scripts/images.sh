#!/usr/bin/env bash
# Builds the stack's images: sticky/sticky-svc, sticky/gateway and (once the crate exists)
# sticky/loadtest, tagged with the workspace version.
#
#   scripts/images.sh            # release binaries (what `just up` runs)
#   PROFILE=dev scripts/images.sh  # the dev binaries the tests already built (CI)
#
# One cargo invocation builds every binary as a static executable (.cargo/config.toml:
# gnu target + crt-static); each image is then `FROM scratch` plus a copy of one binary, built
# from a context folder that holds nothing else, so nothing is pulled and nothing is sent to the
# daemon but the binary. Every docker/NAME.Dockerfile is built when the workspace has a binary
# NAME: adding a binary to the stack is adding its Dockerfile.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

profile="${PROFILE:-release}"
case "$profile" in
  release) profile_dir=release ;;
  dev | debug) profile=dev profile_dir=debug ;;
  *) echo "images: PROFILE must be dev or release, not '$profile'" >&2; exit 2 ;;
esac
# These two make the stack; any other Dockerfile is built only when its binary exists.
required=(sticky-svc gateway)
triple=x86_64-unknown-linux-gnu
bin_dir="target/$triple/$profile_dir"
version="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version *=/ { print $2; exit }' Cargo.toml)"
[[ -n "$version" ]] || { echo "images: no [workspace.package] version in Cargo.toml" >&2; exit 1; }

if ! command -v docker >/dev/null 2>&1; then
  echo "images: docker is not installed (https://docs.docker.com/engine/install/);" \
    "without Docker, \`just local\` runs the same stack as local processes" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "images: cannot reach the Docker daemon (is it running, and may $(id -un) use it?)" >&2
  exit 1
fi
# The legacy builder is all a FROM-scratch COPY needs; without the buildx plugin, Docker CLIs
# that default to BuildKit would otherwise stop with "buildx component is missing".
if [[ -z "${DOCKER_BUILDKIT:-}" ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

# dev: every target, so cargo resolves features exactly as `cargo test --workspace --all-targets`
# did and reuses that build (building only the bins would unify features differently and
# recompile tokio, hyper and the crates above them). release: the binaries alone.
targets=(--bins)
[[ "$profile" == dev ]] && targets=(--all-targets)
start=$(date +%s)
echo "images: cargo build --workspace ${targets[*]} --profile $profile"
if [[ "$profile" == release && ! -x "$bin_dir/gateway" ]]; then
  # Fat LTO, one codegen unit (Cargo.toml's [profile.release]): the first build is long.
  echo "images: the first release build takes about 13 minutes on 2 cores (later ones reuse it);" \
    "cargo's progress follows"
fi
# cargo's own progress on the terminal: a first build is minutes long, and silence reads as a hang.
cargo build --workspace "${targets[@]}" --profile "$profile"

built=()
for dockerfile in docker/*.Dockerfile; do
  name="$(basename "$dockerfile" .Dockerfile)"
  binary="$bin_dir/$name"
  if [[ ! -x "$binary" ]]; then
    if [[ " ${required[*]} " == *" $name "* ]]; then
      echo "images: $binary was not built" >&2
      exit 1
    fi
    echo "images: skip sticky/$name (the workspace has no \`$name\` binary yet)"
    continue
  fi
  # A dynamically linked binary would start in the image only to fail with a bare
  # "no such file or directory" (no loader in scratch): refuse it here with the reason.
  if readelf -l "$binary" 2>/dev/null | grep -q 'program interpreter'; then
    echo "images: $binary is dynamically linked; .cargo/config.toml must keep +crt-static" >&2
    exit 1
  fi
  context="target/images/$name"
  rm -rf "$context"
  mkdir -p "$context"
  # Debug info is most of a dev binary's size; the image does not need it to run, and a
  # smaller context makes the build a fraction of a second. Symbols stay, so backtraces
  # still name functions.
  if command -v objcopy >/dev/null 2>&1; then
    objcopy --strip-debug "$binary" "$context/$name"
  else
    cp "$binary" "$context/$name"
  fi
  tag="sticky/$name:$version"
  old="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  # The legacy builder warns on stderr that it is deprecated: show its output only on failure.
  if ! docker build --quiet \
    --file "$dockerfile" \
    --tag "$tag" \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.sticky.profile=$profile" \
    "$context" >"$context.log" 2>&1; then
    cat "$context.log" >&2
    echo "images: docker build of $tag failed" >&2
    exit 1
  fi
  new="$(docker image inspect --format '{{.Id}}' "$tag")"
  # Rebuilding a tag leaves the previous image dangling; drop it unless a container uses it.
  if [[ -n "$old" && "$old" != "$new" ]]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
  size="$(docker image inspect --format '{{.Size}}' "$tag")"
  awk -v t="$tag" -v s="$size" -v p="$profile" 'BEGIN { printf "images: %-24s %6.1f MB  (%s)\n", t, s / 1e6, p }'
  built+=("$tag")
done
echo "images: ${#built[@]} image(s) in $(($(date +%s) - start)) s"
