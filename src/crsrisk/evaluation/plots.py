"""ROC, reliability and decision-curve figures comparing one or several models on one task (matplotlib, Agg).

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot, so nothing is registered in
pyplot's global figure manager: there is nothing to close and no state leaks between calls.
Each function takes labels ``y`` and ``predictions``: a mapping model name -> probabilities (NaN = no
prediction for that row, left out for that model) or a single array.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from crsrisk.errors import InputError
from crsrisk.evaluation.decision import net_benefit_curve
from crsrisk.evaluation.metrics import as_labels, auroc, calibration_bins, calibration_intercept_slope

Predictions = Mapping[str, np.ndarray] | np.ndarray  # several models, or one


def _models(y: object, predictions: Predictions) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Labels, and per model its (labels, probabilities) with NaN predictions dropped."""
    labels = as_labels(y)
    named = dict(predictions) if isinstance(predictions, Mapping) else {"model": predictions}
    out = {}
    for name, p in named.items():
        scores = np.asarray(p, dtype=float).ravel()
        if scores.shape != labels.shape:
            raise InputError(f"predictions[{name!r}]: {scores.size} values for {labels.size} labels")
        keep = ~np.isnan(scores)
        out[name] = (labels[keep], scores[keep])
    return labels, out


def _two_classes(y: np.ndarray) -> bool:
    return 0 < y.sum() < y.size


def _figure(title: str, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(5.5, height), dpi=100)
    fig.suptitle(title, fontsize=10)
    return fig


def roc_plot(y: object, predictions: Predictions, source: str = "out-of-fold") -> Figure:
    """ROC curves of every model (AUROC in the legend), with the chance diagonal."""
    _, models = _models(y, predictions)
    fig = _figure(f"ROC ({source})")
    ax = fig.add_subplot()
    for name, (yk, pk) in models.items():
        if _two_classes(yk):
            fpr, tpr, _ = roc_curve(yk, pk)
            ax.plot(fpr, tpr, lw=1.4, label=f"{name} (AUROC {auroc(yk, pk):.3f})")
        else:
            ax.plot([], [], label=f"{name} (one class only: no curve)")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    return fig


def calibration_plot(y: object, predictions: Predictions, bins: int = 10, source: str = "out-of-fold") -> Figure:
    """Reliability diagram (observed rate against mean predicted risk in quantile bins) over a risk histogram."""
    _, models = _models(y, predictions)
    fig = _figure(f"Calibration ({source}, {bins} quantile bins of predicted risk)", height=5.5)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for name, (yk, pk) in models.items():
        if not yk.size:
            continue
        table = calibration_bins(yk, pk, bins)
        intercept, slope = calibration_intercept_slope(yk, pk)
        (line,) = top.plot(
            table["mean_predicted"],
            table["observed_rate"],
            marker="o",
            ms=3,
            lw=1.2,
            label=f"{name} (intercept {intercept:.2f}, slope {slope:.2f})",
        )
        bottom.hist(pk, bins=40, range=(0, 1), histtype="step", color=line.get_color())
    top.plot([0, 1], [0, 1], ls=":", color="grey", label="ideal")
    top.set(ylabel="observed rate", xlim=(0, 1), ylim=(0, 1))
    top.tick_params(labelbottom=False)
    top.legend(fontsize=7, loc="upper left")
    bottom.set(xlabel="predicted risk", ylabel="infusions")
    return fig


def decision_curve_plot(
    y: object, predictions: Predictions, thresholds: np.ndarray, source: str = "out-of-fold"
) -> Figure:
    """Net benefit of each model against treat-all and treat-none across decision thresholds."""
    labels, models = _models(y, predictions)
    fig = _figure(f"Decision curve ({source})")
    ax = fig.add_subplot()
    for name, (yk, pk) in models.items():
        ax.plot(thresholds, net_benefit_curve(yk, pk, thresholds), lw=1.3, label=name)
    ax.plot(
        thresholds,
        net_benefit_curve(labels, np.ones(labels.size), thresholds),
        ls="--",
        color="black",
        lw=1,
        label="treat all",
    )
    ax.axhline(0, color="grey", ls=":", lw=1, label="treat none")
    prevalence = max(float(labels.mean()) if labels.size else 0.0, 0.01)
    ax.set(ylim=(-0.05 * prevalence, prevalence * 1.1), xlabel="threshold probability", ylabel="net benefit")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def landmark_plot(rows: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """AUROC and calibration slope with their 95 % CIs at each landmark hour, one line per model, from metrics.json
    result rows (rows without ``landmark_hours``, such as pooled ones, are left out)."""
    fig = _figure(title, height=5.5)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for name in dict.fromkeys(r["model"] for r in rows):
        points = sorted(
            (r["landmark_hours"], r["metrics"])
            for r in rows
            if r["model"] == name and r.get("landmark_hours") is not None and r.get("scope") == "landmark"
        )
        if not points:
            continue
        hours = np.array([h for h, _ in points])
        for ax, metric in ((top, "auroc"), (bottom, "calibration_slope")):
            value, low, high = (
                np.array([_number(m[metric].get(k)) for _, m in points]) for k in ("value", "ci_low", "ci_high")
            )
            (line,) = ax.plot(hours, value, marker="o", ms=3, lw=1.2, label=name)
            ax.fill_between(hours, low, high, color=line.get_color(), alpha=0.15, lw=0)
    top.axhline(0.5, ls=":", color="grey")
    bottom.axhline(1.0, ls=":", color="grey")
    top.set(ylabel="AUROC (95% CI)")
    bottom.set(ylabel="calibration slope (95% CI)", xlabel="landmark (hours after infusion)")
    top.legend(fontsize=7, loc="lower left", ncol=2)
    return fig


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def save_figure(fig: Figure, path: Path | str) -> Path:
    """Write a figure in the format named by the file suffix (PNG when there is none); returns the path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig.savefig(path, format=fmt, bbox_inches="tight")
    return path
