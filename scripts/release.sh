#!/usr/bin/env bash
# Builds what a platform team installs (docs/install.md), reproducibly: two runs from the same
# commit give byte-identical files.
#
#   scripts/release.sh binaries [ARCH...]   static musl binaries (x86_64 and aarch64 by default)
#                                           into $CARGO_TARGET_DIR/<triple>/$SB_RELEASE_PROFILE/
#   scripts/release.sh images [ARCH...]     the OCI images of sb-operator and sb-agent into
#                                           $CARGO_TARGET_DIR/images/ (`make images`)
#   scripts/release.sh dist [ARCH...]       everything into $DIST (default dist/; `make release`);
#                                           `make test` writes a host-only one for its tests
#   scripts/release.sh check [ARCH...]      dist twice, the second time compiling everything
#                                           again, and compares the checksums (`make release-check`)
#
# Where determinism comes from: SOURCE_DATE_EPOCH (default: the commit's time) for every
# timestamp; the paths of the checkout and of ~/.cargo remapped out of the binaries; zig
# (pinned) as the C compiler and linker; tar --sort=name --mtime --owner=0 --group=0
# --numeric-owner and gzip -n; OCI layers and layouts written by scripts/oci-image with the
# same rules; the CA bundle from a pinned certifi; SBOM serial numbers derived from content.
#
# Environment: SB_REGISTRY (default ghcr.io/secrets-bridge), SB_RELEASE_URL (where the
# archives will be downloadable, for the krew manifest), SB_GIT_COMMIT, SOURCE_DATE_EPOCH,
# SB_ALLOW_DIRTY=1 (build from a tree with uncommitted changes; the commit is marked -dirty),
# DIST (default dist), SB_RELEASE_PROFILE (default release; `make test` uses dist-test, the
# same build without optimisation, for its artifact tests: see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '[release] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
DIST="${DIST:-dist}"
[[ "$DIST" == /* ]] || DIST="$ROOT/$DIST"
VERSION=$(awk '/^\[workspace.package\]/ {p=1; next} /^\[/ {p=0} p && $1 == "version" {gsub(/"/, "", $3); print $3; exit}' Cargo.toml)
[[ -n "$VERSION" ]] || die "no version in [workspace.package] of Cargo.toml"
REGISTRY="${SB_REGISTRY:-ghcr.io/secrets-bridge}"
SOURCE_URL="https://github.com/secrets-bridge/secrets-bridge"
RELEASE_URL="${SB_RELEASE_URL:-$SOURCE_URL/releases/download/v$VERSION}"
BINARIES=(sb-operator sb-agent kubectl-sb)
PROFILE="${SB_RELEASE_PROFILE:-release}"
IMAGES=(sb-operator sb-agent)

triple() { case $1 in x86_64) echo x86_64-unknown-linux-musl ;; aarch64) echo aarch64-unknown-linux-musl ;; *) die "unknown arch $1 (x86_64 or aarch64)" ;; esac; }
goarch() { case $1 in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac; }

in_git() { git -C "$ROOT" rev-parse --show-toplevel >/dev/null 2>&1 && [[ "$(git -C "$ROOT" rev-parse --show-toplevel)" == "$ROOT" ]]; }

commit() {
  if [[ -n "${SB_GIT_COMMIT:-}" ]]; then
    echo "$SB_GIT_COMMIT"
  elif in_git; then
    local head
    head=$(git rev-parse HEAD)
    if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then head="$head-dirty"; fi
    echo "$head"
  else
    echo unknown
  fi
}

epoch() {
  if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    echo "$SOURCE_DATE_EPOCH"
  elif in_git; then
    git log -1 --format=%ct
  else
    die "set SOURCE_DATE_EPOCH: there is no git commit to take the time from"
  fi
}

tools() {
  scripts/release-tools.sh
  eval "$(scripts/release-tools.sh env)"
  export PATH="$SB_RELEASE_PATH:$PATH"
}

# The static binaries for each arch. cargo-zigbuild links with zig, whose own musl headers
# and libc objects compile ring's and SQLite's C code for either arch.
binaries() {
  local arches=("$@") cargo_home
  cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
  local targets=() arch
  for arch in "${arches[@]}"; do targets+=(--target "$(triple "$arch")"); done
  log "building ${BINARIES[*]} for ${arches[*]} (profile $PROFILE, commit $(commit))"
  # One cargo run per binary: cargo unifies the features of every package it builds at once,
  # which would compile the operator's Kubernetes client and database features into the
  # agent's dependencies. Built alone, each binary links what `cargo tree -p` shows (the
  # graph scripts/check-boundaries.sh checks). With --target, RUSTFLAGS reaches only the
  # target's crates, not build scripts.
  local bin
  for bin in "${BINARIES[@]}"; do
    SB_GIT_COMMIT=$(commit) SOURCE_DATE_EPOCH=$(epoch) CARGO_TARGET_DIR="$TARGET_DIR" \
      RUSTFLAGS="--remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$ROOT=/build ${SB_RELEASE_RUSTFLAGS:-}" \
      cargo zigbuild --locked --profile "$PROFILE" "${targets[@]}" -p "$bin"
  done
  for arch in "${arches[@]}"; do
    for bin in "${BINARIES[@]}"; do
      local path="$TARGET_DIR/$(triple "$arch")/$PROFILE/$bin"
      # A static executable has no program interpreter (no ld.so to load it).
      if LC_ALL=C readelf -l "$path" | grep -q 'Requesting program interpreter'; then
        die "$path is dynamically linked"
      fi
      log "$(printf '%-12s %-8s %10s bytes' "$bin" "$arch" "$(stat -c %s "$path")")"
    done
  done
}

# The OCI images (both platforms in one index each) from binaries already built.
images_from_binaries() { # out dir, arches...
  local out=$1; shift
  local at created commit
  at=$(epoch); commit=$(commit)
  created=$(date -u -d "@$at" +%Y-%m-%dT%H:%M:%SZ)
  mkdir -p "$out"
  for name in "${IMAGES[@]}"; do
    local args=() arch description
    for arch in "$@"; do args+=(--binary "linux/$(goarch "$arch")=$TARGET_DIR/$(triple "$arch")/$PROFILE/$name"); done
    case $name in
      sb-operator)
        description="Secrets Bridge control plane: controllers, approvals, store, job queue and agent API"
        # The chart mounts the store's volume here; the directory belongs to the nonroot user.
        args+=(--dir /var/lib/secrets-bridge) ;;
      sb-agent) description="Secrets Bridge agent: outbound-only executor of approved jobs against the secret providers" ;;
    esac
    "$SB_OCI_IMAGE" --out "$out/$name.oci.tar" --ref "$REGISTRY/$name:$VERSION" \
      --entrypoint "/usr/local/bin/$name" --ca-bundle "$SB_CA_BUNDLE" --epoch "$at" "${args[@]}" \
      --label "org.opencontainers.image.title=$name" \
      --label "org.opencontainers.image.description=$description" \
      --label "org.opencontainers.image.version=$VERSION" \
      --label "org.opencontainers.image.revision=$commit" \
      --label "org.opencontainers.image.created=$created" \
      --label "org.opencontainers.image.source=$SOURCE_URL" \
      --label "org.opencontainers.image.url=$SOURCE_URL" \
      --label "org.opencontainers.image.documentation=$SOURCE_URL/blob/main/docs/install.md" \
      --label "org.opencontainers.image.licenses=Apache-2.0" \
      --label "org.opencontainers.image.vendor=Secrets Bridge" |
      awk '{print $2}' >"$out/$name.digest"
    log "image $REGISTRY/$name:$VERSION $(cat "$out/$name.digest") ($(stat -c %s "$out/$name.oci.tar") bytes)"
  done
}

# tar and gzip with nothing of the build machine or the time in them.
pack() { # archive.tar.gz, directory (its contents go at the archive's top level)
  tar --sort=name --mtime="@$(epoch)" --owner=0 --group=0 --numeric-owner --format=gnu \
    --mode=go-w,a+rX -C "$2" -cf - . | gzip -n -9 >"$1"
}

# The workspace's manifests and Rust sources, NUL-separated (what cargo metadata reads).
source_files() {
  if in_git; then
    git ls-files -z --cached --others --exclude-standard -- Cargo.toml Cargo.lock '*/Cargo.toml' '*.rs' |
      while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done
  else
    find . \( -path ./target -o -path ./dist -o -path "./${TARGET_DIR#"$ROOT"/}" -o -name '.*' \) -prune -o \
      \( -name Cargo.toml -o -name Cargo.lock -o -name '*.rs' \) -type f -printf '%P\0'
  fi
}

# CycloneDX (JSON) per binary and platform from the lockfile. cargo-cyclonedx stamps a
# random serial number and the time of the run; both are replaced (the time by the epoch,
# the serial by a UUID derived from the document) so the SBOM is reproducible.
sboms() { # out dir, arches...
  local out=$1; shift
  local at scratch arch
  at=$(epoch)
  mkdir -p "$out"
  for arch in "$@"; do
    scratch=$(mktemp -d "$TARGET_DIR/sbom.XXXXXX")
    # It writes <bin>_bin.cdx.json beside each crate's Cargo.toml: run it on a copy of the
    # manifests and sources so the checkout stays clean.
    source_files | tar --null -T - -cf - | tar -C "$scratch" -xf -
    (cd "$scratch" && "$SB_CYCLONEDX" cyclonedx --format json --spec-version 1.5 --describe binaries \
      --target "$(triple "$arch")" --no-build-deps --quiet >/dev/null)
    for bin in "${BINARIES[@]}"; do
      local found
      found=$(find "$scratch" -name "${bin}_bin.cdx.json" -print -quit)
      [[ -n "$found" ]] || die "cargo-cyclonedx wrote no SBOM for $bin"
      # cargo-cyclonedx reads the workspace-wide resolution (features unified across every
      # member); keep only the packages this binary's own build links, as cargo tree -p
      # resolves them for its target (normal dependencies: what ends up in the executable).
      cargo tree --locked -p "$bin" -e normal --target "$(triple "$arch")" --prefix none -f '{p}' |
        awk '{print $1 "@" substr($2, 2)}' | sort -u >"$scratch/$bin.packages"
      python3 - "$found" "$out/$bin-$VERSION-linux-$(goarch "$arch").cdx.json" "$at" "$scratch" "$scratch/$bin.packages" <<'PY'
import datetime, hashlib, json, sys, uuid
src, dst, epoch, scratch, packages = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
linked = set(open(packages).read().split())
# The copy's path names the checkout as the binaries do (--remap-path-prefix=...=/build).
doc = json.loads(open(src).read().replace(scratch, "/build"))
doc["components"] = [c for c in doc.get("components", []) if f"{c['name']}@{c['version']}" in linked]
kept = {c["bom-ref"] for c in doc["components"]} | {doc["metadata"]["component"]["bom-ref"]}
doc["dependencies"] = [
    dict(d, dependsOn=[r for r in d.get("dependsOn", []) if r in kept])
    for d in doc.get("dependencies", []) if d["ref"] in kept
]
doc.pop("serialNumber", None)
doc.setdefault("metadata", {})["timestamp"] = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
doc["serialNumber"] = "urn:uuid:" + str(uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=5))
with open(dst, "w") as f:
    json.dump(doc, f, indent=2, sort_keys=True)
    f.write("\n")
PY
    done
    rm -rf "$scratch"
  done
}

# helm package stamps each file with the time of the run; repack its output the same way as
# the archives (the chart's files, Chart.yaml as helm wrote it, in sorted order).
charts() { # out dir
  local out=$1 helm scratch
  helm="$(scripts/kube.sh path)/helm"
  [[ -x "$helm" ]] || scripts/kube.sh
  mkdir -p "$out"
  for chart in secrets-bridge sb-agent; do
    local app
    app=$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' "charts/$chart/Chart.yaml")
    [[ "$app" == "$VERSION" ]] || die "charts/$chart/Chart.yaml appVersion $app is not the workspace version $VERSION"
    scratch=$(mktemp -d "$TARGET_DIR/chart.XXXXXX")
    HELM_CACHE_HOME="$scratch/cache" HELM_CONFIG_HOME="$scratch/config" HELM_DATA_HOME="$scratch/data" \
      "$helm" package "charts/$chart" --app-version "$VERSION" --destination "$scratch/pkg" >/dev/null
    mkdir "$scratch/tree"
    tar -m -C "$scratch/tree" -xzf "$scratch/pkg/$chart-"*.tgz
    local file
    file=$(basename "$scratch/pkg/$chart-"*.tgz)
    tar --sort=name --mtime="@$(epoch)" --owner=0 --group=0 --numeric-owner --format=gnu \
      --mode=go-w,a+rX -C "$scratch/tree" -cf - "$chart" | gzip -n -9 >"$out/$file"
    rm -rf "$scratch"
    log "chart $out/$file"
  done
}

# The krew manifest (krew-index's plugins/sb.yaml), with the archives' real checksums.
krew_manifest() { # out file, archives dir, arches...
  local out=$1 archives=$2; shift 2
  mkdir -p "$(dirname "$out")"
  {
    cat <<EOF
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: sb
spec:
  version: v$VERSION
  homepage: $SOURCE_URL
  shortDescription: Read and change secrets with approval
  description: |
    Secrets Bridge's kubectl plugin. Ask to read keys of a secret held in Vault,
    OpenBao or AWS Secrets Manager (the value is sealed to a key only you hold),
    approve or deny someone else's request, reveal a delivered value once, change
    keys with values sealed to the agent, and list the discovered secrets:
      kubectl sb read edge/vault:team-a/db --key password --reason "INC-4211"
      kubectl sb approve srr/db-password --reason "matches INC-4211"
      kubectl sb reveal db-password
    Needs the Secrets Bridge operator in the cluster (docs/install.md).
  caveats: |
    Shell completion: kubectl sb completion bash|zsh|fish. For kubectl sb <TAB>
    (kubectl 1.26+), put kubectl_complete-sb from the archive on your PATH.
  platforms:
EOF
    local arch archive
    for arch in "$@"; do
      archive="kubectl-sb-$VERSION-linux-$(goarch "$arch").tar.gz"
      cat <<EOF
  - selector:
      matchLabels:
        os: linux
        arch: $(goarch "$arch")
    uri: $RELEASE_URL/$archive
    sha256: $(sha256sum "$archives/$archive" | cut -d' ' -f1)
    bin: kubectl-sb
    files:
    - from: kubectl-sb
      to: .
    - from: kubectl_complete-sb
      to: .
    - from: completions/*
      to: completions
EOF
    done
  } >"$out"
}

dist() { # arches (default both)
  local arches=("$@")
  [[ ${#arches[@]} -gt 0 ]] || arches=(x86_64 aarch64)
  if in_git && [[ -n "$(git status --porcelain --untracked-files=no)" && "${SB_ALLOW_DIRTY:-}" != 1 ]]; then
    die "the tree has uncommitted changes: commit them, or set SB_ALLOW_DIRTY=1 (the commit is then marked -dirty)"
  fi
  tools
  [[ "$(uname -m)" == x86_64 ]] || die "release builds run on x86_64 hosts (the completions are generated by running the x86_64 binary)"
  binaries "${arches[@]}"
  log "writing $DIST (version $VERSION, commit $(commit), SOURCE_DATE_EPOCH $(epoch))"
  rm -rf "$DIST"
  mkdir -p "$DIST"/{bin,sbom,images,charts,plugins}
  local staging arch bin
  staging=$(mktemp -d "$TARGET_DIR/dist-staging.XXXXXX")
  local host_plugin="$TARGET_DIR/$(triple x86_64)/$PROFILE/kubectl-sb"
  mkdir -p "$staging/completions"
  for shell in bash zsh fish; do "$host_plugin" completion "$shell" >"$staging/completions/kubectl-sb.$shell"; done
  # kubectl 1.26+ completes `kubectl sb <TAB>` by running this from PATH.
  printf '#!/bin/sh\n# kubectl plugin completion for kubectl sb (kubectl 1.26+).\nexec kubectl-sb __complete "$@"\n' \
    >"$staging/completions/kubectl_complete-sb"
  chmod 0755 "$staging/completions/kubectl_complete-sb"
  for arch in "${arches[@]}"; do
    local platform="linux-$(goarch "$arch")"
    mkdir -p "$DIST/bin/$platform"
    for bin in "${BINARIES[@]}"; do
      install -m 0755 "$TARGET_DIR/$(triple "$arch")/$PROFILE/$bin" "$DIST/bin/$platform/$bin"
      local tree="$staging/$bin-$platform"
      mkdir -p "$tree"
      install -m 0755 "$DIST/bin/$platform/$bin" "$tree/$bin"
      if [[ $bin == kubectl-sb ]]; then
        mkdir -p "$tree/completions"
        install -m 0644 "$staging/completions/kubectl-sb."* "$tree/completions/"
        install -m 0755 "$staging/completions/kubectl_complete-sb" "$tree/kubectl_complete-sb"
      fi
      pack "$DIST/$bin-$VERSION-$platform.tar.gz" "$tree"
    done
  done
  rm -rf "$staging"
  images_from_binaries "$DIST/images" "${arches[@]}"
  sboms "$DIST/sbom" "${arches[@]}"
  charts "$DIST/charts"
  krew_manifest "$DIST/plugins/sb.yaml" "$DIST" "${arches[@]}"
  local platforms
  platforms=$(for arch in "${arches[@]}"; do printf '"linux/%s",' "$(goarch "$arch")"; done)
  printf '{"version": "%s", "commit": "%s", "sourceDateEpoch": %s, "registry": "%s", "profile": "%s", "platforms": [%s]}\n' \
    "$VERSION" "$(commit)" "$(epoch)" "$REGISTRY" "$PROFILE" "${platforms%,}" >"$DIST/release.json"
  (cd "$DIST" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
  log "dist: $(find "$DIST" -type f | wc -l) files, $(du -sh "$DIST" | cut -f1); checksums in $DIST/SHA256SUMS"
}

# dist twice: once as the target directory is, once with every release artifact of it moved
# aside (every crate compiled again, at the same paths), and the two SHA256SUMS must be equal.
check() { # arches (default both)
  local work="$TARGET_DIR/release-check"
  rm -rf "$work"
  mkdir -p "$work/previous"
  dist "$@"
  local dir
  for dir in x86_64-unknown-linux-musl aarch64-unknown-linux-musl "$PROFILE"; do
    if [[ -d "$TARGET_DIR/$dir" ]]; then mv "$TARGET_DIR/$dir" "$work/previous/$dir"; fi
  done
  log "second run, compiling everything again"
  DIST="$work/dist" "$0" dist "$@"
  if diff -u "$DIST/SHA256SUMS" "$work/dist/SHA256SUMS"; then
    log "reproducible: both runs wrote the same $(wc -l <"$DIST/SHA256SUMS") files, byte for byte"
    rm -rf "$work"
  else
    die "the two runs differ (above): $DIST and $work/dist"
  fi
}

command=${1:-dist}
shift || true
case $command in
  binaries) tools; binaries "${@:-x86_64}" ;;
  images)
    tools
    arches=("$@"); [[ ${#arches[@]} -gt 0 ]] || arches=(x86_64 aarch64)
    binaries "${arches[@]}"
    images_from_binaries "$TARGET_DIR/images" "${arches[@]}" ;;
  dist) dist "$@" ;;
  check) check "$@" ;;
  *) die "usage: scripts/release.sh binaries|images|dist|check [ARCH...]" ;;
esac
