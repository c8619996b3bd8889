#!/usr/bin/env bash
# Memory with many session-era sessions held: starts `switchboard serve` (the in-process echo,
# audit off) and opens N Streamable HTTP 2025-11-25 sessions on it (initialize + initialized,
# then idle), then reports the gateway's RSS before and with them held, and checks a sample of
# them still answers. Target (issue 11): 10,000 sessions in <= 300 MB.
#
# The gateway runs with its default --max-sessions (1024 held in memory; past that the least
# recently used idle session leaves memory and resumes from its sealed id), so every one of the
# N sessions is then used once (tools/list) to prove it still answers. MAX_SESSIONS=all keeps
# all N in memory instead (the cap raised to N + 100), MAX_SESSIONS=K sets the cap.
#
# With IDLE_SECS set, sessions leave memory after that long idle (--session-idle-secs), and
# the run also reports RSS once they have, and whether they resume from their sealed ids.
#
# Usage: [MAX_SESSIONS=all|K] [IDLE_SECS=N] bench/sessions.sh [sessions, default 10000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release -p switchboard --quiet; fi
sb=${SWITCHBOARD_BIN:-$PWD/target/release/switchboard}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cat >"$work/gw.toml" <<TOML
[audit]
enabled = false
[[upstream]]
name = "echo"
builtin = { server = "echo" }
TOML
case "${MAX_SESSIONS:-}" in
  "") cap=() ;;
  all) cap=(--max-sessions $((n + 100))) ;;
  *) cap=(--max-sessions "$MAX_SESSIONS") ;;
esac
# Sessions idle for the whole run must not be reaped by the idle timeout.
"$sb" --log warn serve --config "$work/gw.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
  "${cap[@]}" --session-idle-secs "${IDLE_SECS:-3600}" 2>"$work/gw.err" &
pid=$!
url=
for _ in $(seq 1 400); do
  url=$(grep -o 'http://[0-9.:]*/mcp' "$work/gw.err" 2>/dev/null | head -n1 || true)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "gateway did not start" >&2; cat "$work/gw.err" >&2; exit 1; }
python3 bench/sessions.py "$url" "$pid" "$n" ${IDLE_SECS:+--after-idle}
