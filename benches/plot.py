#!/usr/bin/env python3
"""Draws the two plots of docs/BENCHMARKS.md from benches/sweep.sh's output,
as plain SVG (no plotting library needed):

  docs/plots/throughput.svg  deliveries/s against number of clients (ring)
  docs/plots/memory.svg      server memory against idle connections (conns)

Usage: python3 benches/plot.py [SWEEP_DIR] (default target/sweep)."""

import json
import math
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SWEEP = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "sweep")
OUT = os.path.join(ROOT, "docs", "plots")

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 80, 40, 40, 60
COLOURS = {"a": "#1f77b4", "b": "#d62728"}
LABELS = {"a": "achat", "b": "baseline (tutorial design on tokio)"}


def load(name):
    with open(os.path.join(SWEEP, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def nice_max(v):
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def plot(points, title, xlabel, ylabel, yscale, yunit, log_x, path):
    xs = [p["x"] for p in points]
    ymax = nice_max(max(max(p["a"], p["b"]) for p in points) / yscale)
    x0, x1 = (math.log10(min(xs)), math.log10(max(xs))) if log_x else (0, max(xs))

    def px(x):
        v = math.log10(x) if log_x else x
        return LEFT + (v - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def py(y):
        return H - BOTTOM - (y / yscale) / ymax * (H - TOP - BOTTOM)

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
    ]
    for i in range(6):
        y = ymax * i / 5
        yy = H - BOTTOM - i / 5 * (H - TOP - BOTTOM)
        svg.append(f'<line x1="{LEFT}" y1="{yy}" x2="{W - RIGHT}" y2="{yy}" stroke="#ddd"/>')
        svg.append(f'<text x="{LEFT - 6}" y="{yy + 4}" text-anchor="end">{y:g}{yunit}</text>')
    last_label = -1e9
    for x in xs:
        svg.append(f'<line x1="{px(x)}" y1="{H - BOTTOM}" x2="{px(x)}" y2="{H - BOTTOM + 5}" stroke="black"/>')
        if px(x) - last_label >= 40:  # labels too close together would overlap
            svg.append(f'<text x="{px(x)}" y="{H - BOTTOM + 18}" text-anchor="middle">{x:,}</text>')
            last_label = px(x)
    svg.append(f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>')
    svg.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="black"/>')
    svg.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 18}" text-anchor="middle">{xlabel}</text>')
    svg.append(
        f'<text x="18" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {(TOP + H - BOTTOM) / 2})">{ylabel}</text>'
    )
    for key in ("a", "b"):
        pts = " ".join(f"{px(p['x']):.1f},{py(p[key]):.1f}" for p in points)
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{COLOURS[key]}" stroke-width="2"/>')
        for p in points:
            svg.append(f'<circle cx="{px(p["x"]):.1f}" cy="{py(p[key]):.1f}" r="3.5" fill="{COLOURS[key]}"/>')
    for i, key in enumerate(("a", "b")):
        ly = TOP + 8 + 18 * i
        svg.append(f'<rect x="{LEFT + 12}" y="{ly - 9}" width="14" height="4" fill="{COLOURS[key]}"/>')
        svg.append(f'<text x="{LEFT + 32}" y="{ly - 3}">{LABELS[key]}</text>')
    svg.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")
    print(f"wrote {path}")


def main():
    os.makedirs(OUT, exist_ok=True)
    ring = sorted(load("ring.jsonl"), key=lambda p: p["x"])
    conns = sorted(load("conns.jsonl"), key=lambda p: p["x"])
    plot(ring, "ring: deliveries per second (window 32, ~2 M deliveries a run)",
         "clients (log scale)", "deliveries per second", 1e6, "M", True,
         os.path.join(OUT, "throughput.svg"))
    plot(conns, "conns: server memory with idle logged-in connections",
         "connections", "server resident memory (VmRSS)", 2 ** 20, " MiB", False,
         os.path.join(OUT, "memory.svg"))


if __name__ == "__main__":
    main()
