#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (docs/reliability.md, "Fuzzing") for a bounded time, one
# after the other, and fails if any of them found a crash.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # or FUZZ_SECONDS=SECONDS; default 120 per target
#   scripts/fuzz.sh --build-only              # install and build only
#   SB_FUZZ_PROFILE=dev scripts/fuzz.sh ...   # unoptimised build (make test's short pass)
#
# Installs cargo-fuzz when it is missing (like scripts/ensure-tools.sh does for cargo-nextest)
# and builds with the nightly toolchain (`cargo +nightly`), which libFuzzer's instrumentation
# needs. Each target starts from its committed seeds (fuzz/corpus/<target>, only read) plus
# what earlier runs on this machine grew (fuzz/.work/corpus/<target>, gitignored); a crashing
# input lands in fuzz/artifacts/<target>/ and the run ends non-zero after the other targets
# ran. Per target it prints the seconds run, executions, corpus size and crashes found.
#
# The build (every dependency instrumented, so the first one takes long) is kept outside the
# repository, like scripts/kube.sh's binaries, so fresh clones (CI) reuse it:
# $SB_FUZZ_TARGET_DIR, else ~/.cache/secrets-bridge/fuzz-target-<sanitizer>.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# --build-only: install and build, run nothing (`make test` builds in the background while
# its tests run, then runs the short pass).
build_only=0
if [[ ${1:-} == --build-only ]]; then build_only=1; shift; fi
seconds=${1:-${FUZZ_SECONDS:-120}}
shift $(($# > 0 ? 1 : 0))
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS] [TARGET...] (SECONDS a whole number > 0)" >&2; exit 2; }

log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  log "installing the nightly toolchain (rustup, minimal profile): cargo-fuzz builds with it"
  rustup toolchain install nightly --profile minimal >&2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

cd "$root"
started=$(date +%s)
# Without a sanitizer: the code under test is safe Rust, where a bad index or an overflow is a
# panic, which libFuzzer reports as a crash; an AddressSanitizer build takes about twice as long to
# compile and run (SB_FUZZ_SANITIZER=address for one).
sanitizer="${SB_FUZZ_SANITIZER:-none}"
# SB_FUZZ_PROFILE=dev builds without optimisation (`cargo fuzz build --dev`, debug assertions
# and overflow checks on): a third of the cold build's CPU time for a few times fewer
# executions a second, the trade the short pass of `make test` makes. Default: release.
profile="${SB_FUZZ_PROFILE:-release}"
case $profile in
  release) profile_flag=(); profile_dir=release; suffix="" ;;
  dev) profile_flag=(--dev); profile_dir=debug; suffix="-dev" ;;
  *) echo "SB_FUZZ_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
# One cache per sanitizer and profile: switching would otherwise rebuild every dependency.
target_dir="${SB_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/secrets-bridge/fuzz-target-$sanitizer$suffix}"
log "building the fuzz targets (cargo +nightly fuzz build --sanitizer $sanitizer ${profile_flag[*]}, into $target_dir)"
cargo +nightly fuzz build --sanitizer "$sanitizer" "${profile_flag[@]}" --target-dir "$target_dir"
built=$(date +%s)
if ((build_only)); then
  log "built in $((built - started))s"
  exit 0
fi
bin_dir="$target_dir/x86_64-unknown-linux-gnu/$profile_dir"
work="$root/fuzz/.work"

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

rows=()
failed=()
for target in "${targets[@]}"; do
  [[ -x "$bin_dir/$target" ]] || { log "no fuzz target named $target (cargo fuzz list)"; exit 2; }
  corpus="$work/corpus/$target"
  artifacts="$root/fuzz/artifacts/$target"
  output="$work/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$output")"
  before=$(find "$artifacts" -type f | sort)
  log "$target: ${seconds}s"
  t0=$(date +%s)
  # One process, one worker: the machine has other work to do. New inputs go to the first
  # corpus directory, so the committed seeds are only read.
  status=0
  # As `cargo fuzz run` sets it: Rust's generics trip ASan's ODR check for nothing.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}" "$bin_dir/$target" "$corpus" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$output" 2>&1 || status=$?
  ran=$(($(date +%s) - t0))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$output" | tail -n 1)
  size=$(find "$corpus" -type f | wc -l)
  seeds=$(find "fuzz/corpus/$target" -type f | wc -l)
  found=$(comm -13 <(printf '%s\n' "$before") <(find "$artifacts" -type f | sort) | sed '/^$/d')
  crashes=$(printf '%s' "$found" | grep -cE '/(crash|oom|timeout|leak)-' || true)
  if ((status != 0)); then
    ((crashes > 0)) || crashes="?"
    failed+=("$target")
    log "$target FAILED (exit $status): the end of $output follows"
    tail -n 40 "$output" >&2
    while read -r input; do
      [[ -n $input ]] && log "  reproduce: $bin_dir/$target $input   (or: cargo +nightly fuzz run $target $input)"
    done <<<"$found"
  fi
  rows+=("$(printf '%-18s %6s %12s %8s %8s' "$target" "$ran" "${execs:-?}" "$size+$seeds" "$crashes")")
done

printf '\n%-18s %6s %12s %8s %8s\n' target seconds executions corpus crashes
printf '%s\n' "${rows[@]}"
printf '(corpus: inputs grown in fuzz/.work/corpus + committed seeds)\n'
printf 'build %ss, fuzzing %ss, total %ss\n' "$((built - started))" "$(($(date +%s) - built))" "$(($(date +%s) - started))"
if ((${#failed[@]} > 0)); then
  log "crashes in: ${failed[*]} (inputs under fuzz/artifacts/; make each a regression test, see docs/reliability.md)"
  exit 1
fi
log "no crashes"
