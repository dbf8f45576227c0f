"""Geometry of the console's server-rendered SVG charts: no script, no charting library.

A chart is a row of buckets (days or hours), each a bar stacked from segments, with an
optional expected value (a dashed line) and band (a shaded strip) per bucket, markers that
link to incidents, a y axis in dollars and date labels. Each bar carries its figures as an
SVG <title> (the browser shows it on hover) and may link to the records behind it.
"""

import math
from dataclasses import dataclass
from datetime import date, datetime
from html import escape

from django.utils.safestring import mark_safe

from analytics.admin.display import money

PALETTE = ("#417690", "#d0632a", "#5b8a72", "#c99a2e", "#8e6bb5", "#4aa3b5")
OTHER_COLOUR = "#9e9e9e"
SEVERITY_MARKER_COLOURS = {
    "LOW": "#5b8a72",
    "MEDIUM": "#c99a2e",
    "HIGH": "#d0632a",
    "CRITICAL": "#b3261e",
}
LABEL_GAP = 56  # px between the centres of two x labels


def nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k that is at least `raw` (> 0)."""
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


@dataclass(frozen=True)
class ChartBucket:
    start: date | datetime
    label: str  # how the hover text names the bucket: "Tue 2026-03-10", "Mar 10 14:00"
    segments: tuple[tuple[str, float], ...]  # (key, cents), bottom first; zero ones skipped
    total: float
    expected: float | None = None
    band: tuple[float, float] | None = None
    url: str | None = None
    highlight: bool = False


@dataclass(frozen=True)
class ChartMarker:
    bucket_index: int
    title: str
    url: str
    severity: str = "MEDIUM"


def key_colours(keys: list[str], *, other: str = "other") -> dict[str, str]:
    colours, index = {}, 0
    for key in keys:
        if key == other:
            colours[key] = OTHER_COLOUR
        else:
            colours[key] = PALETTE[index % len(PALETTE)]
            index += 1
    return colours


def _polylines(points: list[tuple[float, float] | None]) -> list[str]:
    """Points joined into lines, broken where a point is missing."""
    lines, current = [], []
    for point in points:
        if point is None:
            if len(current) > 1:
                lines.append(" ".join(f"{x},{y}" for x, y in current))
            current = []
        else:
            current.append(point)
    if len(current) > 1:
        lines.append(" ".join(f"{x},{y}" for x, y in current))
    return lines


def _hover(bucket: ChartBucket, keys_shown: bool) -> str:
    lines = [f"{bucket.label}: {money(bucket.total)}"]
    if bucket.expected is not None:
        expected = f"expected {money(bucket.expected)}"
        if bucket.band is not None and bucket.band[0] != bucket.band[1]:
            expected += f" ({money(bucket.band[0])} to {money(bucket.band[1])})"
        lines.append(expected)
    if keys_shown:
        lines += [f"{key}: {money(cents)}" for key, cents in reversed(bucket.segments) if cents]
    return "\n".join(lines)


# complexity: bars, bands, the expected line, ticks, labels and markers are laid out on the same
# scales (y_of, centre), so they are built in one frame
def stacked_chart(
    buckets: list[ChartBucket],
    *,
    keys: list[str],
    markers: list[ChartMarker] = (),
    x_label=lambda start: f"{start:%b} {start.day}",
    label_every: int | None = None,
    width: int = 960,
    height: int = 260,
) -> dict:
    """The geometry the chart templates draw: bars, band, expected line, markers, axes.

    `x_label(start)` names a bucket on the x axis; `label_every` labels only buckets whose
    index is a multiple of it (default: as many as fit LABEL_GAP apart).
    """
    left, right, top, bottom = 72, 12, 22, 26
    plot_width, plot_height = width - left - right, height - top - bottom
    colours = key_colours(keys)
    chart = {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "plot_right": left + plot_width,
        "plot_height": plot_height,
        "baseline": top + plot_height,
        "y_label_x": left - 6,
        "bars": [],
        "legend": [{"key": key, "colour": colours[key]} for key in reversed(keys)],
    }
    if not buckets:
        return chart
    largest = max(max(b.total, b.expected or 0.0, b.band[1] if b.band else 0.0) for b in buckets)
    step = nice_step(max(largest, 4.0) / 4)  # cents; at least a cent per step
    ceiling = step * max(math.ceil(largest / step), 1)
    baseline = top + plot_height
    slot = plot_width / len(buckets)
    gap = 1 if slot > 4 else 0

    def y_of(cents: float) -> float:
        return round(baseline - cents / ceiling * plot_height, 1)

    def centre(index: int) -> float:
        return round(left + (index + 0.5) * slot, 1)

    for index, bucket in enumerate(buckets):
        rects, running = [], 0.0
        for key, cents in bucket.segments:
            if cents <= 0:
                continue
            y_top = y_of(running + cents)
            rects.append(
                {
                    "key": key,
                    "colour": colours.get(key, OTHER_COLOUR),
                    "y": y_top,
                    "height": round(y_of(running) - y_top, 1),
                }
            )
            running += cents
        band = None
        if bucket.band is not None:
            band = {
                "y": y_of(bucket.band[1]),
                "height": round(y_of(bucket.band[0]) - y_of(bucket.band[1]), 1),
            }
        chart["bars"].append(
            {
                "index": index,
                "slot_x": round(left + index * slot, 1),
                "x": round(left + index * slot + gap, 1),
                "width": round(max(slot - 2 * gap, 0.5), 1),
                "rects": rects,
                "band": band,
                "hover": _hover(bucket, len(keys) > 1),
                "url": bucket.url,
                "highlight": bucket.highlight,
                "start": bucket.start,
            }
        )
    expected_points = [
        (centre(i), y_of(b.expected)) if b.expected is not None else None
        for i, b in enumerate(buckets)
    ]
    ticks, value = [], 0.0
    while value <= ceiling + step / 2:
        ticks.append({"y": y_of(value), "label": money(value)})
        value += step
    if label_every is None:
        label_every = max(1, math.ceil(LABEL_GAP / slot))
    x_labels = [
        {"x": centre(i), "label": x_label(b.start)}
        for i, b in enumerate(buckets)
        if i % label_every == 0
    ]
    stacked: dict[int, int] = {}
    marker_rows = []
    for marker in markers:
        row = stacked.get(marker.bucket_index, 0)
        stacked[marker.bucket_index] = row + 1
        marker_rows.append(
            {
                "x": centre(marker.bucket_index),
                "y": round(top - 10 + row * 12, 1),
                "title": marker.title,
                "url": marker.url,
                "colour": SEVERITY_MARKER_COLOURS.get(marker.severity, "#b3261e"),
            }
        )
    chart.update(
        slot=round(slot, 1),
        ticks=ticks,
        expected_lines=_polylines(expected_points),
        x_labels=x_labels,
        markers=marker_rows,
    )
    return chart


def _attrs(**values) -> str:
    return " ".join(
        f'{name.replace("_", "-")}="{escape(str(value))}"' for name, value in values.items()
    )


def chart_svg(chart: dict, *, label: str) -> str:
    """The chart as SVG markup (safe to put in a page): drawn here rather than in a template
    loop, which costs several times as much for a week of hourly bars."""
    left, top, right, base = chart["left"], chart["top"], chart["plot_right"], chart["baseline"]
    parts = [
        f'<svg class="console-chart" id="{escape(chart.get("id", "chart"))}" '
        f'viewBox="0 0 {chart["width"]} {chart["height"]}" width="{chart["width"]}" '
        f'height="{chart["height"]}" role="img" aria-label="{escape(label)}">'
    ]
    for tick in chart.get("ticks", ()):
        parts.append(
            f'<line class="grid" {_attrs(x1=left, x2=right, y1=tick["y"], y2=tick["y"])}></line>'
        )
        parts.append(
            f'<text class="y-label" {_attrs(x=chart["y_label_x"], y=tick["y"])} dy="4" '
            f'text-anchor="end">{escape(tick["label"])}</text>'
        )
    for bar in chart["bars"]:
        if bar["band"]:
            band = _attrs(
                x=bar["slot_x"],
                y=bar["band"]["y"],
                width=chart["slot"],
                height=bar["band"]["height"],
            )
            parts.append(f'<rect class="band" {band}></rect>')
    for bar in chart["bars"]:
        parts += _bar_svg(bar, chart)
    for line in chart.get("expected_lines", ()):
        parts.append(f'<polyline class="expected" points="{line}"></polyline>')
    parts.append(f'<line class="axis-line" {_attrs(x1=left, x2=right, y1=base, y2=base)}></line>')
    parts.append(f'<line class="axis-line" {_attrs(x1=left, x2=left, y1=top, y2=base)}></line>')
    for x_label in chart.get("x_labels", ()):
        parts.append(
            f'<text class="x-label" {_attrs(x=x_label["x"], y=base)} dy="16" '
            f'text-anchor="middle">{escape(x_label["label"])}</text>'
        )
    for marker in chart.get("markers", ()):
        parts.append(
            f'<a href="{escape(marker["url"])}" class="marker">'
            f"<title>{escape(marker['title'])}</title>"
            f'<path d="M{marker["x"]},{marker["y"]} m-6,-5 h12 l-6,9 z" '
            f'fill="{escape(marker["colour"])}"></path></a>'
        )
    parts.append("</svg>")
    # Every value above is escaped or a number.
    return mark_safe("".join(parts))


def _bar_svg(bar: dict, chart: dict) -> list[str]:
    """One bucket's group: its hover title, the hit area the width of its slot, its stacked
    segments, all inside its link when it has one."""
    css = "bucket highlight" if bar["highlight"] else "bucket"
    parts = [f'<g class="{css}" data-index="{bar["index"]}"><title>{escape(bar["hover"])}</title>']
    if bar["url"]:
        parts.append(f'<a href="{escape(bar["url"])}" class="bucket-link">')
    hit = _attrs(x=bar["slot_x"], y=chart["top"], width=chart["slot"], height=chart["plot_height"])
    parts.append(f'<rect class="hit" {hit}></rect>')
    for rect in bar["rects"]:
        segment = _attrs(
            fill=rect["colour"],
            x=bar["x"],
            y=rect["y"],
            width=bar["width"],
            height=rect["height"],
        )
        parts.append(f'<rect class="segment" {segment}></rect>')
    if bar["url"]:
        parts.append("</a>")
    parts.append("</g>")
    return parts
