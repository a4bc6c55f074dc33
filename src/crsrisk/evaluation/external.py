"""External validation: a trained bundle scored on a cohort, beside the published scores, in metrics.json shape.

The bundle's models are applied as they are (nothing is refitted). The published scores have parameters
that only a cohort can supply (the recalibration of a rule or score to a probability, the refitted
Teachey-style model), so they are fitted on this very cohort: optimistic for them, and said so in each row
(``fitted_on_this_cohort``). AUROC of a published rule or score does not depend on that fit.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from crsrisk.evaluation.published import PublishedScore, baselines_for, split_computable
from crsrisk.bundle.format import BUNDLE_MODEL
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.population import summarise
from crsrisk.cohort.validated import Cohort
from crsrisk.scoring.load import load_for_research
from crsrisk import notice
from crsrisk.cohort.summary import cohort_section, same_cohort_as_training
from crsrisk.evaluation.comparison import dataset_rows
from crsrisk.evaluation.cohort_size import anticipated_cstatistic, precision
from crsrisk.evaluation.metrics import auroc


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


def evaluate_bundle(
    cohort: Cohort,
    model: str | os.PathLike | Bundle | None = None,
    n_boot: int = 500,
    seed: int = 0,
    announce: Callable[[str], None] | None = None,
) -> Evaluation:
    """Metrics with bootstrap 95 % CIs of every bundled model on ``cohort``, beside the published scores.

    A model whose labelled risk set has fewer than 2 events or non-events is listed in ``skipped``. The
    threshold metrics use the event rate of this cohort as the threshold, as training does by default.
    ``announce`` (if given) hears each model's key as its evaluation starts (bootstraps take a while).
    """
    bundle = load_for_research(model)
    arrays = cohort_arrays(cohort)
    results, skipped, per_model, input_flags = [], [], {}, []
    sizes: dict[str, dict[str, Any]] = {}  # the CI widths this cohort can give, per model (Riley et al. 2021)
    for key, task_model in bundle.models.items():
        if announce is not None:
            announce(key)
        data = task_model.definition.dataset(cohort, task_model.landmark, arrays)
        if min(int(data.y.sum()), int(len(data.y) - data.y.sum())) < 2:
            skipped.append(
                {
                    "task": task_model.task,
                    "landmark": task_model.landmark.label,
                    "n": int(len(data.y)),
                    "events": int(data.y.sum()),
                    "reason": "fewer than 2 events or non-events in this cohort",
                }
            )
            continue
        predictions = {BUNDLE_MODEL: task_model.probability(data.X[task_model.feature_names].to_numpy())}
        published = baselines_for(task_model.task, task_model.landmark)
        computable, _ = split_computable(published, data.X)
        predictions |= {
            name: PublishedScore(name).fit(data.X, data.y).predict_proba(data.X)[:, 1] for name in computable
        }
        results += dataset_rows(
            data, predictions, published, n_boot, seed, lambda y: float(y.mean()), {"fitted_on_this_cohort": computable}
        )
        per_model[key] = TaskEvaluation(key, data.patient_ids.to_numpy(), data.y, predictions)
        observed = auroc(data.y, predictions[BUNDLE_MODEL])
        sizes[key] = asdict(precision(data.y, data.patient_ids, anticipated_cstatistic(task_model.metrics, observed)))
        input_flags += bundle.population.input_flags(
            key,
            task_model.feature_names,
            data.X[task_model.feature_names].to_numpy(),
            data.landmark_hours,
            task_model.words,
        )
    meta, section = bundle.metadata, cohort_section(cohort)
    document = {
        "kind": "external_validation",
        "cohort": section,
        "model": bundle.identity.to_dict() | {"git_commit": meta.git_commit},
        "same_cohort_as_training": same_cohort_as_training(meta.training_cohort_fingerprint, cohort),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "disclaimer": notice.disclaimer(meta.synthetic, cohort.synthetic),
        "n_boot": n_boot,
        "seed": seed,
        "results": results,
        "skipped": skipped,
        "precision": sizes,
        "population_flags": {
            "infusions": bundle.population.cohort_summary(cohort),
            "rows": summarise(input_flags),
            "recorded": bool(bundle.population.recorded),
        },
    }
    return Evaluation(document, per_model)
