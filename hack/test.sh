#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (CI adds fmt and clippy in .ci/run).
# Installs the test tools the suites use (kubectl, helm, moto) into .bin/ and .venv/ first;
# that step is idempotent and fast when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/karpenter-rs/target}"
bash hack/install-test-tools.sh
cargo test --workspace --locked "$@"
