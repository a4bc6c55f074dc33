"""ROC, reliability and decision-curve figures comparing several models on one task (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from crsrisk.evaluation.decision import net_benefit_curve  # noqa: E402


def _figure(title: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(5.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    return fig, ax


def roc_plot(y: np.ndarray, predictions: Mapping[str, np.ndarray], source: str = "out-of-fold") -> Figure:
    """ROC curves of every model, with the chance diagonal."""
    fig, ax = _figure(f"ROC ({source})")
    for name, p in predictions.items():
        keep = ~np.isnan(p)
        fpr, tpr, _ = roc_curve(y[keep], p[keep])
        ax.plot(fpr, tpr, label=name, lw=1.4)
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def calibration_plot(y: np.ndarray, predictions: Mapping[str, np.ndarray], bins: int = 10,
                     source: str = "out-of-fold") -> Figure:
    """Reliability diagram: observed event rate against mean predicted risk in risk deciles."""
    fig, ax = _figure(f"Calibration ({source}, deciles of predicted risk)")
    for name, p in predictions.items():
        keep = ~np.isnan(p)
        yk, pk = y[keep], p[keep]
        edges = np.unique(np.quantile(pk, np.linspace(0, 1, bins + 1)))
        groups = np.clip(np.searchsorted(edges, pk, side="right") - 1, 0, max(len(edges) - 2, 0))
        mean_p = np.array([pk[groups == g].mean() for g in np.unique(groups)])
        observed = np.array([yk[groups == g].mean() for g in np.unique(groups)])
        ax.plot(mean_p, observed, marker="o", ms=3, lw=1.2, label=name)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="ideal")
    ax.set_xlabel("predicted risk")
    ax.set_ylabel("observed rate")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def decision_curve_plot(y: np.ndarray, predictions: Mapping[str, np.ndarray], thresholds: np.ndarray) -> Figure:
    """Net benefit of each model against treat-all and treat-none across decision thresholds."""
    fig, ax = _figure("Decision curve")
    for name, p in predictions.items():
        keep = ~np.isnan(p)
        ax.plot(thresholds, net_benefit_curve(y[keep], p[keep], thresholds), lw=1.3, label=name)
    ax.plot(thresholds, net_benefit_curve(y, np.ones(len(y)), thresholds), ls="--", color="black", lw=1, label="treat all")
    ax.axhline(0, color="grey", ls=":", lw=1, label="treat none")
    prevalence = float(np.mean(y))
    ax.set_ylim(-0.05 * max(prevalence, 0.01), max(prevalence, 0.01) * 1.1)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Write a figure as PNG."""
    fig.tight_layout()
    fig.savefig(path, format="png")
