#!/usr/bin/env bash
# Fetches ArgoCD's real Application CRD (manifests/crds/application-crd.yaml of the ArgoCD
# release below) through the Go toolchain: `go mod download` of github.com/argoproj/argo-cd/v3
# from the Go module proxy, checked against the checksum database like any Go module. The
# CRD is cached outside the repository,
#   ${SB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge}/argocd/<version>/application-crd.yaml,
# so a second run fetches nothing, and `target/argocd/application-crd.yaml` points at it; the
# e2e harness (e2e/src/argocd.rs) applies it to the test control plane. No copy is committed.
# Usage: scripts/argocd-crd.sh [fetch|path]    (fetch is the default; path prints the cached file)
set -euo pipefail
cd "$(dirname "$0")/.."

ARGOCD_VERSION="v3.6.1"
MODULE="github.com/argoproj/argo-cd/v3"
FILE="manifests/crds/application-crd.yaml"
CACHE_ROOT="${SB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
crd="$CACHE_ROOT/argocd/$ARGOCD_VERSION/application-crd.yaml"

log() { printf '[argocd-crd] %s\n' "$*" >&2; }

if [[ "${1:-fetch}" == "path" ]]; then
  echo "$crd"
  exit 0
fi

if [[ -s "$crd" ]]; then
  log "cached: $crd (ArgoCD $ARGOCD_VERSION)"
else
  if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed: install Go (https://go.dev/dl/); the CRD is fetched as the Go module $MODULE@$ARGOCD_VERSION"
    exit 1
  fi
  log "fetching $MODULE@$ARGOCD_VERSION from the Go module proxy"
  # Outside any module, so no go.mod here is consulted or changed. `go mod download` checks
  # the zip against the checksum database before it reports it. It extracts the module
  # (Dir) only if the local Go is as new as the module's `go` line; otherwise it still
  # downloads and verifies the zip, reports the version error, and exits non-zero, and the
  # file is read from the verified zip.
  scratch=$(mktemp -d)
  json=$(cd "$scratch" && go mod download -json "$MODULE@$ARGOCD_VERSION" || true)
  rmdir "$scratch"
  field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$json" | sed -n 1p; }
  dir=$(field Dir)
  zip=$(field Zip)
  mkdir -p "$(dirname "$crd")"
  if [[ -n "$dir" && -f "$dir/$FILE" ]]; then
    cp "$dir/$FILE" "$crd.tmp"
  elif [[ -n "$zip" && -f "$zip" && -f "${zip%.zip}.ziphash" ]]; then
    entry="$MODULE@$ARGOCD_VERSION/$FILE"
    if command -v unzip >/dev/null 2>&1; then
      unzip -p "$zip" "$entry" >"$crd.tmp"
    elif command -v python3 >/dev/null 2>&1; then
      python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' "$zip" "$entry" >"$crd.tmp"
    else
      log "need unzip (apt-get install unzip) or python3 to read $FILE from $zip"
      exit 1
    fi
  else
    log "go mod download of $MODULE@$ARGOCD_VERSION failed:"
    printf '%s\n' "$json" >&2
    exit 1
  fi
  if ! grep -q '^  name: applications.argoproj.io$' "$crd.tmp"; then
    log "$FILE of $MODULE@$ARGOCD_VERSION is not the Application CRD"
    rm -f "$crd.tmp"
    exit 1
  fi
  mv "$crd.tmp" "$crd"
  log "cached $crd"
fi

mkdir -p "$TARGET_DIR/argocd"
ln -sfn "$crd" "$TARGET_DIR/argocd/application-crd.yaml"
