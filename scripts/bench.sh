#!/usr/bin/env bash
# `make bench` / `make bench-full`: every benchmark of docs/performance.md in one run, each
# figure next to a baseline measured in the same run, then one table of them all.
#   1. builds the release-optimised binaries and benches (cargo profile `perf`: release without
#      fat LTO, so it builds in minutes on two cores) and, cached, External Secrets Operator
#      (scripts/eso.sh; when it cannot be built, its published figure is printed instead);
#   2. cargo bench: seal vs X25519 (sb-core), store throughput and audit verification on SQLite
#      and PostgreSQL, claim latency (sb-operator);
#   3. sb-scale: the release operator and agent on the real API server with N resident requests.
# Loopback only; the services come from scripts/services.sh (the Makefile starts them).
# Usage: scripts/bench.sh [--full]
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO="${CARGO:-cargo}"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET/bench"
ROWS="$OUT/rows.tsv"
mkdir -p "$OUT"
: >"$ROWS"
export SB_BENCH_ROWS="$PWD/$ROWS"
[[ "$ROWS" = /* ]] && export SB_BENCH_ROWS="$ROWS"

log() { printf '[bench] %s\n' "$*" >&2; }
started=$(date +%s)

if [[ "${1:-}" == "--full" ]]; then
  export SB_BENCH_JOBS=10000 SB_BENCH_AUDIT_EVENTS=1000000 SB_BENCH_AUDIT_POSTGRES=1
  scale_args=(--steps 1000,5000,10000 --approvals 20,10 --idle-seconds 60 --eso 1000,10000 --settle-seconds 900)
  scale_pg_args=(--steps 10000 --database postgres --approvals 20,10 --idle-seconds 60 --agents 1 --settle-seconds 900)
else
  # On two shared cores writing a 1,000,000-event chain takes minutes by itself: the short run
  # verifies 100,000 (and 10,000, for the growth); bench-full the 1,000,000 of the goal.
  export SB_BENCH_AUDIT_EVENTS="${SB_BENCH_AUDIT_EVENTS:-100000}" SB_BENCH_JOBS="${SB_BENCH_JOBS:-1000}"
  # 60 s idle windows: the operator shows lastHeartbeat at a granularity of a minute.
  scale_args=(--steps 1000,5000,10000 --idle-seconds 60 --eso 1000)
  scale_pg_args=()
fi

if ! scripts/eso.sh >"$OUT/eso-build.log" 2>&1; then
  log "External Secrets Operator could not be built (see $OUT/eso-build.log); its published figure is printed instead"
fi

log "building (profile perf)"
$CARGO build --profile perf -p sb-operator -p sb-agent
$CARGO build --profile perf -p sb-e2e --bin sb-scale
# Bench binaries are built by `cargo bench` itself, with the same profile.

# A benchmark that fails does not hide the others' figures: the table is printed anyway and
# the exit status says something failed.
failed=()
step() { # name, command...
  local name=$1; shift
  log "$name"
  "$@" || { failed+=("$name"); log "$name FAILED"; }
}
step "seal vs X25519" $CARGO bench --profile perf -p sb-core --bench seal
step "store throughput and audit verification" $CARGO bench --profile perf -p sb-operator --bench store_throughput
step "claim latency" $CARGO bench --profile perf -p sb-operator --bench claim_latency
scale() { # output file, sb-scale arguments...
  local out=$1; shift
  "$TARGET/perf/sb-scale" "$@" >"$out"
}
step "scale: ${scale_args[*]}" scale "$OUT/scale.txt" "${scale_args[@]}" --rows "$ROWS" --logs "$OUT/logs"
if ((${#scale_pg_args[@]})); then
  step "scale on PostgreSQL: ${scale_pg_args[*]}" \
    scale "$OUT/scale-pg.txt" "${scale_pg_args[@]}" --rows "$ROWS" --logs "$OUT/logs-pg"
fi

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD 2>/dev/null || commit="$commit+local changes"
echo
echo "== make bench$([[ "${1:-}" == "--full" ]] && echo -full): $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) cores, $(($(date +%s) - started)) s"
"$TARGET/perf/sb-scale" --print-table "$ROWS"
if ((${#failed[@]})); then
  log "failed: ${failed[*]}"
  exit 1
fi
