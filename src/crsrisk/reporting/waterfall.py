"""A waterfall of ``Steps`` as a figure: one row per reason, from the model's starting point (top) to the final
score (bottom), every bar labelled with its size, every label whole and inside the picture.

Two readers, one drawing: a clinician's chart on the probability scale (percentage points, ending at the
calibrated risk) and an auditor's in log-odds (SHAP values, ending at the raw score).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from crsrisk.features.phrases import log_odds
from crsrisk.reporting.figures import LOWERS, RAISES, new_figure, widen_to_fit
from crsrisk.reporting.steps import Steps

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LABEL_CHARACTERS = 50  # a row's label is wrapped to lines of at most this many characters
WIDTH_INCHES = 9.0


def _points(change: float) -> str:
    """A change of probability in percentage points (``+12.3 pts``; below 0.05 points ``+<0.1 pts``)."""
    points = 100 * change
    if change == 0:
        return "0 pts"
    return f"{points:+.1f} pts" if abs(points) >= 0.05 else ("+" if points > 0 else "-") + "<0.1 pts"


@dataclass(frozen=True)
class Scale:
    """How one scale is read: its axis, a step's size, a level (the start and the end)."""

    axis: str
    step: Callable[[float], str]
    level: Callable[[float], str]
    percent: bool


SCALES = {
    "probability": Scale("calibrated risk", _points, lambda p: f"{p:.1%}", True),
    "log-odds": Scale(
        "model output in log-odds (raw score before calibration)", log_odds, lambda v: f"{v:+.3f}", False
    ),
}


def _wrap(text: str, width: int = LABEL_CHARACTERS) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)) or text


def waterfall_figure(steps: Steps, title: str, start: str, end: str, note: str) -> Figure:
    """Draw ``steps``: ``start`` and ``end`` name the first and last rows (the starting point, the final score),
    ``title`` heads the chart and ``note`` (how to read it) runs under it."""
    from matplotlib.ticker import PercentFormatter

    scale = SCALES[steps.scale]
    labels = [_wrap(start)] + [_wrap(s.label) for s in steps.steps] + [_wrap(end)]
    lines = max(label.count("\n") + 1 for label in labels)
    row = max(0.42, 0.17 * lines + 0.12)
    figure = new_figure(WIDTH_INCHES, 2.6 + row * len(labels))
    axes = figure.add_subplot()
    marks = []
    axes.plot([steps.base], [0], marker="D", color="dimgrey", ms=6)
    marks.append(_beside(axes, steps.base, 0, scale.level(steps.base), 1, "dimgrey"))
    for y, s in enumerate(steps.steps, start=1):
        colour = RAISES if s.end > s.start else LOWERS if s.end < s.start else "dimgrey"
        axes.barh(y, s.end - s.start, left=s.start, height=0.62, color=colour, alpha=0.5 if s.group else 1.0)
        axes.plot([s.start, s.start], [y - 0.69 if y > 1 else y - 1, y - 0.31], color="grey", lw=0.6)
        marks.append(_beside(axes, s.end, y, scale.step(s.end - s.start), 1 if s.end >= s.start else -1, colour))
    last = len(labels) - 1
    axes.plot([steps.final, steps.final], [last - 0.69 if last > 1 else last - 1, last], color="grey", lw=0.6)
    axes.plot([steps.final], [last], marker="D", color="black", ms=7)
    marks.append(_beside(axes, steps.final, last, scale.level(steps.final), 1, "black", bold=True))
    axes.axvline(steps.final, color="black", lw=0.6, ls=":")
    axes.set_yticks(range(len(labels)), labels, fontsize=9)
    axes.get_yticklabels()[-1].set_fontweight("bold")
    axes.set_ylim(last + 0.7, -0.7)
    axes.tick_params(axis="y", length=0)
    axes.grid(axis="x", color="#eeeeee", lw=0.6)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if scale.percent:
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel(scale.axis, fontsize=9)
    levels = [steps.base, steps.final] + [s.end for s in steps.steps]
    spread = (max(levels) - min(levels)) or 1e-3
    axes.set_xlim(min(levels) - 0.05 * spread, max(levels) + 0.05 * spread)
    figure.suptitle(_wrap(title, 95), fontsize=11)
    figure.supxlabel(_wrap(note, 125), fontsize=8, color="dimgrey")
    widen_to_fit(figure, axes, marks)
    return figure


def _beside(axes, x: float, y: float, text: str, side: int, colour: str, bold: bool = False):
    """A value label just beyond ``x`` on the ``side`` (1: right, -1: left) of row ``y``."""
    return axes.annotate(
        text,
        (x, y),
        xytext=(5 * side, 0),
        textcoords="offset points",
        ha="left" if side > 0 else "right",
        va="center",
        fontsize=8.5,
        color=colour,
        fontweight="bold" if bold else "normal",
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85},  # the final risk's line
    )
