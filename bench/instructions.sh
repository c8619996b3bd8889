#!/usr/bin/env bash
# Instructions per tools/call in a gateway's own process, counted by valgrind's callgrind:
# Switchboard (stdio echo upstream) and, when bench/peers.sh has installed it, the Rust
# `mcp-proxy` in front of the same echo. Unlike calls/s on a shared 2-core machine, the count
# repeats to within a fraction of a percent from run to run, so small changes to the gateway
# can be compared (A/B: run it with SWITCHBOARD_BIN set to each build).
#
# Method: the gateway runs under callgrind (its stdio child does not), `switchboard bench
# --wire --url` sends N calls at c=16 in the session era, the gateway is stopped and its total
# is read; two runs (N = 500 and 2500) are subtracted, so start-up, the 16 sessions' handshakes
# and shutdown cancel out: per call = (total(2500) - total(500)) / 2000. User-space instructions
# only: the kernel's share (syscalls, wake-ups) is not counted.
#
# Usage: [SWITCHBOARD_BIN=path] [SERVE_ARGS="--direct-calls false"] bench/instructions.sh
# (about 2 minutes; SERVE_ARGS are added to `switchboard serve`'s arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)" >&2; exit 1; }
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release -p switchboard --bin switchboard --quiet
fi
sb=${SWITCHBOARD_BIN:-$PWD/target/release/switchboard}
echo_bin=${ECHO_BIN:-$sb}
rs_proxy=$PWD/target/peers/cargo/bin/mcp-proxy

# total KIND BIN CALLS: the gateway process's instruction count for a run of CALLS calls.
total() {
  local kind=$1 bin=$2 calls=$3 work url tool port vg i
  work=$(mktemp -d)
  case $kind in
    switchboard)
      write_stdio_gateway_config "$work/gateway.toml" "$echo_bin"
      valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" --log warn serve \
        --config "$work/gateway.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
        ${SERVE_ARGS:-} >"$work/log" 2>&1 &
      vg=$!
      url=$(listening_url "$work/log" 60 || true)
      tool=echo ;;
    mcp-proxy)
      port=$(free_port)
      write_mcp_proxy_config "$work/proxy.toml" "$port" "$echo_bin"
      RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" \
        --config "$work/proxy.toml" >"$work/log" 2>&1 &
      vg=$!
      for i in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
      done
      url="http://127.0.0.1:$port/"; tool=echo/echo ;;
  esac
  if [ -z "$url" ]; then cat "$work/log" >&2; kill "$vg" 2>/dev/null; exit 1; fi
  "$sb" --log error bench --wire --url "$url" --tool "$tool" --args '{"message":"hello"}' \
    --calls "$calls" --concurrency 16 --warmup 0 >/dev/null
  kill -INT "$vg"
  wait "$vg" 2>/dev/null || true
  grep -h '^totals:\|^summary:' "$work"/cg.out* | head -n1 | awk '{print $2}'
  rm -rf "$work"
}

per_call() {
  local small big
  small=$(total "$1" "$2" 500)
  big=$(total "$1" "$2" 2500)
  echo $(((big - small) / 2000))
}

ours=$(per_call switchboard "$sb")
echo "| gateway | instructions per tools/call (gateway process, user space) |"
echo "|---|---|"
echo "| Switchboard → stdio echo | $ours |"
if [ -x "$rs_proxy" ]; then
  theirs=$(per_call mcp-proxy "$rs_proxy")
  echo "| mcp-proxy (Rust) → stdio echo | $theirs |"
  python3 -c "import sys; print(f'\nSwitchboard ÷ mcp-proxy: {int(sys.argv[1]) / int(sys.argv[2]):.2f}× the instructions')" "$ours" "$theirs"
else
  echo "(mcp-proxy not installed: bench/peers.sh installs it into target/peers/cargo)" >&2
fi
