#!/usr/bin/env bash
# `make test` once its prerequisites are in place:
#   1. every test of the workspace with nextest, except the release-artifact tests;
#   2. meanwhile, in the background at the lowest CPU priority, the host's release artifacts
#      (scripts/release.sh dist x86_64 with the dist-test profile, into
#      $CARGO_TARGET_DIR/dist-host) and then the fuzz targets, unoptimised (SB_FUZZ_PROFILE=dev:
#      a third of the optimised build's CPU time; their own instrumented target dir, outside
#      the repository). The end-to-end tests spend most of their time waiting on
#      real processes, so these builds cost the suite little;
#   3. the release-artifact tests (e2e/tests/images.rs, release.rs) on what step 2 wrote;
#   4. the short fuzz pass (scripts/fuzz.sh on that build, FUZZ_SHORT_SECONDS per target, default 15).
# The background builds' logs are $CARGO_TARGET_DIR/artifacts-build.log and fuzz-build.log.
#
# scripts/test.sh --artifacts-only builds step 2's release artifacts in the foreground
# (`make test-artifacts`).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
cargo=${CARGO:-cargo}

artifacts() {
  DIST="$target/dist-host" SB_ALLOW_DIRTY=1 SB_RELEASE_PROFILE=dist-test scripts/release.sh dist x86_64
}
if [[ "${1:-}" == --artifacts-only ]]; then
  artifacts
  exit
fi

# The short pass builds and runs the unoptimised fuzz targets; both steps must use the same.
export SB_FUZZ_PROFILE=dev
artifacts_log="$target/artifacts-build.log"
fuzz_log="$target/fuzz-build.log"
(
  export -f artifacts
  export target
  nice -n 19 bash -c artifacts >"$artifacts_log" 2>&1 || { echo failed >"$artifacts_log.failed"; }
  nice -n 19 scripts/fuzz.sh --build-only >"$fuzz_log" 2>&1 || { echo failed >"$fuzz_log.failed"; }
) &
builds=$!
rm -f "$artifacts_log.failed" "$fuzz_log.failed"

status=0
release_tests='binary_id(sb-e2e::images) | binary_id(sb-e2e::release)'
$cargo nextest run --workspace --no-fail-fast -E "not ($release_tests)" || status=$?

wait "$builds"
for log in "$artifacts_log" "$fuzz_log"; do
  if [[ -e "$log.failed" ]]; then
    echo "[test] a background build failed; the end of $log follows" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
done
$cargo nextest run --workspace --no-fail-fast -E "$release_tests" || status=$?
((status == 0)) || exit "$status"
scripts/fuzz.sh "${FUZZ_SHORT_SECONDS:-15}"
