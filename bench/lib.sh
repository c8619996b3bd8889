# Shared by the bench scripts (sourced): the configurations both a benchmark and the
# instruction count run, so the two always measure the same setup.

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# listening_url LOG [SECONDS]: the `listening on http://ADDR/mcp` URL a switchboard process
# writes to LOG, waited for up to SECONDS (default 30); prints nothing and fails if none came.
listening_url() {
  local log=$1 tries=$(( ${2:-30} * 10 )) url _
  for _ in $(seq 1 "$tries"); do
    url=$(grep -o 'http://[0-9.:]*/mcp' "$log" 2>/dev/null | head -n1 || true)
    if [ -n "$url" ]; then echo "$url"; return 0; fi
    sleep 0.1
  done
  return 1
}

# start_gateway SWITCHBOARD_BIN CONFIG WORK [SERVE_ARGS...]: starts `switchboard serve` with
# CONFIG on an ephemeral loopback port, a fresh WORK/data and its log in WORK/gateway.log;
# sets GATEWAY_PID and GATEWAY_URL (`http://ADDR/mcp`), or prints the log and fails.
start_gateway() {
  local sb=$1 config=$2 work=$3
  shift 3
  rm -rf "$work/data"
  "$sb" --log warn serve --config "$config" --data-dir "$work/data" --listen 127.0.0.1:0 "$@" \
    >"$work/gateway.log" 2>&1 &
  GATEWAY_PID=$!
  GATEWAY_URL=$(listening_url "$work/gateway.log") || { cat "$work/gateway.log" >&2; return 1; }
}

# write_stdio_gateway_config FILE ECHO_BIN: `switchboard serve` with the echo server as a stdio
# child (tool name `echo`, no prefix) and the audit log off, as peers have none.
write_stdio_gateway_config() {
  cat >"$1" <<TOML
[audit]
enabled = false
[[upstream]]
name = "echo"
connect = { transport = "stdio", command = "$2", args = ["--log", "warn", "server", "echo"] }
prefix = "never"
TOML
}

# write_inproc_gateway_config FILE: `switchboard serve` with the echo server mounted in-process
# (tool name `echo`, no prefix) and the audit log off.
write_inproc_gateway_config() {
  cat >"$1" <<TOML
[audit]
enabled = false
[[upstream]]
name = "echo"
builtin = { server = "echo" }
prefix = "never"
TOML
}

# write_mcp_proxy_config FILE PORT ECHO_BIN: the Rust mcp-proxy on 127.0.0.1:PORT with the
# echo server as its one stdio backend (tool name `echo/echo`, served at `/`).
write_mcp_proxy_config() {
  cat >"$1" <<TOML
[proxy]
name = "bench"
[proxy.listen]
host = "127.0.0.1"
port = $2
[[backends]]
name = "echo"
transport = "stdio"
command = "$3"
args = ["--log", "warn", "server", "echo"]
[observability]
log_level = "warn"
TOML
}
