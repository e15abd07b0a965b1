"""Log-log line charts of a few series, drawn as terminal text or as a hand-written SVG.

Both take ``{series name: [(x, y), ...]}`` with positive x and y; both axes are log scaled with
ticks at powers of ten, because the wait-cost curves span decades on both axes.
"""

from __future__ import annotations

import itertools
import math
from xml.sax.saxutils import escape

# Colour-blind-safe (Okabe–Ito) colours for the SVG, one marker letter each for the terminal.
COLOURS = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def decade_range(values: list[float]) -> tuple[float, float]:
    """The powers of ten just below the smallest and just above the largest value."""
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10
    return lo, hi


def _clean(series: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
    """Drop points a log axis cannot show (zero, negative, missing, infinite)."""
    ok = {}
    for name, pts in series.items():
        good = sorted((x, y) for x, y in pts if x and y and x > 0 and y > 0
                      and math.isfinite(x) and math.isfinite(y))
        if good:
            ok[name] = good
    return ok


def _tick_label(value: float) -> str:
    if value >= 1:
        return f"{value:,.0f}"
    return f"{value:g}"


def markers(names: list[str]) -> dict[str, str]:
    """One distinct letter per series, its first free letter (select s, poll p, epoll e)."""
    used: dict[str, str] = {}
    for name in names:
        letter = next((ch for ch in name.lower() if ch.isalpha() and ch not in used.values()),
                      "*")
        used[name] = letter
    return used


def terminal_chart(series: dict[str, list[tuple[float, float]]], *, x_label: str,
                   y_label: str, width: int = 56, height: int = 14) -> str:
    """A text chart: each series' points as its marker letter, joined by dots in log space."""
    series = _clean(series)
    if not series:
        return "(nothing to plot)"
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x_lo, x_hi = decade_range(xs)
    y_lo, y_hi = decade_range(ys)
    lx0, lx1, ly0, ly1 = map(math.log10, (x_lo, x_hi, y_lo, y_hi))

    def col(x: float) -> int:
        return round((math.log10(x) - lx0) / (lx1 - lx0) * (width - 1))

    def row(y: float) -> int:  # row 0 is the top
        return height - 1 - round((math.log10(y) - ly0) / (ly1 - ly0) * (height - 1))

    grid = [[" "] * width for _ in range(height)]
    mark = markers(list(series))
    for pts in series.values():
        for (xa, ya), (xb, yb) in itertools.pairwise(pts):
            steps = max(abs(col(xb) - col(xa)), abs(row(yb) - row(ya)), 1)
            for i in range(1, steps):
                f = i / steps  # interpolate in log space, as the axes are
                x = 10 ** (math.log10(xa) + f * (math.log10(xb) - math.log10(xa)))
                y = 10 ** (math.log10(ya) + f * (math.log10(yb) - math.log10(ya)))
                if grid[row(y)][col(x)] == " ":
                    grid[row(y)][col(x)] = "·"
    for name, pts in series.items():
        for x, y in pts:
            cell = grid[row(y)][col(x)]
            grid[row(y)][col(x)] = mark[name] if cell in " ·" else "+"  # + where series meet

    y_ticks = {row(10 ** d): _tick_label(10 ** d) for d in range(round(ly0), round(ly1) + 1)}
    pad = max(len(t) for t in y_ticks.values())
    lines = [f"{y_label}"]
    for r in range(height):
        tick = y_ticks.get(r)
        lines.append(f"{tick or '':>{pad}} {'┤' if tick else '│'}{''.join(grid[r])}")
    axis = [" "] * width
    labels = [" "] * (width + 8)
    for d in range(round(lx0), round(lx1) + 1):
        c = col(10 ** d)
        axis[c] = "┬"
        text = _tick_label(10 ** d)
        start = max(0, min(c - len(text) // 2, len(labels) - len(text)))
        labels[start:start + len(text)] = text
    lines.append(f"{'':>{pad}} └{''.join(axis)}")
    lines.append(f"{'':>{pad}}  {''.join(labels).rstrip()}  {x_label}")
    legend = "   ".join(f"{mark[n]} {n}" for n in series)
    lines.append(f"{'':>{pad}}  {legend}   (+ where they overlap; log scales)")
    return "\n".join(lines)


class _SvgPlot:
    """Where the SVG's plot area sits and how a value maps onto it (log10 on both axes)."""

    def __init__(self, series: dict[str, list[tuple[float, float]]], width: int,
                 height: int, notes: int) -> None:
        xs = [x for pts in series.values() for x, _ in pts]
        ys = [y for pts in series.values() for _, y in pts]
        self.left, self.top = 72, 48
        self.width = width - self.left - 150  # the legend's column on the right
        self.height = height - self.top - (64 + 16 * notes)  # the x labels, then the notes
        self.lx0, self.lx1 = map(math.log10, decade_range(xs))
        self.ly0, self.ly1 = map(math.log10, decade_range(ys))

    def px(self, x: float) -> float:
        return self.left + (math.log10(x) - self.lx0) / (self.lx1 - self.lx0) * self.width

    def py(self, y: float) -> float:
        return (self.top + self.height
                - (math.log10(y) - self.ly0) / (self.ly1 - self.ly0) * self.height)


def svg_chart(series: dict[str, list[tuple[float, float]]], *, title: str, x_label: str,
              y_label: str, notes: list[str] = (), width: int = 720, height: int = 440) -> str:
    """A standalone SVG document: log-log axes, decade grid, one coloured line per series."""
    series = _clean(series)
    if not series:
        raise ValueError("nothing to plot")
    plot = _SvgPlot(series, width, height, len(notes))
    left, top, plot_w, plot_h = plot.left, plot.top, plot.width, plot.height
    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" '
         'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">'),
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="28" font-size="16" font-weight="bold">{escape(title)}</text>',
    ]
    out += _svg_grid(plot)
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               'stroke="#333333"/>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 40}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(18 {top + plot_h / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    out += _svg_series(plot, series)
    for i, note in enumerate(notes):
        out.append(f'<text x="{left}" y="{top + plot_h + 60 + 16 * i}" font-size="11" '
                   f'fill="#555555">{escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_grid(plot: _SvgPlot) -> list[str]:
    """A line at each decade, labelled, and fainter ones at 2..9 times it."""
    out = []
    left, top, plot_w, plot_h = plot.left, plot.top, plot.width, plot.height
    for lo_d, hi_d, axis in ((round(plot.lx0), round(plot.lx1), "x"),
                             (round(plot.ly0), round(plot.ly1), "y")):
        for d in range(lo_d, hi_d + 1):
            for m in range(1, 10):
                v = m * 10 ** d
                if d == hi_d and m > 1:
                    break
                stroke = "#bbbbbb" if m == 1 else "#eeeeee"
                if axis == "x":  # a vertical line, its label below the plot
                    x = plot.px(v)
                    line, label = (x, top, x, top + plot_h), (x, top + plot_h + 18, "middle")
                else:  # a horizontal line, its label left of the plot
                    y = plot.py(v)
                    line, label = (left, y, left + plot_w, y), (left - 8, y + 4, "end")
                out.append('<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" '
                           'stroke="{}"/>'.format(*line, stroke))
                if m == 1:
                    out.append('<text x="{:.1f}" y="{:.1f}" text-anchor="{}">'.format(*label)
                               + f"{_tick_label(v)}</text>")
    return out


def _svg_series(plot: _SvgPlot, series: dict[str, list[tuple[float, float]]]) -> list[str]:
    """Each series a coloured line through its points, and its entry in the legend."""
    out = []
    px, py = plot.px, plot.py
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                   'stroke-width="2.5"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}">'
                       f'<title>{escape(name)}: {x:,.0f} fds, {y:.3g} µs</title></circle>')
        ly = plot.top + 16 + i * 22
        lx = plot.left + plot.width + 16
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="2.5"/>')
        out.append(f'<text x="{lx + 32}" y="{ly}">{escape(name)}</text>')
    return out
