#!/usr/bin/env bash
# Gateway overhead: the same echo upstream called directly and through `switchboard serve`
# (mounted in-process, and as a stdio child), with wrk sending stateless MCP 2026-07-28
# `tools/call` requests over HTTP. Reports calls/s at c=16, p50 at c=1, the added p50 latency,
# the throughput ratio, and the gateway's idle RSS. One run, one machine.
#
# The gateway cases run with the audit log off (peers have none), except `secure`: the
# in-process echo with every security layer on (API-key authentication, authorization,
# input validation, a local rate limit far above the load, and the durable SQLite audit log),
# whose ratio to `inproc` is the security layers' overhead.
#
# Usage: bench/gateway.sh [seconds per case, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
secs=${1:-10}
# SWITCHBOARD_BIN: measure that binary instead of building target/release/switchboard.
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release -p switchboard --quiet; fi
sb=${SWITCHBOARD_BIN:-$PWD/target/release/switchboard}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start NAME ARGS...: runs switchboard with ARGS in the background and sets $url once its
# "listening on …/mcp" line appears (runs in this shell, so cleanup knows every pid).
start() {
  local name=$1; shift
  "$sb" --log warn "$@" --listen 127.0.0.1:0 2>"$work/$name.err" &
  pids+=($!)
  echo $! >"$work/$name.pid"
  url=
  for _ in $(seq 1 400); do
    url=$(grep -o 'http://[0-9.:]*/mcp' "$work/$name.err" 2>/dev/null | head -n1 || true)
    [ -n "$url" ] && return 0
    sleep 0.05
  done
  echo "$name did not start" >&2; cat "$work/$name.err" >&2; exit 1
}

write_inproc_gateway_config "$work/inproc.toml"
write_stdio_gateway_config "$work/stdio.toml" "$sb"
cat >"$work/secure.toml" <<TOML
[[upstream]]
name = "echo"
builtin = { server = "echo" }
prefix = "never"
[security.auth]
api_keys_enabled = true
[security.authorization]
default = "deny"
[[security.authorization.policy]]
keys = ["bench"]
allow = ["echo"]
[security.validation]
[[security.rate_limit]]
name = "bench"
per = "identity"
limit = 100000000
window_secs = 1
TOML
# The same with the audit log's `durability = "process"` (no fsync per batch), and with the
# audit log off (authentication, authorization, validation and rate limits only).
{ echo '[audit]'; echo 'durability = "process"'; cat "$work/secure.toml"; } >"$work/secure-process.toml"
{ echo '[audit]'; echo 'enabled = false'; cat "$work/secure.toml"; } >"$work/secure-noaudit.toml"
mkdir -p "$work/secure-data" "$work/secure-process-data" "$work/secure-noaudit-data"
key=$("$sb" key create bench --data-dir "$work/secure-data" | grep -o 'sb_[A-Za-z0-9_-]*' | head -n1)
cp "$work/secure-data/api-keys.json" "$work/secure-process-data/"
cp "$work/secure-data/api-keys.json" "$work/secure-noaudit-data/"

start direct server echo --transport http; direct=$url
start inproc serve --config "$work/inproc.toml"; inproc=$url
start stdio serve --config "$work/stdio.toml"; stdio=$url
start secure serve --config "$work/secure.toml" --data-dir "$work/secure-data"; secure=$url
start securep serve --config "$work/secure-process.toml" --data-dir "$work/secure-process-data"; securep=$url
start securena serve --config "$work/secure-noaudit.toml" --data-dir "$work/secure-noaudit-data"; securena=$url

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$(cat "$work/$1.pid")/status"; }
idle_inproc_rss=$(rss_kb inproc)
idle_stdio_rss=$(rss_kb stdio)

run() { # label url conns [authorization]
  local out
  out=$(MCP_AUTHORIZATION="${4:-}" wrk -t "$([ "$3" -gt 1 ] && echo 2 || echo 1)" -c "$3" -d "${secs}s" -s bench/wrk/mcp-call-2026.lua "$2")
  local bad rps p50 p99
  bad=$(awk '/BAD_RESPONSES/ {print $2}' <<<"$out")
  rps=$(awk '/REQUESTS_PER_SEC/ {print $2}' <<<"$out")
  p50=$(awk '/LATENCY_P50_US/ {print $2}' <<<"$out")
  p99=$(awk '/LATENCY_P99_US/ {print $2}' <<<"$out")
  if [ "$bad" != "0" ]; then echo "$1: $bad bad responses" >&2; exit 1; fi
  echo "$1 $3 $rps $p50 $p99"
}

results=$work/results
{
  run direct "$direct" 1
  run inproc "$inproc" 1
  run stdio "$stdio" 1
  run secure "$secure" 1 "Bearer $key"
  run securep "$securep" 1 "Bearer $key"
  run securena "$securena" 1 "Bearer $key"
  run direct "$direct" 16
  run inproc "$inproc" 16
  run stdio "$stdio" 16
  run secure "$secure" 16 "Bearer $key"
  run securep "$securep" 16 "Bearer $key"
  run securena "$securena" 16 "Bearer $key"
} | tee "$results"

mkdir -p target/bench
cp "$results" target/bench/gateway.txt
python3 - "$results" "$idle_inproc_rss" "$idle_stdio_rss" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, c, rps, p50, p99 = line.split()
    rows[(label, int(c))] = (float(rps), int(p50), int(p99))
print()
print("| setup | c | calls/s | p50 µs | p99 µs | vs direct |")
print("|---|---|---|---|---|---|")
names = {"direct": "echo server directly", "inproc": "gateway → in-process echo", "stdio": "gateway → stdio echo child", "secure": "gateway → in-process echo, all security layers + audit (fsync)", "securep": "gateway → in-process echo, all security layers + audit (durability = process)", "securena": "gateway → in-process echo, security layers without the audit log"}
for c in (1, 16):
    d = rows[("direct", c)]
    for label in ("direct", "inproc", "stdio", "secure", "securep", "securena"):
        r = rows[(label, c)]
        extra = "" if label == "direct" else (f"+{r[1] - d[1]} µs p50" if c == 1 else f"{r[0] / d[0]:.2f}× throughput")
        print(f"| {names[label]} | {c} | {r[0]:.0f} | {r[1]} | {r[2]} | {extra} |")
i = rows[("inproc", 16)]
print()
for label, what in (("secure", "audit fsynced"), ("securep", "audit durability = process"), ("securena", "no audit log")):
    s = rows[(label, 16)]
    print(f"Security layers on vs off ({what}), c=16: {s[0] / i[0]:.2f}× throughput; c=1: +{rows[(label, 1)][1] - rows[('inproc', 1)][1]} µs p50")
print()
print(f"Gateway idle RSS: {int(sys.argv[2]) / 1024:.1f} MiB (in-process echo), {int(sys.argv[3]) / 1024:.1f} MiB (stdio echo; the child not counted)")
PY
