"""What every patient picture shares: how it is written (PNG, atomically, owner-only) and how its labels are kept
whole (inside the figure, not on top of one another), so a test can check exactly what the file shows."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from crsrisk import notice
from crsrisk.util.atomic import write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

DPI = 100  # a 9-inch-wide figure is a 900-pixel-wide PNG
RAISES, LOWERS = "#c0392b", "#2471a3"  # a reason that raised the risk, one that lowered it


def new_figure(width: float, height: float) -> Figure:
    """A figure of this size in inches, laid out by matplotlib's constrained layout, on the Agg canvas (no pyplot
    state), so its texts can be measured before it is written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as drawn, as PNG bytes (no tight bounding box: the file is the figure a test measured)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def write_png(figure: Figure, path: str | os.PathLike) -> Path:
    """Write the figure atomically, readable by the owner only (it shows a patient's values)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, png_bytes(figure), private=True)


def widen_to_fit(figure: Figure, axes: Axes, texts: Sequence[Text], rounds: int = 4) -> None:
    """Widen the x-range of ``axes`` (of ``figure``) until every one of ``texts`` (labels beside bars or marks)
    lies inside it."""
    for _ in range(rounds):
        figure.draw_without_rendering()
        renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]  # the Agg canvas of new_figure
        inverse = axes.transData.inverted()
        low, high = axes.get_xlim()
        lows, highs = [low], [high]
        for text in texts:
            box = text.get_window_extent(renderer)
            (x0, _), (x1, _) = inverse.transform([(box.x0, box.y0), (box.x1, box.y1)])
            lows.append(min(x0, x1))
            highs.append(max(x0, x1))
        if min(lows) >= low and max(highs) <= high:
            return
        margin = 0.02 * (max(highs) - min(lows))
        axes.set_xlim(
            min(lows) - margin if min(lows) < low else low, max(highs) + margin if max(highs) > high else high
        )


def status(model: Mapping[str, Any]) -> str:
    """What every patient picture says of its model (``PredictionResult.model``, ``Trajectory.model``): the
    notice's one line."""
    return notice.line(notice.is_synthetic(model))
