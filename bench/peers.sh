#!/usr/bin/env bash
# Peer gateways side by side (issue 11): Switchboard and other MCP gateways, each in front of
# the same stdio echo server (`switchboard server echo`), driven by the same client
# (`switchboard bench --url`, Streamable HTTP, session era: initialize, then calls on the
# session) at c = 1, 16 and 128, with 3 repetitions of each case, interleaved.
#
# The client is `bench --wire` (plain HTTP/1.1, every answer's JSON, id and isError checked,
# no MCP library: ~20 µs of CPU per call); PEERS_CLIENT=rmcp uses the rmcp client instead
# (~60-75 µs per call, which on 2 cores takes CPU from the gateway being measured). Each run
# also records the CPU time per call of the gateway's processes (the gateway, its children
# and, for ContextForge, its bridge), which the client and the machine's load do not change.
#
# Cases:
#   switchboard         switchboard serve -> the echo as a stdio child
#   switchboard-inproc  switchboard serve -> the echo mounted in-process
#   mcp-proxy-rs        mcp-proxy (Rust, tower-based; Cargo registry) -> the echo as a stdio child
#   mcp-proxy-py        mcp-proxy (Python; PyPI) -> the echo as a stdio child
#   contextforge        IBM ContextForge (mcp-contextforge-gateway; PyPI) -> its own stdio
#                       bridge (mcpgateway.translate, Streamable HTTP) -> the echo
#   limit               a bare hyper HTTP JSON echo (crates/switchboard/examples/bare_echo.rs)
#
# Peers come from the registries only: `cargo install` into target/peers/cargo, and a venv
# (target/peers/venv) with the pins of bench/requirements-peers.txt. A peer that cannot be
# installed or started is skipped with the reason; the others still run.
#
# Each worker of `bench` has its own session (c workers = c sessions, one call in flight
# each): many independent clients, which is how a gateway is used.
#
# Output: raw JSON lines in target/bench/peers.jsonl, a Markdown table with the ratios on
# stdout, and the chart bench/peers.svg.
#
# Usage: bench/peers.sh [seconds per run, default 3]    (~54 runs: about 5 minutes at 3 s)
# SWITCHBOARD_BIN / BARE_ECHO_BIN: measure those binaries instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
secs=${1:-3}
reps=${PEERS_REPS:-3}
levels=(1 16 128)
mcp_proxy_rs_version=0.6.0

if [ -z "${SWITCHBOARD_BIN:-}" ] || [ -z "${BARE_ECHO_BIN:-}" ]; then
  cargo build --release -p switchboard --bin switchboard --example bare_echo --quiet
fi
# Absolute: some cases run from other directories (ContextForge's bridge starts the echo
# from its own working directory).
sb=$(realpath "${SWITCHBOARD_BIN:-target/release/switchboard}")
bare=$(realpath "${BARE_ECHO_BIN:-target/release/examples/bare_echo}")
peers=$PWD/target/peers
mkdir -p "$peers" target/bench
skipped=()

# --- install the peers (once; again when a pin changes) ---------------------------------------
rs_proxy=$peers/cargo/bin/mcp-proxy
if [ ! -x "$rs_proxy" ] || ! grep -qx "$mcp_proxy_rs_version" "$peers/cargo/.bench-version" 2>/dev/null; then
  echo "installing mcp-proxy $mcp_proxy_rs_version (Rust) into target/peers/cargo ..." >&2
  if CARGO_INCREMENTAL=0 cargo install mcp-proxy --version "$mcp_proxy_rs_version" --locked \
      --root "$peers/cargo" --target-dir "$peers/build" --quiet >"$peers/cargo-install.log" 2>&1; then
    echo "$mcp_proxy_rs_version" >"$peers/cargo/.bench-version"
  else
    skipped+=("mcp-proxy-rs: cargo install failed (see target/peers/cargo-install.log)")
    rs_proxy=
  fi
fi
venv=$peers/venv
py_ok=1
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv" || py_ok=0; fi
if [ "$py_ok" = 1 ] && ! cmp -s bench/requirements-peers.txt "$venv/.bench-requirements"; then
  echo "installing the Python peers into target/peers/venv ..." >&2
  if "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements-peers.txt \
      >"$peers/pip-install.log" 2>&1; then
    cp bench/requirements-peers.txt "$venv/.bench-requirements"
  else
    py_ok=0
  fi
fi
if [ "$py_ok" = 0 ]; then
  skipped+=("mcp-proxy-py, contextforge: pip install failed (see target/peers/pip-install.log)")
fi

# --- start every case -------------------------------------------------------------------------
work=$(mktemp -d)
pids=()
cleanup() {
  # Each case runs in its own process group (setsid): end the group, children included.
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
  local i
  for i in $(seq 1 $(($2 * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
# launch NAME CMD...: runs CMD in its own process group, stderr and stdout to $work/NAME.log.
launch() {
  local name=$1; shift
  setsid "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  roots[$name]=$!
}
declare -A roots
# tree_pids PID...: the processes and all their descendants.
tree_pids() {
  local p
  for p in "$@"; do
    echo "$p"
    # shellcheck disable=SC2046
    tree_pids $(pgrep -P "$p" || true)
  done
}
# listening NAME: the URL of a switchboard-style "listening on http://ADDR/mcp" line.
listening() { listening_url "$work/$1.log" 10; }

# Labels, URLs, tools and headers of the cases that started, in report order.
names=(); urls=(); tools=(); headers=(); case_roots=()
# add_case NAME URL TOOL [HEADER]: the gateway's processes are those launched under NAME
# (and, for ContextForge, its bridge too: CASE_EXTRA_ROOTS names more roots).
add_case() {
  names+=("$1"); urls+=("$2"); tools+=("$3"); headers+=("${4:-}")
  case_roots+=("${roots[$1]:-} ${CASE_EXTRA_ROOTS:-}")
}
echo_cmd=("$sb" --log warn server echo)

write_stdio_gateway_config "$work/stdio.toml" "$sb"
write_inproc_gateway_config "$work/inproc.toml"
launch switchboard "$sb" --log warn serve --config "$work/stdio.toml" --data-dir "$work/sb-data" --listen 127.0.0.1:0
url=$(listening switchboard) || { cat "$work/switchboard.log" >&2; exit 1; }
add_case switchboard "$url" echo
launch switchboard-inproc "$sb" --log warn serve --config "$work/inproc.toml" --data-dir "$work/sb-data2" --listen 127.0.0.1:0
url=$(listening switchboard-inproc) || { cat "$work/switchboard-inproc.log" >&2; exit 1; }
add_case switchboard-inproc "$url" echo

if [ -n "$rs_proxy" ]; then
  port=$(free_port)
  write_mcp_proxy_config "$work/mcp-proxy-rs.toml" "$port" "$sb"
  launch mcp-proxy-rs env RUST_LOG=warn "$rs_proxy" --config "$work/mcp-proxy-rs.toml"
  if wait_port "$port" 30; then
    add_case mcp-proxy-rs "http://127.0.0.1:$port/" echo/echo   # it serves MCP at /
  else
    skipped+=("mcp-proxy-rs: did not start: $(tail -n 3 "$work/mcp-proxy-rs.log" | tr '\n' ' ')")
  fi
fi

if [ "$py_ok" = 1 ]; then
  port=$(free_port)
  launch mcp-proxy-py "$venv/bin/mcp-proxy" --host 127.0.0.1 --port "$port" --log-level WARNING -- "${echo_cmd[@]}"
  if wait_port "$port" 60; then
    add_case mcp-proxy-py "http://127.0.0.1:$port/mcp" echo
  else
    skipped+=("mcp-proxy-py: did not start: $(tail -n 3 "$work/mcp-proxy-py.log" | tr '\n' ' ')")
  fi

  # ContextForge: SQLite, generated secrets, its documented setup (JWT for the API and MCP,
  # `mcpgateway.translate` to reach a stdio server, the server registered as a gateway, a
  # virtual server bundling its tool). Two settings differ from its defaults, each so it is
  # measured at its best and like the others: USE_STATEFUL_SESSIONS=true (the default,
  # stateless, opens a new upstream session for every call: ~25 calls/s here) and
  # RATE_LIMITING_ENABLED=false (the default limits MCP to 100 requests per minute).
  cf=$work/contextforge
  mkdir -p "$cf"
  secret() { "$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))'; }
  jwt_secret=$(secret)
  cf_env=(env -C "$cf"
    JWT_SECRET_KEY="$jwt_secret" AUTH_ENCRYPTION_SECRET="$(secret)"
    PLATFORM_ADMIN_EMAIL=admin@example.com PLATFORM_ADMIN_PASSWORD="Pw-$(secret)"
    DATABASE_URL="sqlite:///$cf/contextforge.db" MCPGATEWAY_UI_ENABLED=false
    MCPGATEWAY_ADMIN_API_ENABLED=false SSRF_ALLOW_LOCALHOST=true LOG_LEVEL=ERROR
    USE_STATEFUL_SESSIONS=true RATE_LIMITING_ENABLED=false)
  bridge_port=$(free_port)
  cf_port=$(free_port)
  launch contextforge-translate "${cf_env[@]}" "$venv/bin/python" -m mcpgateway.translate \
    --stdio "$(printf '%q ' "${echo_cmd[@]}")" --expose-streamable-http --host 127.0.0.1 --port "$bridge_port" --logLevel warning
  launch contextforge "${cf_env[@]}" "$venv/bin/mcpgateway" --host 127.0.0.1 --port "$cf_port" --no-access-log
  cf_url=
  if wait_port "$bridge_port" 60 && wait_port "$cf_port" 120; then
    token=$("${cf_env[@]}" "$venv/bin/python" -m mcpgateway.utils.create_jwt_token \
      --username admin@example.com --exp 120 --secret "$jwt_secret" 2>/dev/null | tail -n 1 || true)
    cf_url=$("$venv/bin/python" - "http://127.0.0.1:$cf_port" "http://127.0.0.1:$bridge_port/mcp" "$token" 2>"$work/contextforge-register.log" <<'PY' || true
import json, sys, time, urllib.request
base, bridge, token = sys.argv[1:4]
def api(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)
for _ in range(60):  # the API answers once start-up (migrations) is done
    try:
        api("GET", "/tools"); break
    except Exception:
        time.sleep(1)
api("POST", "/gateways", {"name": "echo", "url": bridge, "transport": "STREAMABLEHTTP"})
tools = api("GET", "/tools")
tools = tools if isinstance(tools, list) else tools.get("items", [])
ids = [t["id"] for t in tools if t["name"].endswith("echo")]
server = api("POST", "/servers", {"server": {"name": "bench", "associated_tools": ids[:1]}})
print(f"{base}/servers/{server['id']}/mcp")
PY
)
  fi
  if [ -n "$cf_url" ]; then
    CASE_EXTRA_ROOTS=${roots[contextforge-translate]} add_case contextforge "$cf_url" echo-echo "Authorization: Bearer $token"
  else
    skipped+=("contextforge: did not start: $(tail -n 3 "$work/contextforge.log" "$work/contextforge-register.log" 2>/dev/null | tr '\n' ' ' || true)")
  fi
fi

launch limit "$bare" 127.0.0.1:0
url=$(listening limit) || { cat "$work/limit.log" >&2; exit 1; }
add_case limit "$url" echo

# Every case answers the echo before it is measured (a peer that swallowed errors would
# otherwise count as fast).
for i in "${!names[@]}"; do
  h=(); [ -n "${headers[$i]}" ] && h=(--header "${headers[$i]}")
  got=$("$sb" --log error call "${urls[$i]}" "${tools[$i]}" '{"message":"peer-check"}' --era initialize "${h[@]}" 2>&1 || true)
  if [ "$got" != "peer-check" ]; then
    echo "${names[$i]} does not echo: $got" >&2; exit 1
  fi
done

# --- measure ----------------------------------------------------------------------------------
out=target/bench/peers.jsonl
: >"$out"
client=${PEERS_CLIENT:-wire}
case "$client" in
  wire) client_args=(--wire --era initialize) ;;
  rmcp) client_args=() ;;
  *) echo "PEERS_CLIENT must be wire or rmcp" >&2; exit 2 ;;
esac
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
for rep in $(seq 1 "$reps"); do
  for c in "${levels[@]}"; do
    for i in "${!names[@]}"; do
      h=(); [ -n "${headers[$i]}" ] && h=(--header "${headers[$i]}")
      sp=()
      # shellcheck disable=SC2086
      for p in $(tree_pids ${case_roots[$i]}); do sp+=(--server-pid "$p"); done
      warmup=$((c * 4 > 200 ? c * 4 : 200))
      if line=$("$sb" --log error bench --json "${client_args[@]}" "${sp[@]}" --label "${names[$i]}" --url "${urls[$i]}" "${h[@]}" \
          --tool "${tools[$i]}" --args '{"message":"hello"}' --concurrency "$c" \
          --duration "$secs" --warmup "$warmup" 2>"$work/bench.err"); then
        sed "s/^{/{\"rep\":$rep,/" <<<"$line" | tee -a "$out" >&2
      else
        echo "${names[$i]} c=$c rep $rep failed: $(tail -n 2 "$work/bench.err" | tr '\n' ' ')" >&2
        echo "{\"rep\":$rep,\"label\":\"${names[$i]}\",\"concurrency\":$c,\"failed\":true}" >>"$out"
      fi
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

meta=target/bench/peers-meta.json
python3 - "$meta" "$started" "$load_before" "$load_after" "$secs" "$reps" "$(nproc)" \
  "$mcp_proxy_rs_version" "$client" "${skipped[@]+"${skipped[@]}"}" <<'PY'
import json, sys
meta, started, before, after, secs, reps, cpus, rs, client = sys.argv[1:10]
json.dump({"started": started, "load_before": before, "load_after": after,
           "seconds_per_run": float(secs), "repetitions": int(reps), "cpus": int(cpus),
           "mcp_proxy_rs": rs, "client": client, "skipped": sys.argv[10:]}, open(meta, "w"))
PY
python3 bench/peers_report.py "$out" "$meta" bench/peers.svg
