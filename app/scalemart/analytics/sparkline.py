"""A sparkline drawn on the server: `[[unix_ts, value], ...]` → a small SVG (a polyline, its max and min).

No chart library and no script: the console's <img> reloads it on each poll, and the page works air-gapped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 360, 64
_PAD_LEFT, _PAD = 100, 4  # the left margin holds the max/min labels


def _finite(points: Sequence[Sequence[Any]]) -> list[tuple[float, float]]:
    out = []
    for point in points:
        try:
            ts, value = float(point[0]), float(point[1])
        except (TypeError, ValueError, IndexError):  # a null, or a malformed point: not drawn
            continue
        if math.isfinite(ts) and math.isfinite(value):
            out.append((ts, value))
    return sorted(out)


def _svg(title: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff" stroke="#d0d4da"/>{body}</svg>'
    )


def message(title: str, text: str) -> str:
    """An SVG of the sparkline's size that says `text` instead (no data, a source down)."""
    return _svg(
        f"{title}: {text}",
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 + 4}" text-anchor="middle" '
        f'font-family="sans-serif" font-size="13" fill="#6b7280">{escape(text)}</text>',
    )


def render(
    title: str,
    points: Sequence[Sequence[Any]],
    label: Callable[[float], str] = "{:g}".format,
    span: tuple[float, float] | None = None,
) -> str:
    """The sparkline of `points` (nulls and NaN skipped); "no data" when none is left.

    `span` (start, end) fixes the time axis, so a series younger than the span starts part-way along
    rather than stretching to look like a full hour; without it the axis is the points' own."""
    data = _finite(points)
    if span is not None:
        data = [(ts, v) for ts, v in data if span[0] <= ts <= span[1]]
    if not data:
        return message(title, "no data")
    t0, t1 = span if span is not None and span[1] > span[0] else (data[0][0], data[-1][0])
    lo, hi = min(v for _, v in data), max(v for _, v in data)
    x_span, y_span = (t1 - t0) or 1.0, (hi - lo) or 1.0
    inner_w, inner_h = WIDTH - _PAD_LEFT - _PAD, HEIGHT - 2 * _PAD

    def xy(ts: float, value: float) -> str:
        x = _PAD_LEFT + (ts - t0) / x_span * inner_w if t1 > t0 else _PAD_LEFT + inner_w
        # a flat series sits in the middle rather than on the floor
        y = _PAD + inner_h / 2 if hi == lo else _PAD + (hi - value) / y_span * inner_h
        return f"{x:.1f},{y:.1f}"

    coords = " ".join(xy(ts, v) for ts, v in data)
    line = f'<polyline points="{coords}" fill="none" stroke="#2563eb" stroke-width="1.5" stroke-linejoin="round"/>'
    if len(data) == 1:
        x, y = coords.split(",")
        line = f'<circle cx="{x}" cy="{y}" r="2" fill="#2563eb"/>'
    labels = (
        f'<text x="{_PAD}" y="{_PAD + 10}" font-family="sans-serif" font-size="11" fill="#374151">'
        f"max {escape(label(hi))}</text>"
        f'<text x="{_PAD}" y="{HEIGHT - _PAD - 1}" font-family="sans-serif" font-size="11" fill="#374151">'
        f"min {escape(label(lo))}</text>"
    )
    return _svg(title, labels + line)
