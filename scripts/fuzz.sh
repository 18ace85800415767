#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ and runs each for a set time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 600; TARGET defaults to every target (`cargo fuzz list`).
# Each target starts from its checked-in corpus (fuzz/corpus/TARGET, read only); inputs that
# find new coverage go to fuzz/target/corpus-new/TARGET (see fuzz/README.md for folding them in).
# Prints each target's executions and coverage from libFuzzer's final lines, and any crash with
# the input that caused it (fuzz/artifacts/TARGET/), then a Markdown table of the runs (the one
# docs/TESTING.md shows). Exits 1 when a target found something.
#
# Environment:
#   VEXFS_FUZZ_SANITIZER  address (default) or none
#   VEXFS_FUZZ_LOG_DIR    where each target's full libFuzzer log goes (default fuzz/target/logs)
#   VEXFS_FUZZ_RUNS       also stop a target after this many executions (-runs)
#
# The machines have only the stable toolchain: cargo-fuzz passes nightly-only flags to rustc
# (-Zsanitizer=address, sanitizer coverage), which RUSTC_BOOTSTRAP=1 lets stable accept.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${1:-600}"
shift || true
SANITIZER="${VEXFS_FUZZ_SANITIZER:-address}"
LOG_DIR="${VEXFS_FUZZ_LOG_DIR:-target/logs}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is missing; run scripts/setup.sh (cargo install cargo-fuzz --locked)" >&2
    exit 1
fi

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

# One build of every target: release, debug assertions and overflow checks on (cargo-fuzz's
# default), the chosen sanitizer.
echo "=== fuzz: building the targets (sanitizer: $SANITIZER)"
BUILD_START=$SECONDS
cargo fuzz build --sanitizer "$SANITIZER"
echo "fuzz: built in $((SECONDS - BUILD_START)) s"

BIN_DIR="target/x86_64-unknown-linux-gnu/release"
mkdir -p "$LOG_DIR"
LIMITS=(-max_total_time="$SECONDS_PER_TARGET")
if [ -n "${VEXFS_FUZZ_RUNS:-}" ]; then
    LIMITS+=(-runs="$VEXFS_FUZZ_RUNS")
fi
FAILED=()
for target in "${TARGETS[@]}"; do
    mkdir -p "target/corpus-new/$target" "artifacts/$target" "corpus/$target"
    log="$LOG_DIR/$target.log"
    echo "=== fuzz: $target for $SECONDS_PER_TARGET s (log: $log, relative to fuzz/)"
    status=0
    # -timeout: an input taking 10 s is a hang; -rss_limit_mb: a target above 2 GiB is a finding.
    "$BIN_DIR/$target" "target/corpus-new/$target" "corpus/$target" \
        "${LIMITS[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs|^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" \
        | sed "s/^/$target: /" || true
    if [ "$status" -ne 0 ]; then
        FAILED+=("$target")
        echo "fuzz: $target FAILED (exit $status); the end of its log:"
        tail -n 40 "$log"
        ls -1 "artifacts/$target" | sed 's/^/  artifact: fuzz\/artifacts\/'"$target"'\//'
    fi
done

# One Markdown row per target from libFuzzer's own final lines (docs/TESTING.md pastes these).
echo
echo "| target | seconds | executions | executions/s | coverage at the end | peak RSS (MB) | result |"
echo "|---|---|---|---|---|---|---|"
for target in "${TARGETS[@]}"; do
    log="$LOG_DIR/$target.log"
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb:[[:space:]]*//p' "$log" | tail -n 1)
    cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [^ ]+).*/\1/')
    result="no finding"
    if printf '%s\n' "${FAILED[@]}" | grep -qx "$target"; then
        result="FINDING"
    fi
    echo "| \`$target\` | ${runs#* } | ${runs% *} | $rate | $cov | $rss | $result |"
done
echo

if [ "${#FAILED[@]}" -ne 0 ]; then
    echo "fuzz: findings in ${FAILED[*]}" >&2
    exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets ran $SECONDS_PER_TARGET s each without a finding"
