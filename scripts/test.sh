#!/usr/bin/env bash
# `make test` once its prerequisites are in place: every test of the workspace with nextest,
# then the short fuzz pass (scripts/fuzz.sh, FUZZ_SHORT_SECONDS per target, default 15).
#
# The fuzz targets are built (their own instrumented target dir, outside the repository)
# in the background at the lowest CPU priority while the tests run: the end-to-end tests
# spend most of their time waiting on real processes, so the build costs the suite little
# and the pass after it only runs. The build's log is $CARGO_TARGET_DIR/fuzz-build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
log="$target/fuzz-build.log"
nice -n 19 scripts/fuzz.sh --build-only >"$log" 2>&1 &
build=$!

status=0
${CARGO:-cargo} nextest run --workspace --no-fail-fast || status=$?

if ! wait "$build"; then
  echo "[test] building the fuzz targets failed; the end of $log follows" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
((status == 0)) || exit "$status"
scripts/fuzz.sh "${FUZZ_SHORT_SECONDS:-15}"
