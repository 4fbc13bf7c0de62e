#!/usr/bin/env bash
# Builds sb-argocd-lua (e2e/argocd-lua): ArgoCD v3's way of running a resource health
# customization (gopher-lua, the global `obj`, the returned `hs`), which
# e2e/tests/argocd_health.rs runs the chart's charts/secrets-bridge/argocd/*.lua through.
# Cached outside the repository, keyed by the hash of the module (go.mod, go.sum, main.go),
# this script and the Go version,
#   ${SB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge}/argocd/lua/<hash>/sb-argocd-lua,
# so a second run builds nothing; `target/argocd/sb-argocd-lua` points at it.
# Usage: scripts/argocd-lua.sh [build|path]    (build is the default; path prints the binary)
set -euo pipefail
cd "$(dirname "$0")/.."

GO_MIN=$(awk '$1 == "go" {print $2; exit}' e2e/argocd-lua/go.mod)
CACHE_ROOT="${SB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

log() { printf '[argocd-lua] %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: install Go $GO_MIN or newer (https://go.dev/dl/) and run again"
  exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [[ "$(printf '%s\n%s\n' "$GO_MIN" "$have" | sort -V | sed -n 1p)" != "$GO_MIN" ]]; then
  log "Go $have is too old: e2e/argocd-lua needs Go $GO_MIN or newer"
  exit 1
fi

key=$( (cat scripts/argocd-lua.sh; cd e2e/argocd-lua && cat go.mod go.sum main.go; echo "$have") | sha256sum | cut -c1-16)
dir="$CACHE_ROOT/argocd/lua/$key"

if [[ "${1:-build}" == "path" ]]; then
  echo "$dir/sb-argocd-lua"
  exit 0
fi

if [[ -x "$dir/sb-argocd-lua" ]]; then
  log "cached: $dir/sb-argocd-lua"
else
  log "building sb-argocd-lua (gopher-lua $(awk '$1 == "github.com/yuin/gopher-lua" {print $2}' e2e/argocd-lua/go.mod))"
  mkdir -p "$dir.tmp"
  (cd e2e/argocd-lua && go build -trimpath -ldflags "-s -w" -o "$dir.tmp/sb-argocd-lua" .)
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  log "built into $dir"
fi

mkdir -p "$TARGET_DIR/argocd"
ln -sfn "$dir/sb-argocd-lua" "$TARGET_DIR/argocd/sb-argocd-lua"
