#!/usr/bin/env bash
# Filesystem server benchmark: Switchboard's fs server against the official
# @modelcontextprotocol/server-filesystem (npm), both driven over stdio by the same client
# (`switchboard bench`), in one run. Prints a Markdown table with the ratio per case and writes
# the raw JSON lines to target/bench/fs.jsonl.
#
# Usage: bench/fs.sh            (about 3-5 minutes on 2 cores, most of it the official server's
#                                 100,000-file searches)
set -euo pipefail
cd "$(dirname "$0")/.."
# SWITCHBOARD_BIN: measure that binary instead of building target/release/switchboard.
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release -p switchboard --quiet; fi
npm ci --prefix bench --no-audit --no-fund --silent
fixture=target/bench/fs-fixture
mkdir -p "$fixture"
python3 bench/make_fs_fixture.py "$fixture"
fixture=$(cd "$fixture" && pwd)
out=target/bench/fs.jsonl
: > "$out"
sb=${SWITCHBOARD_BIN:-target/release/switchboard}
official=(node bench/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js "$fixture")
ours=("$sb" server fs --root "$fixture" --log warn)

case_run() { # label tool args calls warmup concurrency
  local name=$1 tool=$2 args=$3 calls=$4 warmup=$5 conc=$6
  "$sb" bench --json --label "switchboard" --tool "$tool" --args "$args" --calls "$calls" \
    --warmup "$warmup" --concurrency "$conc" -- "${ours[@]}" | sed "s/^{/{\"case\":\"$name\",/" >> "$out"
  "$sb" bench --json --label "official" --tool "$tool" --args "$args" --calls "$calls" \
    --warmup "$warmup" --concurrency "$conc" -- "${official[@]}" | sed "s/^{/{\"case\":\"$name\",/" >> "$out"
}

case_run "read_text_file 4 KiB"   read_text_file "{\"path\":\"$fixture/read/4k.txt\"}" 5000 500 1
case_run "read_text_file 4 KiB"   read_text_file "{\"path\":\"$fixture/read/4k.txt\"}" 10000 500 8
case_run "list_directory 1,000"   list_directory "{\"path\":\"$fixture/list\"}" 2000 100 1
case_run "search_files 100k"      search_files "{\"path\":\"$fixture/tree\",\"pattern\":\"**/needle-*.txt\"}" 5 1 1
"$sb" bench --json --label "switchboard" --tool search_file_contents \
  --args "{\"path\":\"$fixture/tree\",\"pattern\":\"NEEDLE\"}" --calls 10 --warmup 1 \
  -- "${ours[@]}" | sed 's/^{/{"case":"search_file_contents 100k",/' >> "$out"

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["case"], r["concurrency"]), {})[r["label"]] = r
print("| case | c | Switchboard calls/s | official calls/s | ratio | Switchboard p50 / p99 µs | official p50 / p99 µs |")
print("|---|---|---|---|---|---|---|")
for (case, c), v in by.items():
    s, o = v.get("switchboard"), v.get("official")
    if o:
        ratio = f"{s['calls_per_sec'] / o['calls_per_sec']:.1f}×"
        print(f"| {case} | {c} | {s['calls_per_sec']:.0f} | {o['calls_per_sec']:.1f} | {ratio} | {s['p50_us']} / {s['p99_us']} | {o['p50_us']} / {o['p99_us']} |")
    else:
        print(f"| {case} | {c} | {s['calls_per_sec']:.1f} | (no such tool) | — | {s['p50_us']} / {s['p99_us']} | — |")
PY
