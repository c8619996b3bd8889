"""The official MCP Python SDK (`mcp`, 1.x) as a client of `switchboard server fs`.

Run by .ci/interop, which sets SWITCHBOARD_BIN to the built binary. Every transport the
binary offers is driven the same way: initialize, list tools, write a file, read it back, and
get a tool error (isError) for a path outside the root.
"""

import contextlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.anyio

LISTENING = re.compile(r"listening on (http://\S+)")


@pytest.fixture
def anyio_backend():
    return "asyncio"


def switchboard_bin() -> str:
    path = os.environ.get("SWITCHBOARD_BIN")
    if not path:
        pytest.fail(
            "SWITCHBOARD_BIN is not set: run .ci/interop, or point it at target/debug/switchboard"
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"SWITCHBOARD_BIN={path} is not an executable; build it with cargo build -p switchboard")
    return path


@pytest.fixture
def root():
    with tempfile.TemporaryDirectory(prefix="sb-interop-py-") as tmp:
        yield Path(tmp).resolve()


@contextlib.contextmanager
def http_server(root: Path, transport: str, timeout: float = 20.0):
    """Starts `switchboard server fs --transport <transport>` on a free port; yields its URL."""
    proc = subprocess.Popen(
        [
            switchboard_bin(),
            "server",
            "fs",
            "--transport",
            transport,
            "--listen",
            "127.0.0.1:0",
            "--root",
            str(root),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: dict = {}
    ready = threading.Event()

    def pump():
        # Keep draining stderr so the server never blocks on a full pipe.
        for line in proc.stderr:
            m = LISTENING.search(line)
            if m:
                found.setdefault("urls", []).append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(timeout) or not found.get("urls"):
            pytest.fail(f"server did not print 'listening on' within {timeout}s (exit code {proc.poll()})")
        yield found["urls"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def exercise(session: ClientSession, root: Path):
    init = await session.initialize()
    assert init.serverInfo.name == "switchboard-fs"

    tools = await session.list_tools()
    names = {t.name for t in tools.tools}
    assert {"write_file", "read_text_file", "list_allowed_directories"} <= names, names

    written = await session.call_tool(
        "write_file", {"path": str(root / "hello.txt"), "content": "hi from python"}
    )
    assert not written.isError, written
    assert (root / "hello.txt").read_text() == "hi from python"

    read = await session.call_tool("read_text_file", {"path": str(root / "hello.txt")})
    assert not read.isError, read
    assert read.structuredContent == {"content": "hi from python"}, read
    assert any(getattr(c, "text", None) == "hi from python" for c in read.content), read.content

    outside = await session.call_tool("read_text_file", {"path": "/etc/hostname"})
    assert outside.isError is True, outside
    escape = await session.call_tool(
        "write_file", {"path": "../escaped.txt", "content": "must not be written"}
    )
    assert escape.isError is True, escape
    assert not (root.parent / "escaped.txt").exists()


async def test_stdio(root: Path):
    params = StdioServerParameters(
        command=switchboard_bin(), args=["server", "fs", "--root", str(root)]
    )
    with open(os.devnull, "w") as devnull:
        async with stdio_client(params, errlog=devnull) as (read, write):
            async with ClientSession(read, write) as session:
                await exercise(session, root)


async def test_streamable_http(root: Path):
    with http_server(root, "http") as urls:
        url = next(u for u in urls if u.endswith("/mcp"))
        async with streamable_http_client(url) as (read, write, _session_id):
            async with ClientSession(read, write) as session:
                await exercise(session, root)


async def test_legacy_sse(root: Path):
    with http_server(root, "sse") as urls:
        url = next(u for u in urls if u.endswith("/sse"))
        async with sse_client(url) as (read, write):
            async with ClientSession(read, write) as session:
                await exercise(session, root)
