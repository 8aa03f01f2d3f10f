#!/usr/bin/env bash
# Loads the stack's images (already built by `just images`) into the local cluster of the current
# kubectl context, since the Deployments never pull (imagePullPolicy: IfNotPresent, no registry):
#   kind-NAME -> kind load docker-image --name NAME ...
#   k3d-NAME  -> k3d image import -c NAME ...
#   minikube  -> minikube image load ...
#   docker-desktop -> nothing to do: the cluster shares Docker's image store
# When the context is none of these, or its tool is not installed, prints what it would run.
# The image list comes from the rendered manifests, so kustomization.yaml stays the one place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
kubectl="$(command -v kubectl || echo scripts/kubectl.sh)"

mapfile -t images < <("$kubectl" kustomize k8s/ | sed -n 's/^ *image: *//p' | sort -u)
[[ ${#images[@]} -gt 0 ]] || { echo "k8s-images: no image found in k8s/" >&2; exit 1; }

# Loading an image that was never built fails deep inside kind/k3d; say it plainly first.
require_built() {
  local missing=() image
  for image in "${images[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "k8s-images: not built yet: ${missing[*]} (run \`just images\`)" >&2
    exit 1
  fi
}

context="$("$kubectl" config current-context 2>/dev/null || true)"
case "$context" in
  kind-*) tool=kind cmd=(kind load docker-image --name "${context#kind-}" "${images[@]}") ;;
  k3d-*) tool=k3d cmd=(k3d image import -c "${context#k3d-}" "${images[@]}") ;;
  minikube) tool=minikube cmd=(minikube image load "${images[@]}") ;;
  docker-desktop)
    echo "k8s-images: docker-desktop uses Docker's own image store; ${images[*]} are already there"
    exit 0 ;;
  *) tool="" cmd=() ;;
esac

if [[ -z "$tool" ]]; then
  echo "k8s-images: no kind, k3d or minikube cluster in the current context (${context:-none})."
  echo "With one, this would run, for example:"
  echo "  kind load docker-image --name NAME ${images[*]}"
  echo "  k3d image import -c NAME ${images[*]}"
  echo "Any other cluster needs the images pushed to a registry it can pull from."
elif ! command -v "$tool" >/dev/null 2>&1; then
  echo "k8s-images: context $context wants \`$tool\`, which is not installed. It would run:"
  echo "  ${cmd[*]}"
else
  require_built
  echo "k8s-images: ${cmd[*]}"
  "${cmd[@]}"
fi
