"""A patient's risk over time as a figure: each task's risk drawn as the steps it is (what ``predict`` said from
each point until the next), with doses and grade changes named in a strip of their own, in lanes, so no two
labels overlap and none runs off the edge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crsrisk.reporting.figures import new_figure, status

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpec
    from matplotlib.text import Annotation

    from crsrisk.scoring.trajectory import Trajectory

DRUGS = ("tocilizumab", "siltuximab", "anakinra", "corticosteroid")
RISK_INCHES, STRIP_INCHES, LANE_INCHES = 4.2, 0.45, 0.24  # the risk panel; the strip, and each lane of labels in it
FONT = 8.5


def event_label(event: dict[str, Any]) -> str:
    """A dose or a grade change in words: ``tocilizumab``, ``CRS grade 2``, ``ICANS resolved``."""
    if event["event"] in DRUGS:
        return str(event["event"])
    condition = event["event"].removesuffix("_grade").upper()
    value = event["value"]
    return f"{condition} resolved" if value == 0 else f"{condition} grade {value:g}"


def trajectory_figure(trajectory: Trajectory) -> Figure:
    """Draw the trajectory to its ``until_hours``: risk steps per task (a cross where its outcome was reached),
    dose lines, and below them the doses and grade changes in as many lanes as their labels need."""
    from matplotlib.ticker import PercentFormatter

    figure = new_figure(9.0, 6.5)
    grid = figure.add_gridspec(2, 1, height_ratios=[RISK_INCHES, STRIP_INCHES + LANE_INCHES])
    risk = figure.add_subplot(grid[0])
    strip = figure.add_subplot(grid[1], sharex=risk)
    end = trajectory.until_hours  # the course drawn to the hour it was read to, not to its last point
    for task in dict.fromkeys(p["task"] for p in trajectory.points):
        mine = [p for p in trajectory.points if p["task"] == task]
        reached = trajectory.already_occurred.get(task)
        last = end if reached is None else reached
        label = mine[-1]["horizon_text"] + ("" if reached is None else f" (reached at hour {reached:g})")
        (line,) = risk.plot(
            [p["hours"] for p in mine] + [last],
            [p["probability"] for p in mine] + [mine[-1]["probability"]],
            drawstyle="steps-post",
            lw=1.6,
            label=label,
        )
        if reached is not None:
            risk.plot([reached], [mine[-1]["probability"]], marker="X", ms=8, color=line.get_color())
    events = [e for e in trajectory.events if 0 <= e["hours"] <= end]  # those within the course drawn
    for event in events:
        if event["event"] in DRUGS:
            for axes in (risk, strip):
                axes.axvline(event["hours"], color="grey", lw=0.8, alpha=0.6)
    top = max([p["probability"] for p in trajectory.points] + [0.1])
    start = min([0.0] + [p["hours"] for p in trajectory.points])
    width = max(end - start, 1.0)
    risk.set(ylabel="calibrated risk", ylim=(0, min(1.0, top * 1.12)), xlim=(start, start + width * 1.01))
    risk.yaxis.set_major_formatter(PercentFormatter(1.0))
    risk.grid(color="#eeeeee", lw=0.6)
    risk.tick_params(labelbottom=False)
    figure.suptitle(
        f"Risk over time: what predict said at each hour, from everything before it. {status(trajectory.model)}",
        fontsize=10,
    )
    figure.legend(loc="outside lower center", fontsize=FONT, frameon=False, ncol=1)
    _events(figure, grid, strip, events)
    return figure


def _events(figure: Figure, grid: GridSpec, strip: Axes, events: list[dict[str, Any]]) -> None:
    """Name each event in the strip below the risk, each label in the first lane where it meets no other, and
    turned to end at its mark where it would run past the right edge; the figure grows by the lanes used."""
    strip.set_yticks([])
    strip.set_xlabel("hours after infusion")
    for side in ("top", "right", "left"):
        strip.spines[side].set_visible(False)
    texts, colours = [], []
    for event in events:
        colours.append("dimgrey" if event["event"] in DRUGS else "darkred")
        texts.append(
            strip.annotate(
                event_label(event),
                (event["hours"], 0),
                xytext=(4, 0),
                textcoords="offset points",
                ha="left",
                va="center",
                fontsize=FONT,
                color=colours[-1],
            )
        )
    lanes = _lanes(figure, strip, texts)
    for text, colour in zip(texts, colours):
        strip.plot([text.xy[0]], [text.xy[1]], marker="|", ms=9, color=colour)
    figure.set_figheight(figure.get_figheight() + LANE_INCHES * (lanes - 1))
    strip.set_ylim(lanes - 0.5, -0.5)
    grid.set_height_ratios([RISK_INCHES, STRIP_INCHES + LANE_INCHES * lanes])


def _lanes(figure: Figure, strip: Axes, texts: list[Annotation]) -> int:
    """Give each label (in time order) the first lane where it overlaps no label already placed, flipping those
    that would run past the strip's right edge to the left of their mark; returns the number of lanes."""
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]  # the Agg canvas of new_figure
    right = strip.get_window_extent(renderer).x1
    ends: list[float] = []  # per lane, the right edge (pixels) of its last label
    for text in sorted(texts, key=lambda t: t.xy[0]):
        box = text.get_window_extent(renderer)
        if box.x1 > right:
            text.set_horizontalalignment("right")
            text.xyann = (-4, 0)
            box = text.get_window_extent(renderer)
        lane = next((i for i, edge in enumerate(ends) if box.x0 > edge + 4), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = max(ends[lane], box.x1)
        text.xy = (text.xy[0], lane)
    return max(len(ends), 1)
