"""SHAP explanations: a patient's reasons chart (for clinicians, on the probability scale) and waterfall (for
auditors, in log-odds), a cohort's importance, beeswarm and dependence plots.

Attributions are XGBoost's exact tree SHAP (``pred_contribs``), so what is drawn is exactly what ``predict``
returns: a patient's two charts are drawn from its prediction (``reporting.steps``), a cohort's plots from its
attributions (``reporting.cohort_figures``), all by our own drawing code in clinical words.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from matplotlib.figure import Figure

from crsrisk.bundle.store import Bundle
from crsrisk.cohort.validated import Cohort
from crsrisk.errors import InputError, NothingScored
from crsrisk.features.phrases import log_odds, missing_lines
from crsrisk.features.spec import feature_info
from crsrisk.reporting.cohort_figures import Page, beeswarm_figure, dependence_figure, importance_figure, question
from crsrisk.reporting.figures import status, write_png
from crsrisk.reporting.steps import log_odds_steps, probability_steps
from crsrisk.reporting.waterfall import waterfall_figure
from crsrisk.scoring.cohort import CohortAttributions, cohort_attributions
from crsrisk.scoring.load import load_model
from crsrisk.scoring.patient import predict
from crsrisk.util.atomic import write_bytes
from crsrisk.util.outputs import write_table


def _title(prediction: Any) -> str:
    """The question a prediction answers, in words, with its answer: ``severe CRS ... in the next 48 h, as of hour
    40: 85.0% (high risk)``."""
    return f"{prediction['question']}: {prediction['probability']:.1%} ({prediction['band']} risk)"


def reasons_chart(prediction: Any, model: Mapping[str, Any], top: int = 8) -> Figure:
    """For clinicians: the ``top`` reasons in clinical words and the rest by theme, as steps on the probability
    scale from the model's starting point to exactly the calibrated risk (``model``: the prediction's model
    identity, for its status)."""
    return waterfall_figure(
        probability_steps(prediction, top),
        _title(prediction),
        "the model's starting point, before any of this patient's inputs",
        "this patient's risk",
        "The model's attribution (exact tree SHAP), not a cause. Each bar is one reason's step on the probability "
        "scale, taken in the order shown (top to bottom) from the starting point to this patient's calibrated "
        "risk; in another order a step would differ in size. The inputs not named are summed by theme. "
        + status(model),
    )


def shap_waterfall(prediction: Any, model: Mapping[str, Any], top: int = 8) -> Figure:
    """For auditors: the exact SHAP waterfall in log-odds, from the base value to the raw score, with each
    feature's value (``not measured`` when missing) and the rest summed by theme."""
    return waterfall_figure(
        log_odds_steps(prediction, top),
        _title(prediction),
        "base value E[f(X)]",
        f"raw score f(x), calibrated to {prediction['probability']:.1%}",
        "Exact tree SHAP (XGBoost pred_contribs) in log-odds: the base value plus every contribution is the raw "
        f"score (to float32 rounding), which the {prediction.model.calibrator.method} calibrator maps to the "
        f"probability. Inputs outside the top {top} are summed by theme. " + status(model),
    )


def explain_patient(
    patient,
    model=None,
    now_hours: float | None = None,
    out_dir: str | os.PathLike = ".",
    top: int = 8,
    audit: bool = True,
    audit_log: str | os.PathLike | None = None,
) -> tuple[str, list[Path]]:
    """Per applicable task a reasons chart and a SHAP waterfall (PNG), and a text summary of the top
    contributors; the prediction behind them is written to the audit log like any other (``audit=False`` opts
    out). No task scored at the hour is refused, saying why, rather than explained by nothing."""
    result = predict(patient, model=model, now_hours=now_hours, audit=audit, audit_log=audit_log)
    if not result.predictions:
        raise NothingScored(f"nothing to explain: {result.why_nothing_scored()}; give an earlier now_hours")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lines, files = [], []
    for p in result.predictions:
        name = f"{p['task']}_{p['landmark']}.png"
        files.append(write_png(reasons_chart(p, result.model, top), folder / f"reasons_{name}"))
        files.append(write_png(shap_waterfall(p, result.model, top), folder / f"waterfall_{name}"))
        lines.append(
            f"{p['task']} at {p['landmark']}: probability {p['probability']:.1%} ({p['band']} risk); "
            f"raw score {p['raw_score']:+.3f} = base {p['base_value']:+.3f} + contributions"
        )
        lines += [f"  {log_odds(c['shap']):>7}  {c['phrase']}" for c in p["contributions"][:top]]
        missing = missing_lines(p.missing(), p.clock)
        lines += ["  missing:", *(f"    {line}" for line in missing)] if missing else []
    lines += [f"{s['task']}: not scored ({s['reason']})" for s in result.not_applicable]
    summary = "\n".join(lines) + "\n"
    write_bytes(folder / "summary.txt", summary.encode(), private=True)
    return summary, files


def cohort_plots(
    attributions: CohortAttributions,
    out_dir: Path,
    model_status: str,
    source: str = "this cohort",
    dependence: int = 3,
) -> dict[str, Path]:
    """Global importance, beeswarm and dependence plots of the ``dependence`` most important inputs
    (``reporting.cohort_figures``), each titled with the model's question and footed with ``source`` (which
    cohort's rows) and ``model_status`` (``figures.status`` of the bundle)."""
    key = attributions.model.key
    page = Page(question(attributions.model), len(attributions.X), source, model_status)
    files = {
        "importance": write_png(importance_figure(attributions, page), out_dir / f"{key}_importance.png"),
        "beeswarm": write_png(beeswarm_figure(attributions, page), out_dir / f"{key}_beeswarm.png"),
    }
    for rank, name in enumerate(attributions.importance().index[:dependence], start=1):
        files[f"dependence_{rank}"] = write_png(
            dependence_figure(attributions, name, page), out_dir / f"{key}_dependence_{rank}_{name}.png"
        )
    return files


def explain_cohort(
    cohort: Cohort, model: str | os.PathLike | Bundle | None, out_dir: str | os.PathLike
) -> pd.DataFrame:
    """Every model's global importance (CSV) and plots; returns the importance table."""
    folder = Path(out_dir)
    bundle = load_model(model)
    tables = []
    for attributions in cohort_attributions(cohort, bundle).values():
        task_model = attributions.model
        cohort_plots(attributions, folder, status(bundle.identity.to_dict()))
        importance = attributions.importance()
        tables.append(
            pd.DataFrame(
                {
                    "model": task_model.key,
                    "feature": importance.index,
                    "label": [feature_info(n).label for n in importance.index],
                    "mean_abs_shap": importance.to_numpy(),
                }
            )
        )
    if not tables:
        raise InputError("no infusion of the cohort is in any bundled task's risk set: nothing to explain")
    table = pd.concat(tables, ignore_index=True)
    write_table(table, folder / "global_importance.csv", private=False)  # mean |SHAP| per feature: no patient rows
    return table
