#!/usr/bin/env bash
# Builds External Secrets Operator from its Go module (github.com/external-secrets/external-secrets),
# for the side-by-side figures of `make bench` (sb-scale --eso): its controller binary and its
# CRD bundle, cached outside the repository under ~/.cache/secrets-bridge/eso/<version>, the way
# scripts/kube.sh caches the control plane. ESO's own go.mod is the main module (its `replace`
# of sprig only applies there), so the module's source is copied out of the read-only module
# cache and built in place with `go build .`.
# Usage: scripts/eso.sh [build|path]   (build is the default; path prints the cache entry)
# Exit status 0 with "<dir>" on stdout when the binary is there; non-zero (and why on stderr)
# when it could not be built.
set -euo pipefail
cd "$(dirname "$0")/.."

ESO_MODULE="github.com/external-secrets/external-secrets"
ESO_VERSION="${SB_ESO_VERSION:-v0.16.2}"
CACHE_ROOT="${SB_ESO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge/eso}"
out="$CACHE_ROOT/$ESO_VERSION"

log() { printf '[eso] %s\n' "$*" >&2; }

if [[ "${1:-build}" == "path" ]]; then
  echo "$out"
  exit 0
fi
if [[ -x "$out/external-secrets" && -s "$out/bundle.yaml" ]]; then
  log "cached: $out (External Secrets Operator $ESO_VERSION)"
  echo "$out"
  exit 0
fi
command -v go >/dev/null 2>&1 || { log "Go is not installed"; exit 1; }

log "downloading $ESO_MODULE@$ESO_VERSION through the Go module proxy"
src=$(cd /tmp && go mod download -json "$ESO_MODULE@$ESO_VERSION" | awk -F'"' '$2 == "Dir" {print $4}')
[[ -d "$src" ]] || { log "go mod download gave no source directory"; exit 1; }

work=$(mktemp -d /tmp/sb-eso-build.XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
log "building the controller (every provider is compiled in; a cold build takes many minutes on two cores)"
(cd "$work" && GOFLAGS=-mod=mod nice -n 10 go build -trimpath -ldflags "-s -w" -o "$work/external-secrets" .)
mkdir -p "$out.tmp"
cp "$work/external-secrets" "$out.tmp/"
cp "$work/deploy/crds/bundle.yaml" "$out.tmp/bundle.yaml"
rm -rf "$out"
mv "$out.tmp" "$out"
log "built into $out"
echo "$out"
