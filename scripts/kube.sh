#!/usr/bin/env bash
# Builds the real Kubernetes pieces the tests and the demo run against, from their Go modules:
#   sb-kube   kube-apiserver + embedded etcd + kube-controller-manager's GC, namespace and
#             service-account controllers, in one process (e2e/kube, k8s.io/kubernetes v1.34)
#   kubectl   the same Kubernetes release's kubectl
#   helm      the real helm CLI (e2e/kube/helm)
# The binaries are cached outside the repository, keyed by the hash of e2e/kube's sources
# (go.mod, go.sum, *.go) and of this script, so a second run builds nothing. `target/kube-bin` points at the
# cache entry; the Rust harness finds the binaries there (or in $SB_KUBE_BIN_DIR).
# Usage: scripts/kube.sh [build|path]    (build is the default; path prints the bin dir)
set -euo pipefail
cd "$(dirname "$0")/.."

# The Go release the modules need: the `go` line of e2e/kube/go.mod.
GO_MIN=$(awk '$1 == "go" {print $2; exit}' e2e/kube/go.mod)
K8S_VERSION="v1.34.4"
HELM_VERSION="v3.19.5"
CACHE_ROOT="${SB_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge/kube}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

log() { printf '[kube] %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: install Go $GO_MIN or newer (https://go.dev/dl/) and run again"
  exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [[ "$(printf '%s\n%s\n' "$GO_MIN" "$have" | sort -V | sed -n 1p)" != "$GO_MIN" ]]; then
  log "Go $have is too old: the Kubernetes $K8S_VERSION modules need Go $GO_MIN or newer"
  exit 1
fi

key=$( (cat scripts/kube.sh; cd e2e/kube && cat go.mod go.sum ./*.go helm/go.mod helm/go.sum; echo "$have") | sha256sum | cut -c1-16)
bin="$CACHE_ROOT/$key"

if [[ "${1:-build}" == "path" ]]; then
  echo "$bin"
  exit 0
fi

version_flags() { # package prefix of the version variables, major, minor, full version
  local v=$4
  printf -- '-X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
    "$1" "$v" "$1" "$2" "$1" "$3" "$1"
}

if [[ -x "$bin/sb-kube" && -x "$bin/kubectl" && -x "$bin/helm" ]]; then
  log "cached: $bin (sb-kube, kubectl $K8S_VERSION, helm $HELM_VERSION)"
else
  mkdir -p "$bin.tmp"
  major=$(cut -d. -f1 <<<"${K8S_VERSION#v}"); minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  ldflags="-s -w $(version_flags k8s.io/component-base/version "$major" "$minor" "$K8S_VERSION")$(version_flags k8s.io/client-go/pkg/version "$major" "$minor" "$K8S_VERSION")"
  log "building sb-kube and kubectl from k8s.io/kubernetes $K8S_VERSION (a cold build takes several minutes)"
  (cd e2e/kube && go build -trimpath -ldflags "$ldflags" -o "$bin.tmp/sb-kube" . \
    && go build -trimpath -ldflags "$ldflags" -o "$bin.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)
  log "building helm $HELM_VERSION"
  # helm's default Kubernetes version (for `helm template` and lint) is that of the client-go
  # it is built with, set the way helm's own Makefile sets it.
  helm_k8s=$(awk '$1 == "k8s.io/client-go" {print $2}' e2e/kube/helm/go.mod | cut -d. -f2)
  (cd e2e/kube/helm && go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s" \
    -o "$bin.tmp/helm" helm.sh/helm/v3/cmd/helm)
  rm -rf "$bin"
  mv "$bin.tmp" "$bin"
  log "built into $bin"
fi

mkdir -p "$TARGET_DIR"
ln -sfn "$bin" "$TARGET_DIR/kube-bin"
# sed reads to the end (unlike head), so kubectl never meets a closed pipe under pipefail.
"$bin/kubectl" version --client 2>/dev/null | sed -n '1s/^/[kube] /p' >&2
