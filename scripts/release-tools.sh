#!/usr/bin/env bash
# Installs, idempotently, what `make images` and `make release` need on top of `make tools`,
# cached outside the repository under
#   ${SB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge}/release/:
#   - the rustup targets x86_64-unknown-linux-musl and aarch64-unknown-linux-musl
#   - zig, cargo-zigbuild and certifi's CA bundle from PyPI (scripts/release-requirements.txt,
#     hash-checked) in a virtualenv keyed by that file
#   - cargo-cyclonedx from crates.io (the SBOMs), keyed by its version
#   - sb-oci-image (scripts/oci-image, go-containerregistry through the Go module proxy) and
#     crane of the same module version, keyed by the hash of its sources and the Go version
#   - krew and validate-krew-manifest (scripts/krew), keyed the same way
# A second run installs nothing.
# Usage: scripts/release-tools.sh [install|env]
#   install (default) installs what is missing; env prints, as shell assignments, the paths
#   scripts/release.sh and the tests use (SB_RELEASE_PATH, SB_OCI_IMAGE, SB_CA_BUNDLE,
#   SB_CRANE, SB_CYCLONEDX, SB_KREW_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
CYCLONEDX_VERSION="0.5.9"
CACHE_ROOT="${SB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge}/release"

log() { printf '[release-tools] %s\n' "$*" >&2; }

python=$(command -v python3 || true)
[[ -n "$python" ]] || { log "python3 is needed (for zig, cargo-zigbuild and certifi from PyPI)"; exit 1; }
venv_key=$( (cat scripts/release-requirements.txt; "$python" --version) | sha256sum | cut -c1-16)
venv="$CACHE_ROOT/venv/$venv_key"
cyclonedx_root="$CACHE_ROOT/cargo-cyclonedx/$CYCLONEDX_VERSION"
go_version=$(go env GOVERSION 2>/dev/null || echo none)
oci_key=$( (cd scripts/oci-image && cat go.mod go.sum main.go; echo "$go_version") | sha256sum | cut -c1-16)
oci_tool="$CACHE_ROOT/oci-image/$oci_key/sb-oci-image"
krew_key=$( (cd scripts/krew && cat go.mod go.sum; echo "$go_version") | sha256sum | cut -c1-16)
krew_bin="$CACHE_ROOT/krew/$krew_key"

if [[ "${1:-install}" == "env" ]]; then
  printf 'SB_RELEASE_PATH=%q\n' "$venv/bin"
  printf 'SB_OCI_IMAGE=%q\n' "$oci_tool"
  printf 'SB_CRANE=%q\n' "$(dirname "$oci_tool")/crane"
  printf 'SB_CA_BUNDLE=%q\n' "$("$venv/bin/python" -c 'import certifi; print(certifi.where())')"
  printf 'SB_CYCLONEDX=%q\n' "$cyclonedx_root/bin/cargo-cyclonedx"
  printf 'SB_KREW_BIN=%q\n' "$krew_bin"
  exit 0
fi

installed=$(rustup target list --installed)
for target in "${TARGETS[@]}"; do
  if ! grep -qx "$target" <<<"$installed"; then
    log "rustup target add $target"
    rustup target add "$target"
  fi
done

if [[ -f "$venv/.complete" ]]; then
  log "cached: $venv (zig $("$venv/bin/python" -m ziglang version), $("$venv/bin/cargo-zigbuild" --version))"
else
  log "installing zig, cargo-zigbuild and certifi into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r scripts/release-requirements.txt
  touch "$venv/.complete"
fi

if [[ -x "$cyclonedx_root/bin/cargo-cyclonedx" ]]; then
  log "cached: cargo-cyclonedx $CYCLONEDX_VERSION"
else
  log "installing cargo-cyclonedx $CYCLONEDX_VERSION (a few minutes, once)"
  # Its own build directory: CARGO_TARGET_DIR would mix it into the project's.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --root "$cyclonedx_root.tmp" cargo-cyclonedx --version "$CYCLONEDX_VERSION"
  rm -rf "$cyclonedx_root"
  mv "$cyclonedx_root.tmp" "$cyclonedx_root"
fi

if [[ -x "$oci_tool" && -x "$(dirname "$oci_tool")/crane" ]]; then
  log "cached: $oci_tool, crane"
else
  command -v go >/dev/null 2>&1 || { log "Go is needed to build scripts/oci-image (https://go.dev/dl/)"; exit 1; }
  log "building sb-oci-image (go-containerregistry $(awk '$1 == "require" && $2 ~ /go-containerregistry/ {print $3}' scripts/oci-image/go.mod))"
  mkdir -p "$(dirname "$oci_tool")"
  (cd scripts/oci-image && go build -trimpath -ldflags "-s -w" -o "$oci_tool.tmp" . &&
    go build -trimpath -ldflags "-s -w" -o "$(dirname "$oci_tool")/crane" github.com/google/go-containerregistry/cmd/crane)
  mv "$oci_tool.tmp" "$oci_tool"
fi

if [[ -x "$krew_bin/krew" && -x "$krew_bin/validate-krew-manifest" ]]; then
  log "cached: $krew_bin (krew, validate-krew-manifest)"
else
  command -v go >/dev/null 2>&1 || { log "Go is needed to build krew (https://go.dev/dl/)"; exit 1; }
  log "building krew and validate-krew-manifest ($(awk '$1 == "sigs.k8s.io/krew" {print $2}' scripts/krew/go.mod))"
  mkdir -p "$krew_bin.tmp"
  (cd scripts/krew && go build -trimpath -ldflags "-s -w" -o "$krew_bin.tmp/" sigs.k8s.io/krew/cmd/krew sigs.k8s.io/krew/cmd/validate-krew-manifest)
  rm -rf "$krew_bin"
  mv "$krew_bin.tmp" "$krew_bin"
fi
