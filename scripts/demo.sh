#!/usr/bin/env bash
# `make demo`: the Secrets Bridge walkthrough on this machine, with nothing but the repository
# (and Rust and Go). Builds (once, cached) the real kube-apiserver + etcd, kubectl and helm
# (scripts/kube.sh), starts OpenBao dev and moto if they are not running (and stops them
# again afterwards), builds the binaries, and runs the tutorial (e2e/src/bin/sb-demo), which
# starts and stops its own Kubernetes control plane, operator and agent.
# Arguments go to sb-demo: `scripts/demo.sh --print-commands` prints the walkthrough as
# commands for a real cluster instead.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
DIR="${SB_SERVICES_DIR:-/tmp/secrets-bridge-services}"

log() { printf '[demo] %s\n' "$*" >&2; }

if [[ "${1:-}" != "--print-commands" ]]; then
  scripts/kube.sh
  # Only the services this run starts are stopped at the end.
  started=()
  status=$(scripts/services.sh status 2>/dev/null || true)
  for svc in bao moto; do
    grep -q "^$svc: up" <<<"$status" || started+=("$svc")
  done
  stop_started() {
    for svc in "${started[@]}"; do
      if [[ -f "$DIR/$svc.pid" ]]; then
        kill "$(cat "$DIR/$svc.pid")" 2>/dev/null || true
        rm -f "$DIR/$svc.pid"
        log "stopped $svc (this demo started it)"
      fi
    done
  }
  trap stop_started EXIT
  scripts/services.sh up bao moto
fi

log "building sb-operator, sb-agent, kubectl-sb and the demo"
$CARGO build --quiet -p sb-operator -p sb-agent -p kubectl-sb -p sb-e2e --bins
"${CARGO_TARGET_DIR:-target}/debug/sb-demo" "$@"
