#!/usr/bin/env bash
# Soak: `switchboard serve` in front of a stdio echo child, driven at a high sustainable rate
# by `switchboard bench` for a long time, with the gateway's memory sampled every 10 s.
#
# The load runs in chunks of up to 30 s; each chunk is one `switchboard bench --url … --json`
# with C concurrent workers, each on its own MCP session (so sessions are opened and closed
# every chunk too, as clients come and go). Every 10 s a sampler writes the gateway's VmRSS
# and RssAnon (from /proc), the echo child's VmRSS, the gateway's thread count, its
# `switchboard_runtime_alive_tasks` gauge and both processes' CPU time to
# target/bench/soak.csv; the chunks' results go
# to target/bench/soak.jsonl. bench/soak_report.py then fits a line to the RSS after the
# warm-up, renders the chart (bench/soak.svg for a run of 5 minutes or more, else
# target/bench/soak.svg) and decides:
#
#   fails (non-zero) on any call error (a chunk's `switchboard bench` exits non-zero on the
#   first one), or when the fitted RSS growth over the run after the warm-up exceeds
#   SOAK_MAX_GROWTH_MIB (default 8 MiB; the warm-up is the first 20% of the run, 10 s to
#   300 s). See BENCHMARKS.md ("Soak") for why that bound.
#
# The audit log is off (as in bench/gateway.sh): on, it would add a SQLite file growing by
# gigabytes over 30 minutes, which is the store's size, not the gateway's memory.
#
# Usage: bench/soak.sh [seconds, default 1800] [concurrency, default 16]
#   SWITCHBOARD_BIN=target/debug/switchboard bench/soak.sh 60     # CI: one minute, debug build
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
secs=${1:-1800}
conc=${2:-16}
interval=10
# SWITCHBOARD_BIN: soak that binary instead of building target/release/switchboard.
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release -p switchboard --quiet; fi
sb=$(realpath "${SWITCHBOARD_BIN:-target/release/switchboard}")
out=target/bench
mkdir -p "$out"
csv=$out/soak.csv
jsonl=$out/soak.jsonl
work=$(mktemp -d)
gw=
sampler=
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  [ -n "$gw" ] && kill "$gw" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

write_stdio_gateway_config "$work/soak.toml" "$sb"
"$sb" --log warn serve --config "$work/soak.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
  2>"$work/gateway.err" &
gw=$!
url=
for _ in $(seq 1 600); do
  url=$(grep -o 'http://[0-9.:]*/mcp' "$work/gateway.err" 2>/dev/null | head -n1 || true)
  [ -n "$url" ] && break
  kill -0 "$gw" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$url" ]; then echo "soak: the gateway did not start" >&2; cat "$work/gateway.err" >&2; exit 1; fi
base=${url%/mcp}
child=$(ps -o pid= --ppid "$gw" | head -n1 | tr -d ' ')

kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || true; }
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat, counted
# after the parenthesised command name, which may contain spaces).
cpu() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || true; }
started=$(date +%s.%N)
elapsed() { awk -v s="$started" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}'; }
sample() {
  local tasks
  tasks=$(curl -s --max-time 5 "$base/metrics" | awk '$1 == "switchboard_runtime_alive_tasks" {print $2}' || true)
  echo "$(elapsed),$(kb "$gw" VmRSS),$(kb "$gw" RssAnon),$(kb "${child:-0}" VmRSS),$(kb "$gw" Threads),${tasks},$(cpu "$gw"),$(cpu "${child:-0}")"
}
echo "seconds,gateway_rss_kb,gateway_anon_kb,child_rss_kb,threads,alive_tasks,gateway_cpu_ticks,child_cpu_ticks" >"$csv"
: >"$jsonl"
load_before=$(cut -d' ' -f1 /proc/loadavg)
# The sampler: a sample now (idle), then one every $interval s until it is stopped.
(
  while :; do
    sample >>"$csv"
    sleep "$interval"
  done
) &
sampler=$!

echo "soak: $secs s at c=$conc against $url (gateway pid $gw, echo child pid ${child:-?}); samples in $csv"
deadline=$(awk -v s="$started" -v d="$secs" 'BEGIN {printf "%.0f", s + d}')
chunks=0
while :; do
  left=$((deadline - $(date +%s)))
  [ "$left" -le 0 ] && break
  chunk=$((left < 30 ? left : 30))
  if ! "$sb" --log error bench --url "$url" --tool echo --args '{"message":"soak"}' \
    --concurrency "$conc" --duration "$chunk" --warmup 0 --label soak --json >>"$jsonl" 2>"$work/bench.err"; then
    echo "soak: FAILED after $(elapsed) s: a call failed" >&2
    cat "$work/bench.err" >&2
    exit 1
  fi
  chunks=$((chunks + 1))
done
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
sample >>"$csv"
load_after=$(cut -d' ' -f1 /proc/loadavg)
kill -0 "$gw" 2>/dev/null || { echo "soak: the gateway died" >&2; cat "$work/gateway.err" >&2; exit 1; }

# Runs of 5 minutes or more draw bench/soak.svg, the chart BENCHMARKS.md shows; shorter ones
# (CI's minute) leave it alone and draw target/bench/soak.svg.
svg=target/bench/soak.svg
[ "$secs" -ge 300 ] && svg=bench/soak.svg
python3 bench/soak_report.py "$csv" "$jsonl" "$svg" \
  --seconds "$secs" --concurrency "$conc" --clk-tck "$(getconf CLK_TCK)" \
  --load "$load_before → $load_after" --max-growth-mib "${SOAK_MAX_GROWTH_MIB:-8}"
