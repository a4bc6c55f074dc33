"""The auditor's model card: one self-contained HTML file (images embedded) about a bundle and a cohort.

It states intended use and status, summarises the training data, defines the tasks, shows cross-validated
performance beside the published scores (exactly the numbers of the training run's metrics.json),
performance, calibration, decision curves and subgroups on the cohort given (ideally held out), SHAP
global importance, attribution stability across cross-validation folds, and a TRIPOD+AI checklist.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from crsrisk.bundle.format import BUNDLE_MODEL
from crsrisk.bundle.bands import RULE
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.arrays import cohort_arrays
from crsrisk.cohort.validated import Cohort
from crsrisk.evaluation.plots import calibration_plot, decision_curve_plot, landmark_plot, roc_plot
from crsrisk.evaluation.subgroups import age_band, subgroup_metrics
from crsrisk.reporting.explain import cohort_attributions, cohort_plots
from crsrisk.reporting.figures import status
from crsrisk.evaluation.external import TaskEvaluation, evaluate_bundle
from crsrisk.landmarks import Grid
from crsrisk.evaluation.recalibration import LINEAGE_HEADER, lineage_rows
from crsrisk.evaluation.updating import LINEAGE_HEADER as UPDATE_HEADER, lineage_rows as update_rows
from crsrisk.scoring.load import load_for_research
from crsrisk import notice
from crsrisk.cohort.summary import cohort_summary
from crsrisk.training.artifacts import COMPARISON_HEADER, comparison_rows, interval_text, skipped_lines
from crsrisk.scoring.trajectory import trajectory_of

INTENDED_USE = (
    "Estimate, for children and young adults with B-cell ALL receiving CD19 CAR T cells, the risk of severe "
    "CRS (ASTCT grade >= 3), ICANS, and tocilizumab-refractory CRS: at fixed landmarks (before infusion, 36 h "
    "after it, at the first tocilizumab dose) and, with the dynamic landmark super-models, at any hour of the "
    "first week ('in the next 48 h?', asked every 12 h and after each new measurement), as a research aid for "
    "studying early-warning signals. It does not replace ASTCT grading, clinical judgement or institutional "
    "protocols."
)
IMAGE_WIDTH = 540  # pixels: the card shows a figure at most 520 px wide, two or three to a row
IMAGE_COLOURS = 64  # plots are flat colours: a 64-colour palette keeps them sharp at a fraction of the bytes

# TRIPOD+AI (Collins et al., BMJ 2024) items, grouped, with the report section that covers each.
TRIPOD_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("Title/abstract: identify a prediction model study, target population, outcome", "intended-use", "yes"),
    ("Background and objectives: intended use and users", "intended-use", "yes"),
    (
        "Data source and study dates",
        "training-data",
        "partial: cohort fingerprint and size; dates are the data provider's",
    ),
    ("Participants: eligibility, setting, centres", "training-data", "yes (centres, size, synthetic flag)"),
    ("Outcome definition and timing (incl. rule versions)", "tasks", "yes"),
    ("Predictors: definition, timing (landmarks), leakage guard", "tasks", "yes: inputs strictly before the landmark"),
    ("Sample size and events per candidate predictor", "performance-cv", "yes (n and events per row)"),
    ("Missing data handling", "tasks", "yes: native in XGBoost, median imputation + indicators in logistic"),
    ("Analytical methods: model type, tuning, internal validation", "performance-cv", "yes: nested CV"),
    ("Class imbalance / recalibration", "performance-cv", "yes: Platt or isotonic inside training folds"),
    ("Fairness: performance across subgroups", "subgroups", "yes (small-group warnings)"),
    ("Model output and risk bands", "model", "yes"),
    ("Performance: discrimination with CIs", "performance-cv", "yes"),
    ("Performance: calibration (intercept, slope, plot)", "calibration", "yes"),
    ("Clinical utility: decision curve", "calibration", "yes"),
    ("Comparison with existing models (published scores)", "performance-cv", "yes"),
    ("Model explainability", "shap", "yes: exact tree SHAP"),
    ("Model updating / external validation", "performance-cohort", "partial: on the cohort given to this report"),
    ("Interpretation, limitations", "limitations", "yes"),
    (
        "Code and model availability; data/code/params behind the model",
        "model",
        "yes: bundle hash, git commit, MLflow run",
    ),
)


def _sized_png(data: bytes) -> bytes:
    """A PNG sized for the card: at most ``IMAGE_WIDTH`` pixels wide, in a palette of ``IMAGE_COLOURS``, so forty
    figures stay well under a megabyte (a plot drawn for print at 150 dpi is several times larger)."""
    picture = Image.open(io.BytesIO(data)).convert("RGB")
    if picture.width > IMAGE_WIDTH:
        picture = picture.resize(
            (IMAGE_WIDTH, round(picture.height * IMAGE_WIDTH / picture.width)), Image.Resampling.LANCZOS
        )
    out = io.BytesIO()
    picture.quantize(colors=IMAGE_COLOURS, method=Image.Quantize.FASTOCTREE).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _image(fig_or_path: Figure | Path) -> str:
    """An <img> with the PNG embedded as base64, so the file opens offline."""
    if isinstance(fig_or_path, Figure):
        buffer = io.BytesIO()
        fig_or_path.tight_layout()
        fig_or_path.savefig(buffer, format="png", dpi=90)
        data = buffer.getvalue()
    else:
        data = Path(fig_or_path).read_bytes()
    encoded = base64.b64encode(_sized_png(data)).decode()
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _contents(body: str) -> str:
    """The table of contents: a link to every section heading of the card, in order."""
    links = "".join(f"<li><a href='#{a}'>{t}</a></li>" for a, t in re.findall(r"<h2 id='([^']+)'>(.*?)</h2>", body))
    return f"<nav id='contents'><h2>Contents</h2><ol>{links}</ol></nav>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def _subgroups(cohort: Cohort, per_model: Mapping[str, TaskEvaluation], n_boot: int, seed: int) -> pd.DataFrame:
    patients = cohort.patients.set_index("patient_id")
    frames = []
    for key, data in per_model.items():
        info = patients.loc[data.ids]
        groups = {
            "age band": age_band(info["age_years"]),
            "sex": info["sex"],
            "product": info["product"],
            "costimulatory domain": info["costim_domain"],
            "centre": info["center"],
        }
        for name, values in groups.items():
            table = subgroup_metrics(
                data.y,
                data.predictions[BUNDLE_MODEL],
                pd.Series(values.to_numpy(), name=name),
                n_boot=n_boot,
                seed=seed,
            )
            frames.append(table.assign(model=key))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _stability_rows(training: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for r in training.get("results", []):
        stability = r.get("attribution_stability")
        if r.get("model") == BUNDLE_MODEL and stability:
            top = ", ".join(
                f"{t['feature']} ({t['folds_in_top']}/{stability['folds']})" for t in stability["top_features"][:6]
            )
            rows.append(
                [
                    r["task"],
                    r["landmark"],
                    stability["folds"],
                    stability["mean_spearman"],
                    stability["mean_top_overlap"],
                    top,
                ]
            )
    return rows


def _by_landmark(
    bundle: Bundle, training: Mapping[str, Any], here: list[dict[str, Any]], cohort: Cohort, work: Path, source: str
) -> str:
    """AUROC and calibration slope by landmark for each landmark super-model (cross-validated and on this cohort,
    labelled ``source``, with 95% CIs), and one infusion's risk trajectory: how the dynamic models are read."""
    grids = [m for m in bundle.models.values() if isinstance(m.landmark, Grid)]
    if not grids:
        return ""
    out = [
        "<h2 id='by-landmark'>Performance by landmark (dynamic models)</h2><p>Each super-model answers "
        "'in the next 48 h?' at any hour of the first week; here it is scored at every grid landmark on its own. "
        "Shaded: bootstrap 95% CI.</p>"
    ]
    for m in grids:
        trained = [r for r in training.get("results", []) if r["task"] == m.task]
        local = [r for r in here if r["task"] == m.task]
        out.append(
            f"<h3>{html.escape(m.key)}</h3><div class='plots two'>"
            + (_image(landmark_plot(trained, f"{m.task}: cross-validated (training run)")) if trained else "")
            + (_image(landmark_plot(local, f"{m.task}: {source}")) if local else "")
            + "</div>"
        )
    events = cohort.events
    severe = events[(events["event"] == "crs_grade") & (events["value"] >= 3) & (events["hours_since_infusion"] > 48)]
    example = str(severe["patient_id"].iloc[0] if len(severe) else cohort.patients["patient_id"].iloc[0])
    trajectory = trajectory_of(bundle, cohort_arrays(cohort.subset([example])), until_hours=168.0)
    path = trajectory.plot(work / "plots" / "example_trajectory.png")
    out.append(
        f"<h3>An example infusion's risk over time ({html.escape(example)}, {source})</h3><p>What predict says every "
        "12 h and after each new measurement, from everything recorded before that hour; vertical lines are "
        "doses, red labels grade changes, dashed lines the hour an outcome occurred.</p>" + _image(path)
    )
    return "".join(out)


PARENT_FIELDS = (
    "parent_bundle_sha256",
    "parent_bundle_path",
    "training_cohort_fingerprint",
    "local_cohort_fingerprint",
    "local_cohort_size",
    "local_cohort_synthetic",
)  # what a derived bundle's card shows of its parent and the local cohort (recalibration and update alike)


def _lineage_section(
    anchor: str, title: str, intro: str, lineage: Mapping[str, Any], fields: tuple[str, ...], rows_table: str
) -> str:
    """A derived bundle's lineage: heading, what was done, the parent and cohort fields, then the per-model table."""
    return (
        f"<h2 id='{anchor}'>{title}</h2><p>{intro}</p>"
        + _table(["field", "value"], [[k, lineage.get(k)] for k in (*PARENT_FIELDS, *fields)])
        + rows_table
    )


def _recalibration_section(lineage: Mapping[str, Any] | None) -> str:
    """The bundle's recalibration lineage (parent, cohorts, method, calibration before/after), when it has one."""
    if not lineage:
        return ""
    return _lineage_section(
        "recalibration",
        "Local recalibration",
        "The boosters are the parent bundle's; only the calibrators were refitted on a local cohort. 'After' is "
        "measured on that same cohort (optimistic).",
        lineage,
        ("method", "date", "bands"),
        _table(LINEAGE_HEADER, lineage_rows(dict(lineage))),
    )


def _update_section(lineage: Mapping[str, Any] | None) -> str:
    """The bundle's update lineage (parent, both cohorts, the method chosen per model and the tests), when it has one."""
    if not lineage:
        return ""
    return _lineage_section(
        "update",
        "Model update to a local cohort",
        "Each model was updated by closed testing on a local cohort; its method and the tests that chose it are "
        "below (figures cross-validated on that cohort).",
        lineage,
        ("alpha", "procedure", "date", "bands"),
        _table(UPDATE_HEADER, update_rows(dict(lineage))),
    )


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.82em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}.banner{background:#b00020;color:#fff;padding:.8em 1em;font-weight:600;border-radius:4px}
.warn{color:#a15c00}img{max-width:520px;margin:4px;border:1px solid #eee}.plots{display:flex;flex-wrap:wrap}
.plots img{width:32%;min-width:300px}.plots.two img{width:48%}nav ol{columns:2;font-size:.9em}"""


def build_model_card(
    model: str | os.PathLike | Bundle | None,
    cohort: Cohort,
    n_boot: int = 300,
    seed: int = 0,
    announce: Callable[[str], None] | None = None,
) -> str:
    """The model card as one HTML string; ``announce`` (if given) hears each step as it starts (the whole build
    takes about a minute on a laptop's cohort of a few thousand infusions). Its figures are drawn into a private
    scratch folder, embedded, and removed with it: the card is the one file, and no patient's picture is left
    behind in a shared folder."""
    with tempfile.TemporaryDirectory(prefix="crsrisk-card-") as scratch:
        return _card(model, cohort, n_boot, seed, Path(scratch), announce)


def _card(
    model: str | os.PathLike | Bundle | None,
    cohort: Cohort,
    n_boot: int,
    seed: int,
    work: Path,
    announce: Callable[[str], None] | None,
) -> str:
    """``build_model_card`` with ``work``, the scratch folder its figures are drawn into."""
    step = announce or (lambda _: None)
    bundle = load_for_research(model)
    meta = bundle.metadata
    training = meta.training_metrics
    summary = cohort_summary(cohort)
    order = {key: i for i, key in enumerate(bundle.models, 1)}
    evaluation = evaluate_bundle(
        cohort,
        bundle,
        n_boot,
        seed,
        lambda key: step(
            f"1/5 evaluating {key} ({order[key]}/{len(order)}) on {summary['infusions']} infusions, {n_boot} bootstraps"
        ),
    )
    per_model = evaluation.per_model
    step("2/5 subgroups")
    subgroups = _subgroups(cohort, per_model, max(n_boot // 3, 50), seed)
    in_sample = bool(evaluation.document["same_cohort_as_training"])  # decided once, by evaluate_bundle
    where = "in-sample, on the training cohort" if in_sample else "on this cohort"
    source = "in-sample: training cohort" if in_sample else "this cohort"  # every figure drawn on the cohort says so
    parts = [
        "<h1>crsrisk model card</h1>"
        + (f"<p class='banner'>{html.escape(notice.in_sample())}</p>" if in_sample else "")
        + f"<p class='banner'>{html.escape(notice.disclaimer(meta.synthetic, cohort.synthetic))}</p>",
        f"<p>Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by crsrisk "
        f"{html.escape(str(meta.crsrisk_version))}.</p>",
        f"<h2 id='intended-use'>Intended use</h2><p>{html.escape(INTENDED_USE)}</p><p>This bundle's models:</p>"
        + _table(
            ["model", "kind", "question"],
            [
                [
                    m.key,
                    "dynamic (any hour of its grid)" if isinstance(m.landmark, Grid) else "fixed landmark",
                    m.definition.description,
                ]
                for m in bundle.models.values()
            ],
        ),
        "<h2 id='model'>Model</h2>"
        + _table(
            ["field", "value"],
            [
                ["bundle", str(bundle.path)],
                ["bundle manifest SHA-256", bundle.digest],
                ["created", meta.created],
                ["git commit", meta.git_commit],
                ["MLflow run", meta.mlflow_run_id],
                ["MLflow tracking store", meta.mlflow_tracking_uri or "a local store on the machine that trained it"],
                ["synthetic", meta.synthetic],
                ["risk band rule", RULE],
                [
                    "risk bands",
                    "; ".join(
                        f"{m.key}: low < {m.bands['low']:.3f} <= intermediate < {m.bands['high']:.3f} <= high"
                        for m in bundle.models.values()
                    ),
                ],
            ],
        ),
        "<h2 id='training-data'>Training data</h2>"
        + _table(
            ["field", "value"],
            [
                ["fingerprint", meta.training_cohort_fingerprint],
                ["infusions", meta.training_cohort_size],
                ["synthetic", meta.synthetic],
                ["centres", ", ".join(f"{k}: {v}" for k, v in training.get("cohort", {}).get("centres", {}).items())],
            ],
        ),
        _recalibration_section(meta.recalibration),
        _update_section(meta.update),
        "<h2 id='tasks'>Task definitions</h2>"
        + _table(
            ["task", "rule version", "definition", "landmarks"],
            [
                [m.task, m.label_rule_version, m.task_settings.get("description", ""), m.landmark.label]
                for m in bundle.models.values()
            ],
        )
        + "<p>Features use only measurements and events strictly before each infusion's landmark (tested by "
        "scrambling every later value). XGBoost handles missing values natively.</p>",
        "<h2 id='performance-cv'>Cross-validated performance beside the published scores (training run)</h2>"
        "<p>Numbers exactly as in the training run's metrics.json (out-of-fold, bootstrap 95% CI).</p>"
        + _table(COMPARISON_HEADER, comparison_rows(training.get("results", []))),
        f"<h2 id='performance-cohort'>Performance {where} ({summary['infusions']} infusions, "
        f"fingerprint {summary['fingerprint'][:12]}..., synthetic={summary['synthetic']})</h2>"
        "<p>The bundle's models as trained; the published scores' free parameters fitted on this cohort "
        "(optimistic for them). The same numbers as <code>crsrisk evaluate</code> writes.</p>"
        + _table(COMPARISON_HEADER, comparison_rows(evaluation.document["results"]))
        + "".join(f"<p class='warn'>{html.escape(line)}</p>" for line in skipped_lines(evaluation.document["skipped"])),
    ]
    step(f"3/5 ROC, calibration and decision curves of {len(per_model)} models")
    figures = []
    for key, data in per_model.items():
        figures.append(
            f"<h3>{html.escape(key)}</h3><div class='plots'>"
            + _image(roc_plot(data.y, data.predictions, source))
            + _image(calibration_plot(data.y, data.predictions, source=source))
            + _image(decision_curve_plot(data.y, data.predictions, np.arange(0.02, 0.52, 0.02), source))
            + "</div>"
        )
    parts.append(f"<h2 id='calibration'>Calibration and decision curves {where}</h2>" + "".join(figures))
    step("4/5 performance by landmark and an example trajectory")
    parts.append(_by_landmark(bundle, training, evaluation.document["results"], cohort, work, source))
    step("5/5 SHAP attributions on the cohort")
    shap_parts = []
    for model_key, attributions in cohort_attributions(cohort, bundle).items():
        files = cohort_plots(attributions, work / "plots", status(bundle.identity.to_dict()), source, dependence=0)
        shap_parts.append(
            f"<h3>{html.escape(model_key)}</h3><div class='plots two'>"
            + _image(files["importance"])
            + _image(files["beeswarm"])
            + "</div>"
        )
    parts.append(f"<h2 id='shap'>SHAP global importance (exact tree SHAP, {where})</h2>" + "".join(shap_parts))
    parts.append(
        "<h2 id='stability'>Attribution stability across cross-validation folds</h2>"
        "<p>Mean pairwise Spearman correlation of per-fold mean |SHAP| and overlap of the folds' top-10 "
        "features; in brackets, in how many folds a feature was in the top 10.</p>"
        + _table(
            ["task", "landmark", "folds", "mean Spearman", "top-10 overlap", "top features"], _stability_rows(training)
        )
    )
    if not subgroups.empty:
        rows = [
            [
                r.model,
                r.group,
                r.level,
                r.n,
                r.events,
                r.auroc,
                interval_text(r.auroc_ci_low, r.auroc_ci_high),
                r.mean_predicted,
                r.observed_rate,
                r.calibration_slope,
                r.warning,
            ]
            for r in subgroups.itertuples()
        ]
        parts.append(
            "<h2 id='subgroups'>Subgroup performance and calibration</h2><p class='warn'>Groups under 30 "
            "infusions or 5 events are flagged: their numbers are unstable.</p>"
            + _table(
                [
                    "model",
                    "group",
                    "level",
                    "n",
                    "events",
                    "AUROC",
                    "95% CI",
                    "mean predicted",
                    "observed",
                    "calibration slope",
                    "warning",
                ],
                rows,
            )
        )
    parts.append(
        "<h2 id='limitations'>Limitations</h2><ul><li>Synthetic training data (when flagged above) only "
        "reproduces published effect sizes; real cohorts differ.</li><li>The tocilizumab-refractory rule "
        "is the project's own (no consensus definition); see its version.</li><li>Grading scales "
        "disagree; labels follow ASTCT grades as recorded.</li></ul>"
    )
    parts.append(
        "<h2 id='tripod'>TRIPOD+AI checklist</h2>"
        + _table(
            ["item", "section", "covered"], [[item, f"#{anchor}", covered] for item, anchor, covered in TRIPOD_ITEMS]
        )
    )
    top, sections = "".join(parts[:2]), "".join(parts[2:])  # the banners and date, then the contents
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>crsrisk model card</title>"
        f"<style>{CSS}</style></head><body>{top}{_contents(sections)}{sections}</body></html>"
    )


def write_model_card(
    model: str | os.PathLike | Bundle | None,
    cohort: Cohort,
    out_dir: str | os.PathLike,
    n_boot: int = 300,
    seed: int = 0,
    announce: Callable[[str], None] | None = None,
) -> Path:
    """Write ``model_card.html`` into ``out_dir`` (atomically) and return its path; ``announce`` hears each step."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    page = build_model_card(model, cohort, n_boot=n_boot, seed=seed, announce=announce)
    target = folder / "model_card.html"
    staging = folder / ".model_card.html.tmp"
    staging.write_text(page, encoding="utf-8")
    os.replace(staging, target)
    return target
