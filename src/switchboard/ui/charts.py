"""Bar charts as geometry for server-rendered SVG: counts in, rectangles out. Pure.

A bar stacks two counts (`good` at the bottom, `bad` on top); a chart of one series leaves
`bad` at zero. The template draws the rectangles and gives every bar a text title, and the page
repeats the numbers in a table, so the chart is never the only way to read them.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 720
HEIGHT = 180
AXIS = 20  # room under the bars for the hour labels


@dataclass(frozen=True)
class Bucket:
    label: str  # shown under the bar and in its title, e.g. "14:00"
    good: int
    bad: int = 0


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    good_y: float
    good_h: float
    bad_y: float
    bad_h: float
    label: str
    title: str
    show_label: bool
    good: int
    bad: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: int  # the largest bar's total, the top of the scale
    baseline: float


def chart(buckets: list[Bucket], good: str, bad: str = "") -> Chart:
    """Bars scaled so the tallest bucket fills the plot; every fourth bar is labelled."""
    plot = HEIGHT - AXIS
    peak = max((b.good + b.bad for b in buckets), default=0)
    slot = WIDTH / max(len(buckets), 1)
    out = []
    for i, b in enumerate(buckets):
        scale = plot / peak if peak else 0.0
        good_h = b.good * scale
        bad_h = b.bad * scale
        title = f"{b.label}: {b.good} {good}" + (f", {b.bad} {bad}" if bad else "")
        out.append(
            Bar(
                x=round(i * slot + slot * 0.1, 2),
                width=round(slot * 0.8, 2),
                good_y=round(plot - good_h, 2),
                good_h=round(good_h, 2),
                bad_y=round(plot - good_h - bad_h, 2),
                bad_h=round(bad_h, 2),
                label=b.label,
                title=title,
                show_label=i % 4 == 0,
                good=b.good,
                bad=b.bad,
            )
        )
    return Chart(WIDTH, HEIGHT, tuple(out), peak, float(plot))
