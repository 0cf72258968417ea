#!/usr/bin/env bash
# Renders deploy/manifests/novanet.yaml: the chart with its default values
# in namespace nova-system, after the Namespace itself. The deploy test
# checks the committed file equals a fresh render.
#   deploy/render-manifests.sh > deploy/manifests/novanet.yaml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
helm=${HELM:-$(command -v helm || echo "${NOVANET_TOOLS:-/usr/local/lib/novanet-tools}/bin/helm")}
cat <<'NS'
# NovaNet native routing, rendered from deploy/helm/novanet with its default
# values and its CRDs (deploy/render-manifests.sh). Apply with:
#   kubectl apply -f deploy/manifests/novanet.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: nova-system
NS
"$helm" template novanet "$here/helm/novanet" --namespace nova-system --include-crds
