#!/usr/bin/env bash
# Checks the deployment files; `make lint` runs `scripts/manifests.sh check`.
#
#   scripts/manifests.sh check     check deploy/k8s/ and docker-compose.yml (installs first)
#   scripts/manifests.sh install   only set up the checker's virtualenv
#
# - deploy/k8s: every file kustomization.yaml lists (and every YAML file there is listed), each
#   resource validated against the Kubernetes JSON schemas of the versions in CDP_K8S_VERSIONS,
#   strictly (an unknown field fails), by the PyPI package kubernetes-validate, which bundles the
#   schemas (no network needed once installed). Then what the schemas cannot know: every cdp
#   container runs a real `cdp` stage, has readiness, liveness and resources, probes named ports;
#   every stage has a workload; Secret and ConfigMap references resolve; every CDP_* variable
#   and every key of cdp.toml is a setting the code has (read from the settings structs).
# - docker-compose.yml, with PyYAML: every stage has a service; each service's command names a
#   real stage (from crates/cdp/src/main.rs); every depends_on target exists (and has a
#   healthcheck when waited on healthy); every service but redpanda has a healthcheck, which asks
#   the port the stage listens on; every CDP_* variable is a setting; each stage gets the settings
#   it cannot start or work without; host names in values are services; paths are on volumes.
#
# Python 3 and its venv module are all it needs: the checker's packages go, pinned, into a
# virtualenv under target/ (CDP_MANIFESTS_VENV moves it), installed once and again only when the
# pins change.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CDP_MANIFESTS_VENV:-target/manifests-venv}
# The oldest Kubernetes minor version the manifests are meant for, and the newest the pinned
# kubernetes-validate knows.
K8S_VERSIONS=${CDP_K8S_VERSIONS:-1.30 1.37}
# kubernetes-validate and PyYAML, and everything they pull in, pinned.
REQUIREMENTS=(
  kubernetes-validate==1.37.0
  PyYAML==6.0.3
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  importlib_resources==7.1.0
  packaging==26.4
  typing_extensions==4.16.0
)

install() {
  local stamp="$VENV/.cdp-requirements" want="${REQUIREMENTS[*]}"
  if [[ -x $VENV/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  echo "== manifests: installing the checker into $VENV (${REQUIREMENTS[0]}, ${REQUIREMENTS[1]})"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if python3 -m venv "$VENV" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  else
    # A Python without ensurepip (Debian's without python3-venv): an empty virtualenv, filled by
    # the system's pip.
    rm -rf "$VENV"
    python3 -m venv --without-pip "$VENV"
    python3 -m pip --python "$VENV/bin/python" install --quiet --disable-pip-version-check \
      "${REQUIREMENTS[@]}"
  fi
  echo "$want" >"$stamp"
}

check() {
  install
  CDP_K8S_VERSIONS="$K8S_VERSIONS" "$VENV/bin/python" scripts/manifests_check.py
}

case "${1:-}" in
  check) check ;;
  install) install ;;
  *)
    echo "usage: $0 check|install" >&2
    exit 2
    ;;
esac
