#!/usr/bin/env bash
# Direct session calls, A/B: `switchboard serve --direct-calls true` (a session-era tools/call
# answered in the HTTP connection's task) against `--direct-calls false` (every request through
# rmcp's session worker), same binary, same run. Two upstreams: the echo server as a stdio
# child and mounted in-process; audit log off. The client is `switchboard bench --wire --url`
# in the session era (one session per worker), at c = 1 and 16, REPS repetitions interleaved
# (on, off, on, off, ...), with the gateway process's CPU per call (`--server-pid`).
#
# Output: one Markdown row per case with the median and the range of the repetitions, and the
# on/off ratio of the medians.
#
# Usage: [SWITCHBOARD_BIN=path] [REPS=3] bench/direct.sh [seconds per run, default 4]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
secs=${1:-4}
reps=${REPS:-3}
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release -p switchboard --bin switchboard --quiet
fi
sb=$(realpath "${SWITCHBOARD_BIN:-target/release/switchboard}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
write_stdio_gateway_config "$work/stdio.toml" "$sb"
write_inproc_gateway_config "$work/inproc.toml"

results=$work/results.jsonl
for rep in $(seq 1 "$reps"); do
  for upstream in stdio inproc; do
    for direct in true false; do
      start_gateway "$sb" "$work/$upstream.toml" "$work" --direct-calls "$direct"
      gateway=$GATEWAY_PID url=$GATEWAY_URL
      for c in 1 16; do
        "$sb" --log error bench --json --wire --era initialize --url "$url" --tool echo \
          --args '{"message":"hello"}' --concurrency "$c" --duration "$secs" \
          --server-pid "$gateway" | tail -n1 |
          python3 -c 'import json,sys; d=json.load(sys.stdin); d.update(upstream=sys.argv[1], direct=sys.argv[2]); print(json.dumps(d))' \
            "$upstream" "$direct" >>"$results"
      done
      kill "$gateway"
      wait "$gateway" 2>/dev/null || true
    done
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def pick(upstream, direct, c, key):
    return [r[key] for r in rows if r["upstream"] == upstream and r["direct"] == direct and r["concurrency"] == c]
def fmt(values, digits=0):
    m = statistics.median(values)
    return f"{m:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"
print("| upstream | c | direct on: calls/s | direct off: calls/s | on ÷ off | gateway CPU µs/call on | off | p50 µs on | off |")
print("|---|---|---|---|---|---|---|---|---|")
for upstream, label in (("stdio", "stdio echo child"), ("inproc", "in-process echo")):
    for c in (1, 16):
        on, off = pick(upstream, "true", c, "calls_per_sec"), pick(upstream, "false", c, "calls_per_sec")
        ratio = statistics.median(on) / statistics.median(off)
        print(f"| {label} | {c} | {fmt(on)} | {fmt(off)} | {ratio:.2f}× "
              f"| {fmt(pick(upstream, 'true', c, 'server_cpu_us_per_call'), 1)} "
              f"| {fmt(pick(upstream, 'false', c, 'server_cpu_us_per_call'), 1)} "
              f"| {fmt(pick(upstream, 'true', c, 'p50_us'))} | {fmt(pick(upstream, 'false', c, 'p50_us'))} |")
PY
