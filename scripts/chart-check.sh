#!/usr/bin/env bash
# `make chart-check`: the Helm chart and the plain manifests, checked offline.
#   1. helm lint --strict with the default values, with ci/full-values.yaml (every
#      optional part on) and with ci/s3-values.yaml over it (evidence in S3);
#      values.schema.json is enforced by lint;
#   2. helm template with both, and every rendered manifest validated against the
#      Kubernetes schemas (kubernetes-validate --strict, oldest and newest supported
#      versions);
#      custom resources (ServiceMonitor, PrometheusRule) validated against the Prometheus
#      Operator's CRDs, strictly, and the rendered rules checked by promtool;
#   3. k8s/base and k8s/overlays/example built with kustomize and validated the same way;
#   4. monitoring: the alert rules unit-tested (`promtool test rules`), every dashboard
#      query parsed by promtool, every metric they use documented;
#   5. planted errors that must fail: a value of the wrong type, an unknown value, a
#      manifest with an unknown field, a custom resource with an unknown field, an
#      alert whose threshold was changed. A check that cannot fail checks nothing.
# Tools: scripts/install-chart-tools.sh (helm, kustomize and promtool from the Go module
# proxy with the Operator's CRDs, kubernetes-validate from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${CASESCOPE_TOOLS_DIR:-$HOME/.cache/casescope-tools}"
helm="$tools/bin/helm"
kustomize="$tools/bin/kustomize"
promtool="$tools/bin/promtool"
crds="$tools/crds"
chart=charts/casescope
kube_versions=(1.32.0 1.37.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

validate() { # file
  # Custom resources have no Kubernetes schema (validate_crs.py checks them): their
  # "couldn't find schema" warnings are dropped; every other line is shown.
  for version in "${kube_versions[@]}"; do
    python3 -m kubernetes_validate --strict --quiet -k "$version" "$1" 2>&1 |
      { grep -v "find schema for kind \(ServiceMonitor\|PrometheusRule\) with api version monitoring.coreos.com" || true; }
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
for values in default full s3; do
  args=()
  [ "$values" = full ] && args=(-f "$chart/ci/full-values.yaml")
  [ "$values" = s3 ] && args=(-f "$chart/ci/full-values.yaml" -f "$chart/ci/s3-values.yaml")
  "$helm" lint --strict "$chart" "${args[@]}"
  "$helm" template casescope "$chart" --namespace casescope "${args[@]}" >"$work/$values.yaml"
  echo "rendered ($values values): $(grep -c '^kind:' "$work/$values.yaml") manifests:" \
    "$(grep '^kind:' "$work/$values.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')"
  validate "$work/$values.yaml"
  python3 scripts/monitoring/validate_crs.py "$crds" "$work/$values.yaml" "$work/$values-rules.yaml"
  "$promtool" check rules "$work/$values-rules.yaml" >/dev/null
  echo "ok: every manifest rendered with the $values values is valid"
done
if grep -q '^kind: PersistentVolumeClaim' "$work/s3.yaml" || ! grep -q 'CASESCOPE_S3_SECRET_ACCESS_KEY' "$work/s3.yaml"; then
  echo "FAIL: the s3 values render an evidence claim, or no S3 credentials" >&2
  exit 1
fi
# A file is `ready` once the stages the release deploys are done: the cases service
# waits for exactly the enabled detect and ioc services.
stages_of() { # rendered file -> CASESCOPE_FILE_STAGES of the cases Deployment
  grep -A1 'name: CASESCOPE_FILE_STAGES' "$1" | sed -n 's/^ *value: "\(.*\)"$/\1/p'
}
if [ "$(stages_of "$work/default.yaml")" != "detect,ioc_hunt" ] ||
  ! grep -qx '            - "ioc"' "$work/default.yaml"; then
  echo "FAIL: the default values do not deploy ioc with the cases service waiting for detect,ioc_hunt" >&2
  exit 1
fi
"$helm" template casescope "$chart" --namespace casescope --set services.ioc.enabled=false >"$work/no-ioc.yaml"
if [ "$(stages_of "$work/no-ioc.yaml")" != "detect" ]; then
  echo "FAIL: without the ioc service the cases service still waits for its stage" >&2
  exit 1
fi
echo "ok: the cases service waits for the stages of the enabled services"
if ! grep -q '^kind: PrometheusRule' "$work/full.yaml"; then
  echo "FAIL: the full values render no PrometheusRule" >&2
  exit 1
fi

echo "== monitoring: alert rules and dashboard"
python3 scripts/monitoring/check.py "$chart/files/dashboard.json" "$chart/files/alerts.yaml" \
  docs/operations.md "$work"
"$promtool" check rules "$work/dashboard-rules.yaml"
cp scripts/monitoring/alerts_test.yaml "$work/"
"$promtool" test rules "$work/alerts_test.yaml"
"$promtool" test rules scripts/monitoring/alerts_annotations_test.yaml

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
must_fail "an LLM URL holding credentials" "/services/report/ai/url" \
  "$helm" lint --strict "$chart" --set services.report.ai.url=http://user:pw@llm:8080/v1
must_fail "an unknown service discovery (consul)" "/serviceDiscovery" \
  "$helm" lint --strict "$chart" --set serviceDiscovery=consul
must_fail "several ingest replicas on a ReadWriteOnce evidence volume" "ReadWriteMany" \
  "$helm" template casescope "$chart" --set services.ingest.replicaCount=2 \
  --set 'evidence.accessModes={ReadWriteOnce}'
must_fail "the s3 evidence store without a bucket" "evidence.s3.bucket is required" \
  "$helm" template casescope "$chart" --set evidence.store=s3
must_fail "an S3 bucket name with capitals" "/evidence/s3/bucket" \
  "$helm" lint --strict "$chart" --set evidence.store=s3 --set evidence.s3.bucket=Evidence
sed '0,/imagePullPolicy:/s//imagePullPolicyy:/' "$work/default.yaml" >"$work/planted.yaml"
must_fail "a manifest with an unknown field (imagePullPolicyy)" "imagePullPolicyy" \
  validate "$work/planted.yaml"
sed '0,/containerPort: 7700/s//containerPort: "7700x"/' "$work/default.yaml" >"$work/planted.yaml"
must_fail "a manifest with a port that is not a number" "7700x" \
  validate "$work/planted.yaml"
sed 's/scrapeTimeout:/scrapeTimout:/' "$work/full.yaml" >"$work/planted.yaml"
must_fail "a ServiceMonitor with an unknown field (scrapeTimout)" "scrapeTimout" \
  python3 scripts/monitoring/validate_crs.py "$crds" "$work/planted.yaml"
sed 's/casescope_bus_consumer_pending) > 500/casescope_bus_consumer_pending) > 5000/' \
  "$work/alerts-without-annotations.yaml" >"$work/planted-rules.yaml"
grep -q '> 5000' "$work/planted-rules.yaml"
sed 's/alerts-without-annotations.yaml/planted-rules.yaml/' scripts/monitoring/alerts_test.yaml \
  >"$work/planted_test.yaml"
must_fail "an alert whose threshold was raised (consumer lag > 5000)" "CaseScopeConsumerLagHigh" \
  "$promtool" test rules "$work/planted_test.yaml"
sed 's/casescope_ingest_files_total/casescope_ingest_file_total/' "$chart/files/alerts.yaml" \
  >"$work/planted-alerts.yaml"
must_fail "an alert on a metric that does not exist (casescope_ingest_file_total)" \
  "casescope_ingest_file_total" \
  python3 scripts/monitoring/check.py "$chart/files/dashboard.json" "$work/planted-alerts.yaml" \
  docs/operations.md "$work"
echo "chart-check passed"
