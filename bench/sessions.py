#!/usr/bin/env python3
"""Opens N session-era (2025-11-25) Streamable HTTP sessions on a gateway and keeps them open,
then samples the gateway's RSS. Standard library only.

Usage: sessions.py URL PID N [--after-idle]  -> prints one JSON line: sessions opened, RSS
before/after (KiB), per-session KiB, the peak RSS, how many sessions the gateway holds in memory
and has moved out (its /metrics), and how many of the N sessions answer tools/list (every one is
asked once, least recent first, so each one moved out of memory is rebuilt from its id). With --after-idle it then waits (polling /metrics) until the gateway's idle timeout
has taken every session out of memory, reports RSS, and checks that the sampled sessions resume
from their sealed ids.
"""
import http.client
import json
import sys
import time
import urllib.parse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def metric(url_parts, name):
    conn = http.client.HTTPConnection(url_parts.hostname, url_parts.port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    for line in text.splitlines():
        if line.startswith(f"switchboard_{name}"):
            return float(line.split()[-1])
    return None


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def post(conn, path, body, session=None):
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
    }
    if session:
        headers["mcp-session-id"] = session
    conn.request("POST", path, json.dumps(body), headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, resp.getheader("mcp-session-id"), data


def main():
    url, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    before = rss_kib(pid)
    sessions = []
    started = time.monotonic()
    for i in range(n):
        status, sid, data = post(conn, parts.path, {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": f"held-{i}", "version": "0"}}})
        if status != 200 or not sid:
            raise SystemExit(f"initialize {i}: HTTP {status} {data[:200]!r}")
        status, _, _ = post(conn, parts.path,
                            {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
        if status != 202:
            raise SystemExit(f"initialized {i}: HTTP {status}")
        sessions.append(sid)
    opened_secs = time.monotonic() - started
    after = rss_kib(pid)
    in_memory = metric(parts, "sessions_active")
    step = max(1, n // 100)
    alive = 0
    for sid in sessions:
        status, _, data = post(conn, parts.path,
                               {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
        alive += status == 200 and b'"tools"' in data
    report = {
        "in_memory": in_memory,
        "answered": alive,
        "rss_after_all_used_kib": rss_kib(pid),
        "evicted": metric(parts, "sessions_evicted_total"),
        "rss_peak_kib": peak_rss_kib(pid),
    }
    if "--after-idle" in sys.argv[4:]:
        base = f"{parts.scheme}://{parts.netloc}"
        deadline = time.monotonic() + 600
        while True:
            metrics = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            metrics.request("GET", "/metrics")
            text = metrics.getresponse().read().decode()
            active = [l for l in text.splitlines() if l.startswith("switchboard_sessions_active")]
            if active and float(active[0].split()[-1]) == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"sessions never left memory ({base}/metrics: {active})")
            time.sleep(1)
        report["rss_after_idle_kib"] = rss_kib(pid)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        resumed = 0
        for sid in sessions[::step]:
            status, _, data = post(conn, parts.path,
                                   {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, sid)
            resumed += status == 200 and b'"tools"' in data
        report["resumed_after_idle"] = resumed
        report["rss_after_resume_kib"] = rss_kib(pid)
    print(json.dumps({
        "sessions": n, "open_secs": round(opened_secs, 1),
        "rss_before_kib": before, "rss_held_kib": after,
        "kib_per_session": round((after - before) / n, 1),
        "token_bytes": len(sessions[0]) if sessions else 0,
        **report,
    }))


if __name__ == "__main__":
    main()
