#!/usr/bin/env bash
# Installs, idempotently, everything the test suite and the demo need on a fresh Debian
# machine with Rust and Go: cargo-nextest, and (scripts/kube.sh, cached outside the repo)
# the real kube-apiserver + etcd + controller-manager, kubectl and helm of one Kubernetes
# release, built from their Go modules; ArgoCD's Application CRD (scripts/argocd-crd.sh) and
# the runner of ArgoCD health scripts (scripts/argocd-lua.sh), also through Go and cached.
# Safe to run again and again.
set -euo pipefail

log() { printf '[ensure-tools] %s\n' "$*" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

"$(dirname "$0")/kube.sh"
bin=$("$(dirname "$0")/kube.sh" path)
"$bin/kubectl" version --client >/dev/null 2>&1 || { log "the built kubectl does not run: $bin/kubectl"; exit 1; }
"$(dirname "$0")/argocd-crd.sh"
"$(dirname "$0")/argocd-lua.sh"

log "tools ready: $(cargo nextest --version | sed -n 1p); $("$bin/kubectl" version --client 2>/dev/null | sed -n 1p); helm $("$bin/helm" version --short 2>/dev/null)"
