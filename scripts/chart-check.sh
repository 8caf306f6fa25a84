#!/usr/bin/env bash
# `make chart-check`: the Helm chart and the plain manifests, checked offline.
#   1. helm lint --strict with the default values and with ci/full-values.yaml (every
#      optional part on); values.schema.json is enforced by lint;
#   2. helm template with both, and every rendered manifest validated against the
#      Kubernetes schemas (kubernetes-validate --strict, oldest and newest supported
#      versions);
#   3. k8s/base and k8s/overlays/example built with kustomize and validated the same way;
#   4. planted errors that must fail: a value of the wrong type, an unknown value, and a
#      manifest with an unknown field. A check that cannot fail checks nothing.
# Tools: scripts/install-chart-tools.sh (helm and kustomize from the Go module proxy,
# kubernetes-validate from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${CASESCOPE_TOOLS_DIR:-$HOME/.cache/casescope-tools}"
helm="$tools/bin/helm"
kustomize="$tools/bin/kustomize"
chart=charts/casescope
kube_versions=(1.32.0 1.37.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

validate() { # file
  for version in "${kube_versions[@]}"; do
    python3 -m kubernetes_validate --strict --quiet -k "$version" "$1"
  done
}

# must_fail "what" "expected text" command...: the command fails and says the text.
must_fail() {
  local what=$1 expected=$2
  shift 2
  if "$@" >"$work/out" 2>&1; then
    echo "FAIL: $what was accepted" >&2
    cat "$work/out" >&2
    exit 1
  fi
  if ! grep -qF -- "$expected" "$work/out"; then
    echo "FAIL: $what failed without saying '$expected':" >&2
    cat "$work/out" >&2
    exit 1
  fi
  echo "ok: $what is refused ($expected)"
}

echo "== helm $("$helm" version --template '{{.Version}}'): lint and render"
for values in default full; do
  args=()
  [ "$values" = full ] && args=(-f "$chart/ci/full-values.yaml")
  "$helm" lint --strict "$chart" "${args[@]}"
  "$helm" template casescope "$chart" --namespace casescope "${args[@]}" >"$work/$values.yaml"
  echo "rendered ($values values): $(grep -c '^kind:' "$work/$values.yaml") manifests:" \
    "$(grep '^kind:' "$work/$values.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
  validate "$work/$values.yaml"
  echo "ok: every manifest rendered with the $values values is valid"
done

echo "== k8s/ (kustomize)"
for dir in k8s/base k8s/overlays/example; do
  "$kustomize" build "$dir" >"$work/kustomize.yaml"
  validate "$work/kustomize.yaml"
  echo "ok: $dir ($(grep -c '^kind:' "$work/kustomize.yaml") manifests) is valid"
done

echo "== planted errors"
must_fail "a value of the wrong type (config.leaseTtlSecs=thirty)" "/config/leaseTtlSecs" \
  "$helm" lint --strict "$chart" --set config.leaseTtlSecs=thirty
must_fail "an unknown value (evidense.size)" "evidense" \
  "$helm" lint --strict "$chart" --set evidense.size=1Gi
must_fail "an OpenSearch URL without a scheme" "/services/ingest/eventStore/opensearch/url" \
  "$helm" lint --strict "$chart" --set services.ingest.eventStore.opensearch.url=opensearch:9200
must_fail "several ingest replicas on a ReadWriteOnce evidence volume" "ReadWriteMany" \
  "$helm" template casescope "$chart" --set services.ingest.replicaCount=2 \
  --set 'evidence.accessModes={ReadWriteOnce}'
sed '0,/imagePullPolicy:/s//imagePullPolicyy:/' "$work/default.yaml" >"$work/planted.yaml"
must_fail "a manifest with an unknown field (imagePullPolicyy)" "imagePullPolicyy" \
  validate "$work/planted.yaml"
sed '0,/containerPort: 7700/s//containerPort: "7700x"/' "$work/default.yaml" >"$work/planted.yaml"
must_fail "a manifest with a port that is not a number" "7700x" \
  validate "$work/planted.yaml"
echo "chart-check passed"
