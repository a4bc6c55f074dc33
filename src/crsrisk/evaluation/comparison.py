"""The comparison of a model's predictions with the published scores on one dataset, as metrics.json rows.

Shared by training (out-of-fold predictions), external validation and the model card, for every landmark kind.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from crsrisk.evaluation import metrics as m
from crsrisk.evaluation.bootstrap import bootstrap_ci, paired_difference
from crsrisk.evaluation.published import split_computable
from crsrisk.landmarks import Grid, Hours, Landmark
from crsrisk.tasks import Dataset


def result_rows(
    task: str,
    landmark: Landmark,
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    threshold: float,
    n_boot: int,
    seed: int,
    published: set[str],
    extra: Mapping[str, Any] | None = None,
    groups: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One metrics.json result per model: point estimates with bootstrap 95 % CIs, labelled by kind. With
    ``groups`` (a super-model's infusion of each row), whole infusions are resampled together."""
    functions = m.standard_metrics(threshold)
    rows = []
    for model, p in predictions.items():
        keep = ~np.isnan(p)
        rows.append(
            {
                "task": task,
                "landmark_hours": landmark.hours if isinstance(landmark, Hours) else None,
                "landmark": landmark.label,
                "model": model,
                "kind": "published" if model in published else ("ceiling" if model == "generator_ceiling" else "model"),
                "n": int(keep.sum()),
                "events": int(y[keep].sum()),
                "threshold": threshold,
                "metrics": bootstrap_ci(
                    y[keep],
                    p[keep],
                    functions,
                    n_boot=n_boot,
                    seed=seed,
                    groups=None if groups is None else groups[keep],
                ),
                **dict(extra or {}),
            }
        )
    _compare_with_published(rows, y, predictions, n_boot, seed, groups)
    return rows


def dataset_rows(
    data: Dataset,
    predictions: Mapping[str, np.ndarray],
    published: list[str],
    n_boot: int,
    seed: int,
    threshold: Callable[[np.ndarray], float],
    extra: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """metrics.json rows of one model's predictions on a dataset, beside the published scores: over all its rows
    (``scope`` "pooled" for a landmark grid) and, for a grid, at each grid landmark on its own. ``published`` names
    every score that applies; one that is not computable on the rows in question (``split_computable``) is listed
    in ``not_computable`` and never scored, whatever ``predictions`` holds for it."""
    computable, absent = split_computable(list(published), data.X)
    predictions = {name: values for name, values in predictions.items() if name not in absent}
    published = computable
    grid = isinstance(data.landmark, Grid)
    first = data.landmark.points()[0]
    common = {"label_rule_version": data.task.rule_version, **dict(extra or {})}
    rows = result_rows(
        data.task.name,
        data.landmark,
        data.y,
        predictions,
        threshold(data.y),
        n_boot,
        seed,
        set(published),
        {
            "risk_set": data.risk_set,
            "excluded": data.excluded,
            "horizon_hours": data.task.horizon(_hours_or_zero(first)),
            "scope": "pooled" if grid else "landmark",
            "not_computable": absent,
            **common,
        },
        groups=data.patient_ids.to_numpy() if grid else None,
    )
    if not grid:
        return rows
    for count in data.counts.to_dict(orient="records"):
        at = data.at(count["landmark_hours"])
        y = data.y[at]
        if min(int(y.sum()), int(len(y) - y.sum())) < 2:
            continue  # too few events here for a metric; the counts stay in the dataset's counts
        computable, here_absent = split_computable(published, data.X.iloc[at])
        subset = {
            name: values[at] for name, values in predictions.items() if name not in published or name in computable
        }
        rows += result_rows(
            data.task.name,
            Hours(count["landmark_hours"]),
            y,
            subset,
            threshold(y),
            n_boot,
            seed,
            set(computable),
            {
                "risk_set": int(count["risk_set"]),
                "excluded": int(count["excluded"]),
                "horizon_hours": data.task.horizon(count["landmark_hours"]),
                "scope": "landmark",
                "model_landmark": data.landmark.label,
                "not_computable": absent + here_absent,
                **common,
            },
        )
    return rows


def _hours_or_zero(landmark: Landmark) -> float:
    return landmark.hours if isinstance(landmark, Hours) else 0.0


def _compare_with_published(
    rows: list[dict[str, Any]],
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    n_boot: int,
    seed: int,
    groups: np.ndarray | None,
) -> None:
    """Set each trained model beside the best published score (by AUROC), never hidden: it "beats" it only when
    the paired bootstrap 95 % CI of the AUROC difference excludes zero; otherwise "not distinguishable" (or
    "worse" when the whole CI is below zero)."""
    published = [r for r in rows if r["kind"] == "published"]
    if not published:
        return
    best = max(published, key=lambda r: _value(r, "auroc"))
    for row in rows:
        if row["kind"] == "model":
            p, q = predictions[row["model"]], predictions[best["model"]]
            keep = ~np.isnan(p) & ~np.isnan(q)
            difference = paired_difference(
                y[keep], p[keep], q[keep], m.auroc, n_boot, seed, None if groups is None else groups[keep]
            )
            row["best_published"] = best["model"]
            row["auroc_difference_vs_best_published"] = difference
            row["beats_best_published"] = bool(difference["ci_low"] > 0)
            row["comparison"] = (
                "beats"
                if difference["ci_low"] > 0
                else "worse than"
                if difference["ci_high"] < 0
                else "not distinguishable from"
            )


def _value(row: Mapping[str, Any], metric: str) -> float:
    value = row["metrics"][metric]["value"]
    return float("-inf") if value is None or np.isnan(value) else float(value)
