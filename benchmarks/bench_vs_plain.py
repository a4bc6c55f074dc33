"""crsrisk's cross-validated AUROC beside plain, hand-written pipelines on the same cohort.

Run:  python benchmarks/bench_vs_plain.py COHORT_DIR --metrics RUN/metrics.json [--repeats 2]

For every task and landmark in the metrics file (written by ``crsrisk train`` on the same cohort), it fits
what a data scientist would write in ten lines - XGBoost with its default settings, and a logistic
regression (median imputation, scaling, C = 1) - on the same landmark features and labels, with plain
repeated stratified 5-fold cross-validation, and prints their AUROC beside crsrisk's tuned, calibrated
models and, on a synthetic cohort, the generator's ceiling. For a landmark super-model (the dynamic tasks) the
plain pipelines are fitted separately at each grid landmark, on that landmark's rows only (a per-landmark
pipeline written by hand), and compared with the super-model's out-of-fold AUROC at that landmark. Everything
but crsrisk's numbers is computed in this run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.io import load_cohort
from crsrisk.landmarks import Grid
from crsrisk.tasks import tasks_from_config


def plain_auroc(model: object, X: np.ndarray, y: np.ndarray, repeats: int) -> float:
    """Mean out-of-fold AUROC over repeats of stratified 5-fold cross-validation."""
    scores = []
    for repeat in range(repeats):
        folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=1, random_state=repeat)
        p = cross_val_predict(model, X, y, cv=folds, method="predict_proba")[:, 1]
        scores.append(roc_auc_score(y, p))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json of crsrisk train on this cohort")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cohort = load_cohort(args.cohort)
    document = json.loads(args.metrics.read_text())
    if document["cohort"]["fingerprint"] != cohort.fingerprint():
        raise SystemExit(f"{args.metrics} was not trained on {args.cohort} (cohort fingerprints differ)")
    # Like with like: the mean of each repeat's AUROC, as computed for the plain pipelines below.
    ours = {
        (r["task"], r["landmark"], r["model"]): float(
            np.mean(r.get("auroc_per_repeat") or [r["metrics"]["auroc"]["value"]])
        )
        for r in document["results"]
    }
    plain = {
        "plain xgboost": XGBClassifier(n_jobs=2, random_state=0),
        "plain logistic": make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(max_iter=5000),
        ),
    }
    print(
        f"{'task':<19} {'landmark':<16} {'crsrisk xgb':>11} {'crsrisk lr':>10} {'plain xgb':>9} "
        f"{'plain lr':>8} {'ceiling':>7}"
    )
    arrays = cohort_arrays(cohort)
    trained = {
        name: {k: v for k, v in settings.items() if k in ("landmarks", "horizon_hours")}
        for name, settings in document["tasks"].items()
    }  # the tasks exactly as trained
    for task in tasks_from_config({"tasks": trained}).values():
        for landmark in task.landmarks:
            data = task.dataset(cohort, landmark, arrays)
            grid = isinstance(landmark, Grid)
            for hours in data.counts["landmark_hours"] if grid else [None]:
                label = f"{hours:g}h" if grid else landmark.label
                rows = data.at(hours) if grid else np.arange(len(data.y))
                y = data.y[rows]
                if (task.name, label, "xgboost") not in ours or min(y.sum(), len(y) - y.sum()) < 5:
                    continue
                theirs = {
                    name: plain_auroc(model, data.X.iloc[rows].to_numpy(), y, args.repeats)
                    for name, model in plain.items()
                }
                ceiling = ours.get((task.name, label, "generator_ceiling"))
                print(
                    f"{task.name:<19} {label:<16} {ours[(task.name, label, 'xgboost')]:>11.3f} "
                    f"{ours[(task.name, label, 'logistic')]:>10.3f} {theirs['plain xgboost']:>9.3f} "
                    f"{theirs['plain logistic']:>8.3f} {'-' if ceiling is None else f'{ceiling:.3f}':>7}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
