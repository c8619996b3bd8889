#!/usr/bin/env bash
# Where a gateway's CPU per call goes, beside the Rust `mcp-proxy`: user and system CPU time,
# context switches and the main syscalls per call, of the gateway process alone (its stdio
# echo child not counted), each gateway in front of the same stdio echo at c=16, session era,
# `switchboard bench --wire`. Switchboard runs with `--direct-calls true` and `false`;
# `mcp-proxy` runs when bench/peers.sh has installed it. Counts come from `perf stat` on the
# gateway's pid (software events and tracepoints: they work without hardware counters, which
# this VM lacks), CPU times from /proc/PID/stat.
#
# Usage: [SWITCHBOARD_BIN=path] bench/percall.sh [seconds, default 5]     (needs perf)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
command -v perf >/dev/null || { echo "perf is needed (Debian: apt-get install linux-perf)" >&2; exit 1; }
secs=${1:-5}
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release -p switchboard --bin switchboard --quiet
fi
sb=$(realpath "${SWITCHBOARD_BIN:-target/release/switchboard}")
rs_proxy=$PWD/target/peers/cargo/bin/mcp-proxy
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
events=context-switches,task-clock,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# measure NAME PID URL TOOL: one row for the gateway PID under load.
measure() {
  local name=$1 pid=$2 url=$3 tool=$4 out calls u0 s0 u1 s1 hz
  hz=$(getconf CLK_TCK)
  "$sb" --log error bench --json --wire --era initialize --url "$url" --tool "$tool" \
    --args '{"message":"hello"}' --concurrency 16 --duration 1 >/dev/null
  read -r u0 s0 < <(ticks "$pid")
  perf stat -e "$events" -p "$pid" -x, -o "$work/stat.txt" -- sleep $((secs + 1)) &
  local stat=$!
  out=$("$sb" --log error bench --json --wire --era initialize --url "$url" --tool "$tool" \
    --args '{"message":"hello"}' --concurrency 16 --duration "$secs" | tail -n1)
  wait "$stat"
  read -r u1 s1 < <(ticks "$pid")
  calls=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"])')
  python3 - "$name" "$calls" "$((u1 - u0))" "$((s1 - s0))" "$hz" "$work/stat.txt" <<'PY'
import sys
name, calls, user, system, hz, stat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
counts = {}
for line in open(stat):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].replace(".", "").isdigit():
        counts[fields[2].replace("syscalls:sys_enter_", "")] = float(fields[0])
per = lambda key: counts.get(key, 0) / calls
sys_calls = sum(per(k) for k in ("write", "writev", "read", "recvfrom", "epoll_wait", "futex"))
print(f"| {name} | {calls:,} | {user * 1e6 / hz / calls:.0f} | {system * 1e6 / hz / calls:.0f} "
      f"| {per('context-switches'):.2f} | {sys_calls:.1f} (write {per('write'):.2f}, writev {per('writev'):.2f}, "
      f"read {per('read'):.2f}, recvfrom {per('recvfrom'):.2f}, epoll_wait {per('epoll_wait'):.2f}, futex {per('futex'):.2f}) |")
PY
}

echo "| gateway → stdio echo, c=16 | calls in ${secs} s | user µs/call | system µs/call | context switches/call | syscalls/call |"
echo "|---|---|---|---|---|---|"
write_stdio_gateway_config "$work/gateway.toml" "$sb"
for direct in true false; do
  start_gateway "$sb" "$work/gateway.toml" "$work" --direct-calls "$direct"
  measure "Switchboard, --direct-calls $direct" "$GATEWAY_PID" "$GATEWAY_URL" echo
  kill "$GATEWAY_PID"
  wait "$GATEWAY_PID" 2>/dev/null || true
done
if [ -x "$rs_proxy" ]; then
  port=$(free_port)
  write_mcp_proxy_config "$work/proxy.toml" "$port" "$sb"
  RUST_LOG=warn "$rs_proxy" --config "$work/proxy.toml" >"$work/proxy.log" 2>&1 &
  proxy=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  measure "mcp-proxy 0.6.0 (Rust)" "$proxy" "http://127.0.0.1:$port/" echo/echo
  kill "$proxy"
  wait "$proxy" 2>/dev/null || true
fi
