-- wrk script: one stateless MCP 2026-07-28 `tools/call` of `echo` per request, and a count of
-- any answer that is not a successful JSON-RPC result (printed at the end; must be 0).
local tool = os.getenv("MCP_TOOL") or "echo"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = tool
-- MCP_AUTHORIZATION: an Authorization header value, for a gateway with authentication on.
local authorization = os.getenv("MCP_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool ..
  '","arguments":{"message":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",' ..
  '"io.modelcontextprotocol/clientCapabilities":{}}}}'

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  bad = 0
end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"text":"hello"', 1, true) or string.find(body, '"isError":true', 1, true) then
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("bad")
  end
  io.write(string.format("BAD_RESPONSES %d\n", total))
  io.write(string.format("LATENCY_P50_US %d\nLATENCY_P90_US %d\nLATENCY_P99_US %d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
  io.write(string.format("REQUESTS_PER_SEC %.1f\n", summary.requests / (summary.duration / 1e6)))
end
