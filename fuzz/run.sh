#!/usr/bin/env bash
# Runs every fuzz target, one after the other on one core, to the same number of executions,
# then prints one summary line per target; exits 1 if any target crashed. New inputs go to
# corpus/<target>/, crashes to artifacts/<target>/, each run's log to target/logs/<target>.log.
#
#   fuzz/run.sh [runs] [target...]     default: 10000000 runs, every target
#
# Needs a nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if it is
# missing. Run it under `nice` on a shared machine. Minimise a corpus after a long run with
# `cargo +nightly fuzz cmin -s none <target>`.
#
# SANITIZER (default none) picks cargo-fuzz's sanitizer. The targets are safe Rust, where a
# memory error cannot happen outside `unsafe`, and AddressSanitizer runs them 3-5x slower;
# set SANITIZER=address to run with it.
set -euo pipefail
cd "$(dirname "$0")"

runs="${1:-10000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(jsonrpc_lines sse_parser fs_paths sql_classifier)
fi
# Long enough for each format's interesting cases (the SSE target's event limit is 4096 bytes).
declare -A max_len=([jsonrpc_lines]=4096 [sse_parser]=8192 [fs_paths]=4096 [sql_classifier]=4096)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
sanitizer="${SANITIZER:-none}"
cargo +nightly fuzz build -s "$sanitizer"

# One of libFuzzer's final statistics (-print_final_stats=1) from a log.
final_stat() { grep -a "^stat::$2:" "$1" | awk '{print $2}' | tail -n 1; }

mkdir -p target/logs
summary=()
failed=0
for t in "${targets[@]}"; do
    log="target/logs/$t.log"
    echo "== $t: $runs runs (log: fuzz/$log)"
    start=$(date +%s)
    status=0
    cargo +nightly fuzz run -s "$sanitizer" "$t" -- -runs="$runs" -max_len="${max_len[$t]:-4096}" \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    wall=$(($(date +%s) - start))
    # The last status line, e.g. "#10000000 DONE cov: 524 ft: 2064 corp: 404/25Kb ...".
    last=$(grep -a -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -E -n 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -E -n 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    files=$(find "corpus/$t" -type f | wc -l)
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=1
        failed=1
        tail -n 40 "$log"
    fi
    summary+=("$(printf '%-15s runs=%s exec/s=%s wall=%ss cov=%s ft=%s corpus=%s crashes=%s' \
        "$t" "$(final_stat "$log" number_of_executed_units)" \
        "$(final_stat "$log" average_exec_per_sec)" "$wall" \
        "${cov:-?}" "${ft:-?}" "$files" "$crashes")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
