#!/usr/bin/env bash
# Validates what ships: the Dockerfile (hadolint, checkov), the Kubernetes
# manifests and their kustomize output (kubernetes-validate against current
# Kubernetes schemas, checkov), every YAML file (yamllint) and the compose
# file (the compose specification's JSON schema). Tools: scripts/install-test-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
k8s_version=${K8S_VERSION:-1.37.0}
step() { printf '==> %s\n' "$*"; }

step "hadolint backend/Dockerfile"
hadolint backend/Dockerfile

step "yamllint"
yamllint --strict -c .yamllint.yaml docker-compose.yml k8s/

step "compose specification schema"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

step "kubernetes-validate (Kubernetes $k8s_version)"
manifests=(k8s/namespace.yaml k8s/serviceaccount.yaml k8s/configmap.yaml k8s/deployment.yaml
  k8s/service.yaml k8s/pdb.yaml k8s/hpa.yaml k8s/networkpolicy.yaml k8s/jobs/migrate-job.yaml
  k8s/components/external-endpoints/egress.yaml k8s/examples/ingress.yaml)
kubernetes-validate --quiet --strict -k "$k8s_version" "${manifests[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rendered=$work/rendered.yaml
# The base, the optional Job, and the base with the external-endpoints
# component enabled (as the deploy guide says to).
kubectl kustomize k8s >"$rendered"
kubectl kustomize k8s/jobs >"$work/jobs.yaml"
cp -r k8s "$work/k8s"
sed -i 's/^# components:/components:/; s/^#   - components/  - components/' "$work/k8s/kustomization.yaml"
kubectl kustomize "$work/k8s" >"$work/external.yaml"
grep -q 'cidr: 10.0.0.10/32' "$work/external.yaml"
kubernetes-validate --quiet --strict -k "$k8s_version" "$rendered" "$work/jobs.yaml" "$work/external.yaml"
# The Secret templates must be rejected when applied unchanged: the API
# server decodes `data` values as base64, and REPLACE_ME! is not base64.
python3 - <<'PY'
import base64, binascii, sys, yaml
for doc in yaml.safe_load_all(open("k8s/secrets.example.yaml")):
    for key, value in doc.get("data", {}).items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        sys.exit(f"k8s/secrets.example.yaml: {key} is valid base64, so applying it unchanged would not fail")
PY

step "checkov (Kubernetes, Dockerfile)"
checkov --quiet --compact --skip-download -d k8s --framework kubernetes
checkov --quiet --compact --skip-download -f "$rendered" -f "$work/jobs.yaml" -f "$work/external.yaml" --framework kubernetes
checkov --quiet --compact --skip-download -f backend/Dockerfile --framework dockerfile
echo "deploy files: clean"
