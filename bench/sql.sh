#!/usr/bin/env bash
# SQL server benchmark (issue 3): Switchboard's SQL server against the official, archived
# `mcp-server-sqlite` (PyPI, pinned in bench/requirements-sqlite.txt, in its own venv because it
# needs mcp<2), on the same SQLite file, both driven over stdio by the same client
# (`switchboard bench`), in one run. Cases: a point lookup by primary key and a 1,000-row
# SELECT, each with the rmcp client (which decodes every answer into typed values) and with
# `--wire` (which checks every answer's JSON, id and isError but skips its content, so the
# client's decoding is not what is measured), at c=1 and c=8 (the 1,000-row case with the
# rmcp client at c=1 only). Each line also gives the server process's CPU time per call, which the client and
# the rest of the machine do not affect. Prints a Markdown table with the ratios per case (target: >= 10x)
# and writes the raw JSON lines to target/bench/sql.jsonl.
#
# Usage: [SWITCHBOARD_BIN=path] bench/sql.sh
#   (about 1.5 minutes on 2 cores after the build; 4-5 s per server and case)
# Scale every call count with SQL_BENCH_SCALE (e.g. 0.2 for a quick look, 2 for steadier numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
# SWITCHBOARD_BIN: a binary to measure instead of building the release one.
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release -p switchboard --quiet
fi

venv=target/bench/sqlite-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements-sqlite.txt

db=target/bench/sql.db
python3 bench/make_sql_fixture.py "$db"
db="$(cd "$(dirname "$db")" && pwd)/$(basename "$db")"
out=target/bench/sql.jsonl
: > "$out"
sb=${SWITCHBOARD_BIN:-target/release/switchboard}
ours=("$sb" server sql --url "sqlite://$db" --log warn)
official=("$venv/bin/mcp-server-sqlite" --db-path "$db")

point_sql="SELECT * FROM items WHERE id = 4242"
rows_sql="SELECT * FROM items WHERE id <= 1000"

# The official server reports SQL errors as ordinary text (no isError), which the bench client
# would count as successes; so first check, once per server and case, that the answer holds the
# expected rows.
"$venv/bin/python" - "$point_sql" "$rows_sql" "$sb" "$db" "$venv" <<'PY'
import ast, asyncio, os, sys
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

point_sql, rows_sql, sb, db, venv = sys.argv[1:6]
ours = [sb, "server", "sql", "--url", f"sqlite://{db}", "--log", "warn"]
official = [os.path.join(venv, "bin", "mcp-server-sqlite"), "--db-path", db]

async def call(argv, tool, args):
    params = StdioServerParameters(command=argv[0], args=argv[1:])
    with open(os.devnull, "w") as devnull:
        async with stdio_client(params, errlog=devnull) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                res = await s.call_tool(tool, args)
    assert not res.isError, f"{tool} failed: {res.content}"
    return res

def ours_ids(res):
    rows = res.structuredContent["rows"]
    return [r[0] for r in rows]

def official_ids(res):
    rows = ast.literal_eval(res.content[0].text)  # the server returns str(list of dicts)
    assert isinstance(rows, list), res.content[0].text[:200]
    return [r["id"] for r in rows]

async def main():
    for sql, want in ((point_sql, [4242]), (rows_sql, list(range(1, 1001)))):
        got = ours_ids(await call(ours, "query", {"sql": sql, "max_rows": 1000}))
        assert got == want, f"switchboard: {sql}: {len(got)} rows"
        got = official_ids(await call(official, "read_query", {"query": sql}))
        assert got == want, f"official: {sql}: {len(got)} rows"

asyncio.run(main())
PY

scale=${SQL_BENCH_SCALE:-1}
n() { python3 -c "import sys; print(max(1, round(int(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$scale"; }

run_one() { # case client label calls warmup concurrency tool args -- command...
  local name=$1 client=$2 label=$3 calls=$4 warmup=$5 conc=$6 tool=$7 args=$8
  shift 9
  local wire=()
  if [ "$client" = wire ]; then wire=(--wire); fi
  "$sb" bench --json "${wire[@]}" --label "$label" --tool "$tool" --args "$args" --calls "$(n "$calls")" \
    --warmup "$(n "$warmup")" --concurrency "$conc" -- "$@" \
    | sed "s/^{/{\"case\":\"$name\",/" >> "$out"
}

# Call counts are per server, sized for a few seconds each on 2 busy cores (ours is much faster).
case_run() { # case client concurrency ours_calls official_calls sql
  local name=$1 client=$2 conc=$3 ours_calls=$4 official_calls=$5 sql=$6
  local ours_args official_args
  ours_args=$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1], "max_rows": 1000}))' "$sql")
  official_args=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$sql")
  run_one "$name" "$client" switchboard "$ours_calls" "$((ours_calls / 10))" "$conc" query "$ours_args" -- "${ours[@]}"
  run_one "$name" "$client" official "$official_calls" "$((official_calls / 10))" "$conc" read_query "$official_args" -- "${official[@]}"
}

load_before=$(uptime | sed 's/.*load average: //')
case_run "point lookup (id = 4242)" rmcp 1 15000 3000 "$point_sql"
case_run "point lookup (id = 4242)" rmcp 8 40000 3000 "$point_sql"
case_run "point lookup (id = 4242)" wire 1 15000 3000 "$point_sql"
case_run "point lookup (id = 4242)" wire 8 40000 3000 "$point_sql"
case_run "1,000-row SELECT"         rmcp 1 800   400  "$rows_sql"
case_run "1,000-row SELECT"         wire 1 1500  400  "$rows_sql"
case_run "1,000-row SELECT"         wire 8 3000  400  "$rows_sql"
load_after=$(uptime | sed 's/.*load average: //')

python3 - "$out" "$load_before" "$load_after" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["case"], r["client"], r["concurrency"]), {})[r["label"]] = r
print("| case | client | c | Switchboard calls/s | official calls/s | ratio | ≥ 10× | Switchboard p50 / p99 µs | official p50 / p99 µs | server CPU µs/call, Switchboard / official | CPU ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (case, client, c), v in by.items():
    s, o = v["switchboard"], v["official"]
    ratio = s["calls_per_sec"] / o["calls_per_sec"]
    sc, oc = s.get("server_cpu_us_per_call"), o.get("server_cpu_us_per_call")
    cpu = f"{sc:.0f} / {oc:.0f}" if sc and oc else "n/a"
    cpu_ratio = f"{oc / sc:.1f}×" if sc and oc else "n/a"
    print(f"| {case} | {client} | {c} | {s['calls_per_sec']:.0f} | {o['calls_per_sec']:.1f} | {ratio:.1f}× | "
          f"{'yes' if ratio >= 10 else 'no'} | {s['p50_us']} / {s['p99_us']} | {o['p50_us']} / {o['p99_us']} | {cpu} | {cpu_ratio} |")
print()
print(f"Load average (1, 5, 15 min) before: {sys.argv[2]}; after: {sys.argv[3]}.")
PY
