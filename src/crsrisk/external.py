"""External validation: a trained bundle scored on a cohort, beside the published scores, in metrics.json shape.

The bundle's models are applied as they are (nothing is refitted). The published scores have parameters
that only a cohort can supply (the recalibration of a rule or score to a probability, the refitted
Teachey-style model), so they are fitted on this very cohort: optimistic for them, and said so in each row
(``fitted_on_this_cohort``). AUROC of a published rule or score does not depend on that fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from crsrisk.baselines import PublishedScore, baselines_for
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.features.build import build_features
from crsrisk.scoring import load_model, predict_cohort
from crsrisk.summary import cohort_section, disclaimer
from crsrisk.tasks import label_table, landmark_label, landmark_times
from crsrisk.training.results import result_rows

BUNDLE_MODEL = "xgboost"  # the name the bundle's models carry in result rows, as in training's metrics.json


@dataclass(frozen=True)
class TaskEvaluation:
    """One bundled model on the cohort: who was labelled, their labels, and every model's probabilities."""

    key: str
    ids: np.ndarray
    y: np.ndarray
    predictions: dict[str, np.ndarray]


@dataclass(frozen=True)
class Evaluation:
    """Everything ``evaluate_bundle`` found: the metrics document, and per model what plots need."""

    document: dict[str, Any]
    per_model: dict[str, TaskEvaluation]


def evaluate_bundle(cohort: Cohort, model: str | os.PathLike | Bundle | None = None, n_boot: int = 500,
                    seed: int = 0) -> Evaluation:
    """Metrics with bootstrap 95 % CIs of every bundled model on ``cohort``, beside the published scores.

    A model whose labelled risk set has fewer than 2 events or non-events is listed in ``skipped``. The
    threshold metrics use the event rate of this cohort as the threshold, as training does by default.
    """
    bundle = load_model(model)
    scores = predict_cohort(cohort, bundle).set_index(["task", "landmark", "patient_id"]).sort_index()
    arrays = cohort_arrays(cohort)
    results, skipped, per_model = [], [], {}
    for key, task_model in bundle.models.items():
        labels = label_table(cohort, task_model.definition, task_model.landmark)
        kept = labels[~labels["excluded"]]
        y = kept["label"].astype(int).to_numpy()
        label = landmark_label(task_model.landmark)
        if min(int(y.sum()), int(len(y) - y.sum())) < 2:
            skipped.append({"task": task_model.task, "landmark": label, "n": int(len(y)), "events": int(y.sum()),
                            "reason": "fewer than 2 events or non-events in this cohort"})
            continue
        ids = kept["patient_id"].to_numpy()
        predictions = {BUNDLE_MODEL: scores.loc[(task_model.task, label)].loc[ids, "probability"].to_numpy()}
        published = baselines_for(task_model.task, task_model.landmark)
        if published:
            X = build_features(cohort, landmark_times(cohort, task_model.definition, task_model.landmark, arrays),
                               window=task_model.window, arrays=arrays).loc[ids]
            predictions |= {name: PublishedScore(name).fit(X, y).predict_proba(X)[:, 1] for name in published}
        results += result_rows(task_model.task, task_model.landmark, y, predictions, float(y.mean()), n_boot, seed,
                               set(published), {"risk_set": int(len(labels)), "excluded": int(labels["excluded"].sum()),
                                                "label_rule_version": task_model.label_rule_version,
                                                "fitted_on_this_cohort": published})
        per_model[key] = TaskEvaluation(key, ids, y, predictions)
    meta, section = bundle.metadata, cohort_section(cohort)
    document = {"kind": "external_validation", "cohort": section,
                "model": {"path": str(bundle.path), "bundle_sha256": bundle.digest,
                          "training_cohort_fingerprint": meta.get("training_cohort_fingerprint"),
                          "synthetic": meta.get("synthetic"), "git_commit": meta.get("git_commit")},
                "same_cohort_as_training": meta.get("training_cohort_fingerprint") == section["fingerprint"],
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "disclaimer": disclaimer(cohort), "n_boot": n_boot, "seed": seed,
                "results": results, "skipped": skipped}
    return Evaluation(document, per_model)
