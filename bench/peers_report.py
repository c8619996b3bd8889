#!/usr/bin/env python3
"""The report of bench/peers.sh: a Markdown table (medians and min-max spreads over the
repetitions, ratios against each peer and the limit) on stdout, and an SVG chart.

Usage: bench/peers_report.py PEERS.jsonl META.json OUT.svg

Standard library only. A ratio is computed per repetition (Switchboard's run of round k
against the peer's run of the same round, measured minutes apart at most), then summarised
as the median and the min-max of those ratios.
"""

import json
import math
import statistics
import sys

CASES = {
    "switchboard": "Switchboard → stdio echo",
    "switchboard-inproc": "Switchboard → in-process echo",
    "mcp-proxy-rs": "mcp-proxy (Rust) → stdio echo",
    "mcp-proxy-py": "mcp-proxy (Python) → stdio echo",
    "contextforge": "ContextForge → translate → stdio echo",
    "limit": "bare hyper JSON echo (limit)",
}
COLORS = {
    "switchboard": "#1f77b4",
    "switchboard-inproc": "#6baed6",
    "mcp-proxy-rs": "#d62728",
    "mcp-proxy-py": "#ff7f0e",
    "contextforge": "#9467bd",
    "limit": "#7f7f7f",
}
# (ours, peer, target): Switchboard's like-for-like case (a stdio echo child behind the
# gateway) against each peer; the in-process gateway against the bare echo.
TARGETS = [
    ("switchboard", "mcp-proxy-rs", 1.5),
    ("switchboard", "mcp-proxy-py", 10.0),
    ("switchboard", "contextforge", 10.0),
    ("switchboard-inproc", "limit", 0.5),
    ("switchboard", "limit", 0.5),
]


def load(path):
    """Successful runs by (label, concurrency) and repetition; failed runs as text."""
    runs, failed = {}, []
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        if row.get("failed"):
            failed.append(f"{row['label']} c={row['concurrency']} repetition {row['rep']}")
            continue
        runs.setdefault((row["label"], row["concurrency"]), {})[row["rep"]] = row
    return runs, failed


def spread(values, fmt):
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    if len(values) == 1 or fmt(lo) == fmt(hi):
        return fmt(med)
    return f"{fmt(med)} ({fmt(lo)}–{fmt(hi)})"


def rate(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def micros(v):
    return f"{v:.0f}"


def ratio(v):
    return f"{v:.2f}×" if v < 10 else f"{v:.1f}×"


def table(runs, labels, levels):
    out = [
        "| case | c | calls/s | p50 µs | p99 µs | gateway CPU µs/call |",
        "|---|---|---|---|---|---|",
    ]
    for c in levels:
        for label in labels:
            reps = runs.get((label, c))
            if not reps:
                continue
            rows = list(reps.values())
            # The gateway's processes (with its children), per call: see bench/peers.sh.
            cpu = [r["server_cpu_us_per_call"] for r in rows if r.get("server_cpu_us_per_call")]
            out.append(
                f"| {CASES.get(label, label)} | {c} "
                f"| {spread([r['calls_per_sec'] for r in rows], rate)} "
                f"| {spread([r['p50_us'] for r in rows], micros)} "
                f"| {spread([r['p99_us'] for r in rows], micros)} "
                f"| {spread(cpu, micros) if cpu else 'n/a'} |"
            )
    return out


def ratios(runs, levels):
    """Rows of (ours, peer, target, c, median, lo, hi) where both sides ran."""
    rows = []
    for ours, peer, target in TARGETS:
        for c in levels:
            a, b = runs.get((ours, c)), runs.get((peer, c))
            if not a or not b:
                continue
            per_rep = [
                a[k]["calls_per_sec"] / b[k]["calls_per_sec"]
                for k in sorted(set(a) & set(b))
                if b[k]["calls_per_sec"] > 0
            ]
            if per_rep:
                rows.append(
                    (ours, peer, target, c, statistics.median(per_rep), min(per_rep), max(per_rep))
                )
    return rows


def ratio_table(rows):
    out = [
        "| Switchboard case ÷ peer | c | throughput ratio, median (min–max) | target | met |",
        "|---|---|---|---|---|",
    ]
    for ours, peer, target, c, med, lo, hi in rows:
        met = "yes" if med >= target else "no"
        out.append(
            f"| {CASES[ours]} ÷ {CASES[peer]} | {c} | {ratio(med)} ({ratio(lo)}–{ratio(hi)}) "
            f"| ≥ {target:g}× | {met} |"
        )
    return out


def svg(runs, labels, levels, path, meta):
    """Two panels, calls/s and p50 latency, both on log scales: a group of bars per
    concurrency, a bar per case at its median, a whisker from min to max."""
    width, height = 980, 430
    panel_w, top, bottom, left_pad = 440, 60, 330, 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        "MCP gateways in front of the same echo server: tools/call over Streamable HTTP</text>",
        f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">'
        f"switchboard bench --url ({meta.get('client', 'rmcp')} client), one session per in-flight call; median of "
        f"{meta.get('repetitions', '?')} runs of {meta.get('seconds_per_run', '?'):g} s, "
        f"whiskers min–max; {meta.get('cpus', '?')} vCPUs, {meta.get('started', '')}</text>",
    ]

    def panel(x0, title, key, unit):
        values = [
            r[key] for (label, c), reps in runs.items() if label in labels for r in reps.values()
        ]
        values = [v for v in values if v > 0]
        if not values:
            return
        # A decade below the smallest value, so the shortest bar is still visible.
        lo = 10 ** math.floor(math.log10(min(values) / 2))
        hi = 10 ** math.ceil(math.log10(max(values)))

        def y(v):
            v = max(v, lo)
            return bottom - (math.log10(v) - math.log10(lo)) / (
                math.log10(hi) - math.log10(lo)
            ) * (bottom - top)

        x_left = x0 + left_pad
        x_right = x0 + panel_w
        parts.append(
            f'<text x="{(x_left + x_right) / 2}" y="{top - 6}" text-anchor="middle" '
            f'font-weight="bold">{title} ({unit}, log scale)</text>'
        )
        decade = lo
        while decade <= hi * 1.0001:
            yy = y(decade)
            parts.append(
                f'<line x1="{x_left}" x2="{x_right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>'
            )
            label = f"{decade:,.0f}" if decade >= 1 else f"{decade:g}"
            parts.append(
                f'<text x="{x_left - 4}" y="{yy + 4:.1f}" text-anchor="end">{label}</text>'
            )
            decade *= 10
        group_w = (x_right - x_left) / len(levels)
        bar_w = group_w * 0.8 / max(len(labels), 1)
        for gi, c in enumerate(levels):
            gx = x_left + gi * group_w + group_w * 0.1
            parts.append(
                f'<text x="{gx + group_w * 0.4:.1f}" y="{bottom + 16}" text-anchor="middle">'
                f"c = {c}</text>"
            )
            for bi, label in enumerate(labels):
                reps = runs.get((label, c))
                if not reps:
                    continue
                vals = [r[key] for r in reps.values() if r[key] > 0]
                if not vals:
                    continue
                med = statistics.median(vals)
                bx = gx + bi * bar_w
                parts.append(
                    f'<rect x="{bx:.1f}" y="{y(med):.1f}" width="{bar_w * 0.9:.1f}" '
                    f'height="{bottom - y(med):.1f}" fill="{COLORS.get(label, "#333")}">'
                    f"<title>{CASES.get(label, label)}, c={c}: {med:,.0f} {unit}</title></rect>"
                )
                cx = bx + bar_w * 0.45
                parts.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(min(vals)):.1f}" '
                    f'y2="{y(max(vals)):.1f}" stroke="black"/>'
                )
        parts.append(
            f'<line x1="{x_left}" x2="{x_right}" y1="{bottom}" y2="{bottom}" stroke="black"/>'
        )

    panel(0, "Throughput", "calls_per_sec", "calls/s")
    panel(width / 2, "p50 latency", "p50_us", "µs")
    lx, ly = 70, bottom + 40
    for i, label in enumerate(labels):
        x = lx + (i % 3) * 300
        yy = ly + (i // 3) * 18
        parts.append(
            f'<rect x="{x}" y="{yy - 9}" width="12" height="12" fill="{COLORS.get(label, "#333")}"/>'
        )
        parts.append(f'<text x="{x + 18}" y="{yy + 1}">{CASES.get(label, label)}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    runs, failed = load(sys.argv[1])
    meta = json.load(open(sys.argv[2]))
    levels = sorted({c for (_, c) in runs})
    labels = [label for label in CASES if any(label == l for (l, _) in runs)]
    print()
    print(
        f"Run of {meta['started']}, {meta['repetitions']} × {meta['seconds_per_run']:g} s per "
        f"case and concurrency, {meta.get('client', 'rmcp')} client, {meta['cpus']} CPUs, "
        f"load average {meta['load_before']} → {meta['load_after']}"
    )
    print()
    print("\n".join(table(runs, labels, levels)))
    print()
    print("\n".join(ratio_table(ratios(runs, levels))))
    for reason in meta.get("skipped", []):
        print(f"\nSkipped: {reason}")
    if failed:
        print(f"\nFailed runs (left out): {', '.join(failed)}")
    svg(runs, labels, levels, sys.argv[3], meta)
    print(f"\nChart: {sys.argv[3]}")


if __name__ == "__main__":
    main()
