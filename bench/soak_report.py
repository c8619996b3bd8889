#!/usr/bin/env python3
"""The report of bench/soak.sh: the rate, the gateway's RSS at the start and the end, a
least-squares line fitted to the RSS after the warm-up, the verdict, and an SVG chart.

Usage: bench/soak_report.py SOAK.csv SOAK.jsonl OUT.svg --seconds S --concurrency C
           [--clk-tck HZ] [--load TEXT] [--max-growth-mib M]

Standard library only. Exits 1 when a chunk reported call errors, or when the fitted RSS
growth over the samples after the warm-up (slope x their time span) exceeds --max-growth-mib.
The warm-up is the first 20% of the run, at least 10 s and at most 300 s: the samples before
it see the binary's pages being faulted in and the allocator's arenas being sized for the
load, which is growth that stops, not a leak.
"""

import argparse
import json
import math
import statistics
import sys

MIB = 1024.0


def load_samples(path):
    rows = []
    with open(path) as f:
        header = f.readline().strip().split(",")
        for line in f:
            values = line.strip().split(",")
            if len(values) != len(header):
                continue
            row = dict(zip(header, values))
            try:
                sample = {"t": float(row["seconds"]), "rss": float(row["gateway_rss_kb"]) / MIB}
            except ValueError:
                continue  # the gateway was gone when this sample was taken
            for key, name in (
                ("gateway_anon_kb", "anon"),
                ("child_rss_kb", "child"),
                ("threads", "threads"),
                ("alive_tasks", "tasks"),
                ("gateway_cpu_ticks", "cpu"),
                ("child_cpu_ticks", "child_cpu"),
            ):
                try:
                    value = float(row[key])
                    sample[name] = value / MIB if key.endswith("_kb") else value
                except (KeyError, ValueError):
                    pass
            rows.append(sample)
    return rows


def load_chunks(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def fit(samples):
    """(slope MiB/s, intercept MiB) of RSS over time, or None with fewer than 3 samples."""
    if len(samples) < 3:
        return None
    slope, intercept = statistics.linear_regression(
        [s["t"] for s in samples], [s["rss"] for s in samples]
    )
    return slope, intercept


def nice_ticks(lo, hi, target=5):
    """Round tick values (1, 2 or 5 times a power of ten apart) from lo up to hi."""
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks, v = [], lo
    while v <= hi + 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def svg(path, samples, chunks, warmup, line, meta):
    width, height = 900, 560
    left, right = 70, 830
    panels = [(75, 300), (360, 500)]  # (top, bottom) of the RSS panel and the rate panel
    t_end = max([s["t"] for s in samples] + [meta["seconds"]])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        f"Soak: switchboard serve → stdio echo, {meta['seconds']:g} s at c = "
        f"{meta['concurrency']}</text>",
        f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">{meta["subtitle"]}</text>',
    ]

    def x(t):
        return left + t / max(t_end, 1e-9) * (right - left)

    def axes(top, bottom, lo, hi, unit):
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="black"/>'
        )
        for v in nice_ticks(lo, hi):
            yy = bottom - (v - lo) / (hi - lo) * (bottom - top)
            parts.append(
                f'<line x1="{left}" x2="{right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e5e5e5"/>'
            )
            parts.append(
                f'<text x="{left - 5}" y="{yy + 4:.1f}" text-anchor="end">{v:,g}</text>'
            )
        parts.append(
            f'<text x="16" y="{(top + bottom) / 2}" transform="rotate(-90 16 {(top + bottom) / 2})" '
            f'text-anchor="middle">{unit}</text>'
        )
        step = 10 ** max(0, len(str(int(t_end))) - 1)
        while t_end / step > 10:
            step *= 2
        t = 0
        while t <= t_end + 1e-9:
            parts.append(
                f'<text x="{x(t):.1f}" y="{bottom + 14}" text-anchor="middle">{t:g}</text>'
            )
            t += step

    def polyline(points, color, width=1.5, dash=""):
        if len(points) < 2:
            return
        text = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        dash = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline points="{text}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>'
        )

    # RSS panel: gateway VmRSS, its anonymous part, the echo child, and the fitted line.
    top, bottom = panels[0]
    series = [("rss", "#1f77b4", "gateway VmRSS"), ("anon", "#2ca02c", "gateway RssAnon"),
              ("child", "#ff7f0e", "echo child VmRSS")]
    values = [s[k] for s in samples for k, _, _ in series if k in s]
    lo = 0.0
    hi = max(values + [1.0]) * 1.15
    axes(top, bottom, lo, hi, "MiB")

    def y_rss(v):
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    wx = x(warmup)
    parts.append(
        f'<rect x="{left}" y="{top}" width="{wx - left:.1f}" height="{bottom - top}" '
        f'fill="#f3f3f3"/><text x="{(left + wx) / 2:.1f}" y="{top + 14}" '
        f'text-anchor="middle" fill="#777">warm-up</text>'
    )
    for key, color, _ in series:
        polyline([(x(s["t"]), y_rss(s[key])) for s in samples if key in s], color)
        for s in samples:
            if key in s:
                parts.append(
                    f'<circle cx="{x(s["t"]):.1f}" cy="{y_rss(s[key]):.1f}" r="1.8" fill="{color}"/>'
                )
    if line:
        slope, intercept = line
        polyline(
            [(x(t), y_rss(intercept + slope * t)) for t in (warmup, t_end)], "#d62728", 2, "6 4"
        )
    legend = series + ([("fit", "#d62728", "linear fit after the warm-up")] if line else [])
    for i, (_, color, label) in enumerate(legend):
        lx = left + 10 + i * 190
        parts.append(f'<rect x="{lx}" y="{top - 12}" width="12" height="3" fill="{color}"/>')
        parts.append(f'<text x="{lx + 16}" y="{top - 7}">{label}</text>')

    # Rate panel: calls/s of each chunk, drawn over the chunk's span.
    top, bottom = panels[1]
    rates = [c["calls_per_sec"] for c in chunks] or [1.0]
    hi = max(rates) * 1.15
    axes(top, bottom, 0.0, hi, "calls/s")
    t = 0.0
    for c in chunks:
        span = c["calls"] / c["calls_per_sec"] if c["calls_per_sec"] > 0 else 0
        yy = bottom - c["calls_per_sec"] / hi * (bottom - top)
        parts.append(
            f'<rect x="{x(t):.1f}" y="{yy:.1f}" width="{max(x(t + span) - x(t) - 1, 1):.1f}" '
            f'height="{bottom - yy:.1f}" fill="#9ecae1"><title>{c["calls_per_sec"]:,.0f} calls/s, '
            f'p50 {c["p50_us"]} µs, p99 {c["p99_us"]} µs</title></rect>'
        )
        t += span
    parts.append(
        f'<text x="{(left + right) / 2}" y="{bottom + 32}" text-anchor="middle">'
        "seconds since the gateway started (each bar: one 30 s `switchboard bench` chunk)</text>"
    )
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("jsonl")
    parser.add_argument("svg")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--clk-tck", type=float, default=100.0)
    parser.add_argument("--load", default="")
    parser.add_argument("--max-growth-mib", type=float, default=8.0)
    args = parser.parse_args()

    samples = load_samples(args.csv)
    chunks = load_chunks(args.jsonl)
    if len(samples) < 2 or not chunks:
        print("soak: FAILED: no samples or no load chunks recorded")
        return 1
    warmup = min(max(args.seconds * 0.2, 10.0), 300.0)
    steady = [s for s in samples if s["t"] >= warmup]
    line = fit(steady)
    calls = sum(c["calls"] for c in chunks)
    errors = sum(c["errors"] for c in chunks)
    busy = sum(c["calls"] / c["calls_per_sec"] for c in chunks if c["calls_per_sec"] > 0)
    rate = calls / busy if busy else 0.0
    p50 = statistics.median(c["p50_us"] for c in chunks)
    p99 = max(c["p99_us"] for c in chunks)
    first, last = samples[0], samples[-1]
    at_warmup = steady[0] if steady else last

    print(
        f"soak: {calls:,} calls in {len(chunks)} chunks, {rate:,.0f} calls/s "
        f"(chunks {min(c['calls_per_sec'] for c in chunks):,.0f}–"
        f"{max(c['calls_per_sec'] for c in chunks):,.0f}), p50 {p50:.0f} µs (median of chunks), "
        f"max chunk p99 {p99} µs, {errors} errors; load average {args.load}"
    )
    print(
        f"soak: gateway VmRSS {first['rss']:.1f} MiB idle → {at_warmup['rss']:.1f} MiB after "
        f"the {warmup:.0f} s warm-up → {last['rss']:.1f} MiB at the end "
        f"(max {max(s['rss'] for s in samples):.1f}); RssAnon "
        f"{first.get('anon', float('nan')):.1f} → {last.get('anon', float('nan')):.1f} MiB; "
        f"echo child {first.get('child', float('nan')):.1f} → "
        f"{last.get('child', float('nan')):.1f} MiB"
    )
    # CPU per call over the whole run (idle time costs next to nothing).
    cpu = [s for s in samples if "cpu" in s]
    if calls and len(cpu) >= 2:
        per_call = (cpu[-1]["cpu"] - cpu[0]["cpu"]) / args.clk_tck / calls * 1e6
        line_cpu = f"soak: CPU per call {per_call:.0f} µs in the gateway"
        child_cpu = [s for s in cpu if "child_cpu" in s]
        if len(child_cpu) >= 2:
            child_per_call = (
                (child_cpu[-1]["child_cpu"] - child_cpu[0]["child_cpu"]) / args.clk_tck / calls * 1e6
            )
            line_cpu += f", {child_per_call:.0f} µs in the echo child"
        print(f"{line_cpu} ({1e6 / per_call:,.0f} calls/s per core for the gateway alone)")
    tasks = [s["tasks"] for s in samples if "tasks" in s]
    threads = [s["threads"] for s in samples if "threads" in s]
    if tasks:
        print(
            f"soak: alive tasks {tasks[0]:.0f} idle, {min(tasks[1:] or tasks):.0f}–"
            f"{max(tasks[1:] or tasks):.0f} under load, {tasks[-1]:.0f} at the end; "
            f"threads {min(threads):.0f}–{max(threads):.0f}"
        )
    verdict = []
    if errors:
        verdict.append(f"{errors} call errors")
    if line:
        slope, _ = line
        span = steady[-1]["t"] - steady[0]["t"]
        growth = slope * span
        print(
            f"soak: RSS slope after the warm-up {slope * 3600:+.2f} MiB/h over {len(steady)} "
            f"samples ({span:.0f} s): fitted growth {growth:+.2f} MiB "
            f"(bound {args.max_growth_mib:g} MiB)"
        )
        if growth > args.max_growth_mib:
            verdict.append(
                f"RSS grew {growth:.2f} MiB after the warm-up (bound {args.max_growth_mib:g})"
            )
    else:
        print("soak: too few samples after the warm-up for a fit (need 3)")
    subtitle = (
        f"{rate:,.0f} calls/s, {errors} errors; RSS {first['rss']:.1f} → {last['rss']:.1f} MiB"
        + (f", slope {line[0] * 3600:+.2f} MiB/h after {warmup:.0f} s" if line else "")
        + (f"; load average {args.load}" if args.load else "")
    )
    svg(
        args.svg,
        samples,
        chunks,
        warmup,
        line,
        {"seconds": args.seconds, "concurrency": args.concurrency, "subtitle": subtitle},
    )
    print(f"soak: chart {args.svg}, samples {args.csv}")
    if verdict:
        print("soak: FAILED: " + "; ".join(verdict))
        return 1
    print("soak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
