#!/usr/bin/env bash
# Installs what `make chart-check` needs, pinned, from the package registries only:
#   helm v4.3.2 and kustomize v5.7.1, built with `go install` from the Go module proxy,
#   into ${CASESCOPE_TOOLS_DIR:-$HOME/.cache/casescope-tools}/bin;
#   kubernetes-validate 1.37.0 from PyPI (it carries the Kubernetes JSON schemas of
#   1.32–1.37, so validation needs no network);
#   promtool of Prometheus v3.16 (module v0.316.0), built with `go install`, to check and
#   unit-test the alert rules and parse the dashboard's queries;
#   the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) of v0.85.0, taken
#   from its module on the Go module proxy, into .../crds.
# Idempotent: does nothing for what is already there at the pinned version.
set -euo pipefail
tools="${CASESCOPE_TOOLS_DIR:-$HOME/.cache/casescope-tools}"
mkdir -p "$tools/bin"
helm_version=v4.3.2
kustomize_version=v5.7.1
validate_version=1.37.0
prometheus_module_version=v0.316.0
operator_version=v0.85.0

# Go's default install place, for shells whose PATH lacks it.
[ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null 2>&1; then
  echo "go is missing: the chart check builds helm and kustomize with go install" >&2
  exit 1
fi
if [ "$("$tools/bin/helm" version --template '{{.Version}}' 2>/dev/null)" != "$helm_version" ]; then
  echo "building helm $helm_version (go install; a few minutes the first time)"
  CGO_ENABLED=0 GOBIN="$tools/bin" go install \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" \
    "helm.sh/helm/v4/cmd/helm@$helm_version"
fi
if ! "$tools/bin/kustomize" version 2>/dev/null | grep -q "$kustomize_version"; then
  echo "building kustomize $kustomize_version (go install)"
  CGO_ENABLED=0 GOBIN="$tools/bin" go install -ldflags "-s -w" \
    "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version"
fi
if ! go version -m "$tools/bin/promtool" 2>/dev/null | grep -q "mod.*github.com/prometheus/prometheus.*$prometheus_module_version"; then
  echo "building promtool (prometheus $prometheus_module_version, go install; a few minutes the first time)"
  CGO_ENABLED=0 GOBIN="$tools/bin" go install -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@$prometheus_module_version"
fi
if [ "$(cat "$tools/crds/version" 2>/dev/null)" != "$operator_version" ]; then
  echo "fetching the Prometheus Operator CRDs $operator_version (Go module proxy)"
  module_dir=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$operator_version" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$tools/crds"
  for kind in servicemonitors prometheusrules; do
    cp "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$tools/crds/"
  done
  echo "$operator_version" >"$tools/crds/version"
fi
if [ "$(python3 -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != "$validate_version" ]; then
  echo "installing kubernetes-validate $validate_version (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$validate_version"
fi
echo "chart tools present: $("$tools/bin/helm" version --template '{{.Version}}'), kustomize $kustomize_version, kubernetes-validate $validate_version, promtool ($prometheus_module_version), operator CRDs $operator_version"
