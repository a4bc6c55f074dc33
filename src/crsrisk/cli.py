"""The ``crsrisk`` command line: thin wrappers that parse options, call the library and print results."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crsrisk.errors import AuditLogError, BundleIntegrityError, CohortValidationError, shown

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Predict severe CRS, ICANS and tocilizumab-refractory CRS after CAR T-cell therapy. "
                       "Research software: not for clinical use.")
audit_log_app = typer.Typer(no_args_is_help=True, help="The append-only prediction audit log.")
app.add_typer(audit_log_app, name="audit-log")
import_app = typer.Typer(no_args_is_help=True, help="Read clinical sources (FHIR R4, OMOP CDM v5.4) into a cohort folder.")
app.add_typer(import_app, name="import")
console = Console()
if not console.is_terminal:  # piped or captured: wide enough for the comparison table
    console = Console(width=200)
errors = Console(stderr=True)

# OSError: a path the system refuses (too long, a folder where a file belongs, no permission, disk full)
_EXPECTED = (CohortValidationError, BundleIntegrityError, AuditLogError, OSError, ValueError, KeyError)


def friendly(command: Callable) -> Callable:
    """Turn the package's own errors into a clear message and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _EXPECTED as error:
            text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            if isinstance(error, OSError) and error.strerror:
                text = f"{error.strerror}: {shown(error.filename)}" if error.filename else error.strerror
            errors.print(f"[bold red]error:[/] {type(error).__name__}: {escape(str(text))}", highlight=False,
                         soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _model_option() -> Any:
    """The ``--model`` option every scoring command takes."""
    return typer.Option(None, "--model", help="bundle folder or models:/NAME@ALIAS (default: the shipped synthetic "
                        "model)")


MAX_SHOWN = 50  # problems shown on the terminal; --problems-out writes every one


def _write_problems(error: CohortValidationError, path: Path) -> None:
    """Every problem of a failed validation as a CSV (owner-only: it quotes patient data), and say where."""
    import pandas as pd

    from crsrisk.outputs import write_table

    rows = [{"table": p.table, "line_or_row": None if p.row is None else (p.row + 1 if p.csv else p.row),
             "patient_id": p.patient_id, "field": p.field, "value": None if p.value is None else str(p.value),
             "rule": p.message} for p in error.problems]
    write_table(pd.DataFrame(rows, columns=["table", "line_or_row", "patient_id", "field", "value", "rule"]), path)
    errors.print(f"wrote all {len(rows)} problem(s) to {escape(str(path))}", highlight=False)


def _print_counts(title: str, counts: dict) -> None:
    console.print(f"[bold]{escape(title)}[/]")  # above the table: a title inside would wrap to its width
    table = Table()
    table.add_column("name")
    table.add_column("count", justify="right")
    for name, count in counts.items():
        table.add_row(str(name), str(count))
    console.print(table)


@app.command()
@friendly
def validate(path: Path = typer.Argument(..., help="cohort folder with patients, measurements, events"),
             problems_out: Optional[Path] = typer.Option(None, "--problems-out", help="on failure, write every "
                                                         "problem (table, line, patient, field, value, rule) to this "
                                                         "CSV")) -> None:
    """Validate a cohort folder against the contract and print a summary (or every problem, counted by kind)."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.summary import cohort_summary

    try:
        cohort = load_cohort(path, max_problems=10**7 if problems_out else MAX_SHOWN)
    except CohortValidationError as error:
        if problems_out is not None:
            _write_problems(error, problems_out)
            error = CohortValidationError(error.problems[:MAX_SHOWN], error.truncated + len(error.problems[MAX_SHOWN:]),
                                          error.counts)
        raise error from None
    summary = cohort_summary(cohort)
    console.print(f"[bold green]valid[/] cohort {path}: {summary['infusions']} infusions, "
                  f"{len(summary['centres'])} centre(s), synthetic={summary['synthetic']}")
    console.print(f"fingerprint {summary['fingerprint']}")
    _print_counts("infusions per centre", summary["centres"])
    _print_counts("measurements per analyte", summary["measurements_per_analyte"])
    _print_counts("events per kind", summary["events_per_kind"])
    _print_counts("values converted to canonical units", summary["units_converted"] or {"(none)": 0})
    for note in summary["notes"]:
        console.print(f"note: {note}")


@app.command()
@friendly
def simulate(
    n: int = typer.Option(1500, "--n", min=1, help="number of infusions"),
    seed: int = typer.Option(0, "--seed", help="random seed (same seed + version = same bytes)"),
    out: Path = typer.Option(..., "--out", help="folder to write (must not exist or be empty)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty folder"),
) -> None:
    """Write a synthetic multi-centre cohort (clearly labelled synthetic) plus its truth file."""
    from crsrisk.simulate import simulate_cohort, write_simulated

    write_simulated(simulate_cohort(n=n, seed=seed), out, overwrite=overwrite)
    console.print(f"wrote synthetic cohort of {n} infusions (seed {seed}) to {out}; "
                  f"truth.csv beside it is not part of the cohort")


@app.command()
@friendly
def features(
    cohort: Path = typer.Argument(..., help="cohort folder in the contract"),
    task: str = typer.Option(..., "--task", help="a task name: severe_crs, icans, severe_crs_dynamic, icans_dynamic, toci_refractory"),
    landmark: Optional[str] = typer.Option(None, "--landmark", help="hours after infusion (default: the "
                                             "task's last landmark; toci_refractory: the first dose)"),
    label: str = typer.Option("primary", "--label", help="primary, or a second label such as icans_severe"),
    out: Path = typer.Option(..., "--out", help="matrix file (.parquet or .csv)"),
    config: Optional[Path] = typer.Option(None, "--config", help="experiment YAML whose task_overrides (grids, "
                                          "horizons, thresholds) define the task, as train reads it"),
) -> None:
    """Write one task's feature matrix with patient_id, landmark_hours and label (the task's ``dataset``), and report
    it."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.features import describe_features
    from crsrisk.outputs import write_table
    from crsrisk.tasks import get_task

    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"--out: expected a .parquet or .csv file name, got {shown(out.name)}")
    from crsrisk.training.config import load_config

    task_def = get_task(task).with_overrides(**load_config(config).task_overrides.get(task, {}))
    data = load_cohort(cohort)
    point = task_def.landmarks[-1] if landmark is None else landmark
    dataset = task_def.dataset(data, point, label=label)
    matrix = dataset.X
    table = matrix.assign(landmark_hours=dataset.landmark_hours, label=dataset.y).rename_axis("patient_id").reset_index()
    first = ["patient_id", "landmark_hours", "label"]
    table = table[first + [c for c in table.columns if c not in first]]
    write_table(table, out)
    summary = {"risk_set": dataset.risk_set, "labelled": len(dataset.y), "events": int(dataset.y.sum()),
               "excluded": dataset.excluded}
    console.print(f"{task} at {dataset.landmark.label}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    described = describe_features(matrix)
    report = Table(title=f"{matrix.shape[1]} features", title_justify="left")
    for column in described.columns:
        report.add_column(str(column))
    for row in described.itertuples(index=False):
        report.add_row(*[f"{v:.1%}" if isinstance(v, float) else str(v) for v in row])
    console.print(report)
    console.print(f"wrote {len(table)} rows to {out}")


def _print_comparison(results: list[dict], title: str = "cross-validated comparison (out-of-fold, bootstrap 95% CI)"
                      ) -> None:
    """The comparison table of each model's own rows; a landmark super-model's per-landmark rows as one line each
    (all of them are in metrics.json and comparison.md)."""
    from crsrisk.training.artifacts import COMPARISON_HEADER, comparison_rows, landmark_lines

    console.print(f"[bold]{escape(title)}[/]")
    narrow = console.width < 120  # an 80-column terminal: the columns that decide, all of them in comparison.md
    keep = [0, 1, 2, 5, 9] if narrow else list(range(len(COMPARISON_HEADER)))
    table = Table(show_edge=not narrow)
    for i in keep:
        table.add_column(COMPARISON_HEADER[i], overflow="fold")
    for row in comparison_rows([r for r in results if "model_landmark" not in r]):
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    for line in landmark_lines(results):
        console.print(escape(line), highlight=False)


def _report_run(result, tracking_uri: str | None) -> None:
    """The comparison table and where everything went."""
    from crsrisk.training.artifacts import skipped_lines

    _print_comparison(result.metrics["results"])
    for line in skipped_lines(result.metrics.get("skipped", [])):
        console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
    uri = tracking_uri or "sqlite:///mlflow.db"
    browse = uri if uri.startswith(("http://", "https://")) else f"mlflow ui --backend-store-uri {uri}"
    console.print(f"metrics: {result.out_dir / 'metrics.json'}; model bundle: {result.bundle_dir}; "
                  f"MLflow run {result.run_id} (browse: {browse}); "
                  f"registered: {', '.join(result.registered) or 'none'}")
    for line in result.repointed:
        console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
    console.print(result.metrics["disclaimer"])


@app.command()
@friendly
def train(
    cohort: Path = typer.Argument(..., help="cohort folder in the contract"),
    task: str = typer.Option("all", "--task", help="all, or one task: severe_crs, icans, severe_crs_dynamic, "
                             "icans_dynamic, toci_refractory"),
    config: Optional[Path] = typer.Option(None, "--config", help="experiment YAML (see experiments/)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="default: sqlite:///mlflow.db"),
    out: Path = typer.Option(Path("runs/latest"), "--out", help="folder for metrics.json, plots and model/"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="fits run side by side in this many "
                                          "single-threaded processes (default: the cores available)"),
    dask: Optional[str] = typer.Option(None, "--dask", help="run the fits on a Dask cluster: tcp://SCHEDULER:8786, "
                                       "or 'local' for a local cluster of --workers processes"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Cross-validate models beside the published scores, log everything to MLflow, register the models."""
    from crsrisk.training.config import load_config
    from crsrisk.training.run import train as run_training

    settings = load_config(config, workers=workers, dask=dask)
    _report_run(run_training(cohort, task=task, config=settings, tracking_uri=tracking_uri, out=out,
                             show_progress=progress), tracking_uri)


@app.command()
@friendly
def demo(
    n: int = typer.Option(800, "--n", min=100, help="infusions in the synthetic cohort"),
    seed: int = typer.Option(2026, "--seed"),
    out: Path = typer.Option(Path("demo-output"), "--out", help="folder for the cohort and the run"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="default: sqlite:///mlflow.db"),
) -> None:
    """Simulate a cohort, train every task on it and print the comparison: the whole package end to end."""
    from crsrisk.simulate import simulate_cohort, write_simulated
    from crsrisk.training.config import DEMO_CONFIG
    from crsrisk.training.run import train as run_training

    cohort_dir = out / "cohort"
    write_simulated(simulate_cohort(n=n, seed=seed), cohort_dir, overwrite=True)
    console.print(f"simulated {n} infusions (seed {seed}) into {cohort_dir} [bold](synthetic)[/]")
    _report_run(run_training(cohort_dir, config=DEMO_CONFIG, tracking_uri=tracking_uri, out=out / "run"),
                tracking_uri)


@app.command()
@friendly
def evaluate(
    cohort: Path = typer.Argument(..., help="cohort folder in the contract (one the model never saw)"),
    model: Optional[str] = _model_option(),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for metrics.json (same shape as train's)"),
    n_boot: int = typer.Option(500, "--n-boot", min=50, help="bootstrap resamples for the 95% CIs"),
) -> None:
    """External validation: score a cohort with a trained bundle, beside the published scores."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.external import evaluate_bundle
    from crsrisk.training.artifacts import skipped_lines, write_json

    document = evaluate_bundle(load_cohort(cohort), model, n_boot=n_boot).document
    _print_comparison(document["results"], f"{document['cohort']['size']} infusions of {cohort}, scored by "
                      f"{document['model']['path']} (published scores fitted on this cohort: optimistic)")
    for line in skipped_lines(document["skipped"]):
        console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
    flags = document["population_flags"]
    if not flags["recorded"]:
        console.print("[yellow]note:[/] the bundle records no training population: nothing checked against it")
    for kind, count in flags["infusions"].items():
        console.print(f"[yellow]outside the training population:[/] {count} infusion(s) flagged {kind}")
    for flag in flags["rows"]:
        console.print(f"[yellow]outside the training population:[/] {escape(_flag_text(flag))} (rows)", highlight=False)
    if document["same_cohort_as_training"]:
        console.print("[yellow]note:[/] this is the cohort the model was trained on: not an external validation")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", document)
        console.print(f"metrics: {out / 'metrics.json'}")
    console.print(document["disclaimer"])


@app.command()
@friendly
def predict(
    target: Path = typer.Argument(..., help="patient.json (one patient) or a cohort folder (batch)"),
    model: Optional[str] = _model_option(),
    now_hours: Optional[float] = typer.Option(None, "--now-hours", help="one patient: the hour to predict at, "
                                              "from everything strictly before it (default: just after the "
                                              "latest measurement or event)"),
    at: Optional[float] = typer.Option(None, "--at", help="batch: score every infusion as of this hour, as "
                                       "predict --now-hours would (default: every model at its own landmarks)"),
    trajectory: bool = typer.Option(False, "--trajectory", help="one patient: the risk every 12 h and after each "
                                    "new measurement, with the top reasons, drawn as a PNG"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="--trajectory: PNG path (default: "
                                        "<patient>_trajectory.png)"),
    as_json: bool = typer.Option(False, "--json", help="print the full result as JSON"),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="append to the prediction audit log"),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", help="default: $CRSRISK_AUDIT_LOG"),
    out: Optional[Path] = typer.Option(None, "--out", help="batch: CSV of patient_id, task, landmark_hours, "
                                       "horizon_hours, probability, band"),
    top: int = typer.Option(5, "--top", help="contributors shown per task"),
    chunk_size: int = typer.Option(5000, "--chunk-size", min=1, help="partitioned cohort: infusions per chunk"),
    dask: Optional[str] = typer.Option(None, "--dask", help="partitioned cohort: score chunks on the Dask "
                                       "scheduler at tcp://HOST:PORT, or 'local' for a local cluster"),
) -> None:
    """Calibrated risk for one patient with its reasons (or over time), or scores for every infusion of a cohort."""
    from crsrisk.cohort.io import is_folder
    from crsrisk.scoring import predict as predict_one

    if is_folder(target):
        from crsrisk.batch import BATCH_COLUMNS, score_partitioned
        from crsrisk.cohort.io import load_cohort
        from crsrisk.cohort.partitions import is_partitioned
        from crsrisk.outputs import write_table
        from crsrisk.scoring import load_model, predict_cohort

        if out is None:
            raise ValueError("--out: batch scoring of a cohort folder needs an output CSV file")
        if is_partitioned(target):
            done = score_partitioned(target, out, model, chunk_size=chunk_size, dask=dask, at_hours=at)
            for note in done.notes:
                console.print(f"note: {escape(note)}", highlight=False)
            console.print(f"scored {done.infusions} infusions ({done.rows} rows, {done.chunks} chunks) into {out} "
                          f"in {done.seconds:.1f} s")
            return
        if dask is not None:
            raise ValueError("--dask: only a partitioned cohort folder (patients/, measurements/, events/ "
                             "folders of Parquet files) is scored on a cluster")
        bundle, cohort = load_model(model), load_cohort(target)
        scores = predict_cohort(cohort, bundle, at_hours=at)
        if audit:
            _audit_table(audit_log, bundle, scores, cohort, "batch_prediction")
        write_table(scores[BATCH_COLUMNS], out)
        console.print(f"scored {scores['patient_id'].nunique()} infusions ({len(scores)} rows) into {out}; "
                      f"model {bundle.path} ({escape(bundle.trust)})")
        return
    if at is not None:
        raise ValueError("--at: scores a cohort folder; for one patient use --now-hours")
    if trajectory:
        _print_trajectory(target, model, plot, as_json, top, audit, audit_log)
        return
    result = predict_one(target, model=model, now_hours=now_hours, audit=audit, audit_log=audit_log)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(f"[bold]as of hour {result.now_hours:g}[/] (everything recorded strictly before it)")
    for p in result.predictions:
        table = Table(title=f"{p['task']}: {p['probability']:.1%} ({p['band']} risk) - {p['question']}",
                      title_justify="left")
        for column in ("feature", "value", "SHAP (log-odds)", "reason"):
            table.add_column(column)
        for c in p["contributions"][:top]:
            value = "-" if c["value"] is None else f"{c['value']:.4g} {c['unit']}"
            table.add_row(c["feature"], value, f"{c['shap']:+.3f}", c["phrase"])
        console.print(table)
    for occurred in result.already_occurred:
        console.print(f"{occurred['task']}: {occurred['text']} (not scored)")
    for flag in result.population_flags:
        console.print(f"[bold yellow]outside the training population:[/] {escape(_flag_text(flag))}", highlight=False)
    for skipped in result.not_applicable:
        console.print(f"{skipped['task']}: not scored ({skipped['reason']})")
    if result.missing_inputs:
        console.print(f"missing inputs ({len(result.missing_inputs)}): {', '.join(result.missing_inputs[:12])}"
                      + (" ..." if len(result.missing_inputs) > 12 else ""))
    status = "SYNTHETIC model, " if result.model["synthetic"] else ""
    console.print(f"[bold]{status}not for clinical use.[/] model {result.model['path']} "
                  f"({escape(result.model['signature'])})")


def _flag_text(flag: dict) -> str:
    """One population flag in words: which field or model, the value, what training saw."""
    where = flag.get("model_key", flag["field"])
    return f"{flag['kind']} ({where}): {flag.get('value')!s}; expected {flag['expected']}"


def _print_trajectory(target: Path, model: Optional[str], plot: Optional[Path], as_json: bool, top: int, audit: bool,
                      audit_log: Optional[Path]) -> None:
    """``predict --trajectory``: the table (or JSON) of risk over time and its PNG; audited like predict."""
    from crsrisk.trajectory import risk_trajectory

    result = risk_trajectory(target, model, top=min(top, 3), audit=audit, audit_log=audit_log)
    path = result.plot(plot or Path(f"{target.stem}_trajectory.png"))
    if as_json:
        print_json(result.to_dict() | {"plot": str(path)})
        return
    table = Table(title="risk over time (each point: everything strictly before that hour)", title_justify="left")
    for column in ("hour", "task", "probability", "band", "top reasons"):
        table.add_column(column, overflow="fold")
    for point in result.points:
        table.add_row(f"{point['hours']:.1f}", point["task"], f"{point['probability']:.1%}", point["band"],
                      "; ".join(point["reasons"]))
    console.print(table)
    for task, hours in result.already_occurred.items():
        console.print(f"{task}: occurred at hour {hours:g}")
    console.print(f"plot: {path}")


@app.command()
@friendly
def explain(
    target: Path = typer.Argument(..., help="patient.json (waterfall + summary) or a cohort folder (global plots)"),
    model: Optional[str] = _model_option(),
    now_hours: Optional[float] = typer.Option(None, "--now-hours"),
    out: Path = typer.Option(Path("explanations"), "--out", help="folder for the PNG plots and text"),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="append to the prediction audit log"),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", help="default: $CRSRISK_AUDIT_LOG"),
) -> None:
    """SHAP explanations: a patient's waterfall and summary, or a cohort's importance, beeswarm and dependence."""
    from crsrisk.explain import explain_cohort, explain_patient
    from crsrisk.scoring import load_model

    from crsrisk.cohort.io import is_folder, load_cohort

    bundle = load_model(model)
    if is_folder(target):
        cohort = load_cohort(target)
        table = explain_cohort(cohort, bundle, out)
        if audit:
            _audit_table(audit_log, bundle, table, cohort, "explanation")
        for key, part in table.groupby("model", sort=False):
            console.print(f"{key}: " + ", ".join(f"{r.feature} {r.mean_abs_shap:.3f}" for r in part.head(5).itertuples()))
        console.print(f"plots and global_importance.csv in {out}; model {bundle.path} ({escape(bundle.trust)})")
        return
    summary, files = explain_patient(target, model=bundle, now_hours=now_hours, out_dir=out, audit=audit,
                                     audit_log=audit_log)
    console.print(summary, highlight=False)
    console.print(f"model {bundle.path} ({escape(bundle.trust)})")
    console.print(f"waterfall plots: {', '.join(str(f) for f in files)}")


@app.command()
@friendly
def audit(
    model: Optional[str] = _model_option(),
    cohort: Path = typer.Option(..., "--cohort", help="cohort folder to evaluate on (ideally held out)"),
    out: Path = typer.Option(Path("audit-report"), "--out", help="folder for model_card.html"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store holding the model's run "
                                               "(default: the one recorded in the bundle)"),
    n_boot: int = typer.Option(300, "--n-boot", min=50),
) -> None:
    """Write the self-contained HTML model card and log it to the model's MLflow run when that run exists."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.reporting.model_card import write_model_card
    from crsrisk.scoring import load_model
    from crsrisk.training.artifacts import shared_tracking_uri

    bundle = load_model(model)
    path = write_model_card(bundle, load_cohort(cohort), out, n_boot=n_boot)
    console.print(f"model card: {path}")
    run_id = bundle.metadata.get("mlflow_run_id")
    uri = tracking_uri or shared_tracking_uri(bundle.metadata.get("mlflow_tracking_uri"))
    if not run_id:
        console.print("no MLflow run recorded in the bundle: report not logged")
        return
    if not uri:
        console.print(f"the model's MLflow run {run_id} was tracked in a local store on the machine that trained it "
                      "(the bundle names no tracking server): report not logged; pass --tracking-uri to log it there")
        return
    from crsrisk.training.tracking import log_report

    console.print(log_report(uri, run_id, path))


@app.command()
@friendly
def recalibrate(
    model: str = typer.Argument(..., help="the bundle to recalibrate (folder or models:/NAME@ALIAS)"),
    cohort: Path = typer.Argument(..., help="the local cohort folder to fit the calibrators on"),
    out: Path = typer.Option(..., "--out", help="folder for the new bundle (must not exist or be empty)"),
    method: str = typer.Option("platt", "--method", help="platt (intercept and slope on the booster margin) or "
                               "isotonic"),
    n_boot: int = typer.Option(500, "--n-boot", min=50, help="bootstrap resamples for the 95% CIs"),
) -> None:
    """Refit each model's calibrator on a local cohort, keep the boosters, write a new bundle with its lineage."""
    from crsrisk.calibration import METHODS
    from crsrisk.cohort.io import load_cohort
    from crsrisk.recalibration import LINEAGE_HEADER, lineage_rows, recalibrate as refit, write_recalibrated

    if method not in METHODS:
        raise ValueError(f"--method: expected one of {list(METHODS)}, got {method!r}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose another folder")
    result = write_recalibrated(refit(model, load_cohort(cohort), method, n_boot=n_boot), model, out)
    lineage = result.lineage
    console.print(f"[bold]calibration on {lineage['local_cohort_size']} infusions of {cohort} before and after "
                  f"({method}; bootstrap 95% CI; 'after' is in-sample)[/]")
    table = Table()
    for name in LINEAGE_HEADER:
        table.add_column(name, overflow="fold")
    for row in lineage_rows(lineage):
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    console.print(f"new bundle {result.path} (parent {lineage['parent_bundle_sha256'][:12]}..., boosters unchanged); "
                  "check it on another local cohort with `crsrisk evaluate`")


@app.command()
@friendly
def serve(
    model: Optional[str] = _model_option(),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; anything but loopback needs "
                             "$CRSRISK_API_TOKEN"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", help="default: $CRSRISK_AUDIT_LOG"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="server processes (default: the cores "
                                          "available); they share the socket and the audit log"),
) -> None:
    """Serve predictions over REST (POST /predict) and the bedside page (/) until interrupted."""
    from crsrisk.service.guard import required_token
    from crsrisk.service.run import serve as run_server
    from crsrisk.service.run import worker_count

    secured, workers = required_token(host) is not None, worker_count(workers)
    console.print(f"crsrisk serving on http://{host}:{port}/ in {workers} process(es) (page at /, API docs at "
                  f"/docs); bearer token {'required' if secured else 'not required (loopback only)'}; Ctrl-C stops it. "
                  "[bold]Not for clinical use.[/]")
    run_server(model=model, host=host, port=port, audit_log=audit_log, workers=workers)


@app.command()
@friendly
def keygen(out: Path = typer.Option(..., "--out", help="file prefix: writes PREFIX.key (private, mode 0600) and "
                                    "PREFIX.pub (public)")) -> None:
    """Make an Ed25519 key pair for signing model bundles (never overwrites a key)."""
    from crsrisk.bundle.signing import generate_keypair

    private, public = generate_keypair(out)
    console.print(f"private key {private} (keep it secret; mode 0600), public key {public} "
                  "(add it to CRSRISK_TRUSTED_KEYS where bundles are loaded)")


@app.command()
@friendly
def sign(bundle: Path = typer.Argument(..., help="model bundle folder"),
         key: Path = typer.Option(..., "--key", help="Ed25519 private key (PEM) from `crsrisk keygen`")) -> None:
    """Sign a model bundle's manifest (after checking every file against it): writes BUNDLE/signature.json."""
    from crsrisk.bundle import sign_bundle

    console.print(f"signed: {sign_bundle(bundle, key)}")


@audit_log_app.command("head")
@friendly
def audit_log_head(path: Optional[Path] = typer.Argument(None, help="log file (default: $CRSRISK_AUDIT_LOG)")) -> None:
    """Print the latest record's SEQ:HASH; keep it elsewhere and pass it to `verify --expect-head` later."""
    from crsrisk.audit.log import log_head, resolve_log_path

    seq, digest = log_head(resolve_log_path(path))
    typer.echo(f"{seq}:{digest}")


@audit_log_app.command("verify")
@friendly
def audit_log_verify(
    path: Optional[Path] = typer.Argument(None, help="log file (default: $CRSRISK_AUDIT_LOG)"),
    expect_head: Optional[str] = typer.Option(None, "--expect-head", help="SEQ:HASH printed earlier by `crsrisk "
                                              "audit-log head`: detects records dropped from the end and rewrites"),
) -> None:
    """Check every record's HMAC and the chain; exit 1 naming any broken record, 2 when the log cannot be read."""
    from crsrisk.audit.log import parse_head, resolve_log_path, verify_log

    log_path = resolve_log_path(path)
    result = verify_log(log_path, expect_head=parse_head(expect_head) if expect_head else None)
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    head = "empty" if result.head is None else f"head {result.head[0]}:{result.head[1]}"
    if result.ok:
        anchored = f"; contains the expected head {expect_head}" if expect_head else ""
        console.print(f"[green]ok[/]: checked {result.n_records} record(s) in {log_path}; chain intact{anchored}; "
                      f"{head}", soft_wrap=True)
        return
    errors.print(f"[red]BROKEN[/]: checked {result.n_records} record(s) in {log_path}; {head}", soft_wrap=True)
    for problem in result.problems:
        errors.print(f"  {escape(problem)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _time_rule(hour: float, infusion_hour: float, same_day_labs: Optional[str]) -> Any:
    from crsrisk.sources.daily import TimeRule

    return TimeRule(hour=hour, infusion_hour=infusion_hour, same_day_labs=same_day_labs)


_DATE_ONLY_HOUR = typer.Option(8.0, "--date-only-hour", help="hour of the day at which a value with a date but no "
                               "time is placed")
_INFUSION_HOUR = typer.Option(12.0, "--infusion-hour", help="hour of the day of an infusion recorded with a date only")
_SAME_DAY = typer.Option(None, "--same-day-labs", help="before|after: side of the infusion for labs dated the "
                         "infusion day without a time (required when there are any)")
_IMPORT_OUT = typer.Option(..., "--out", help="cohort folder to write (must not exist or be empty)")


def _report_import(imported: Any, out: Path) -> None:
    """What an import read, what it placed by the daily rule, and every code it did not recognise."""
    report = imported.report
    console.print(f"[bold green]imported[/] {report['counts']['patients']} infusions, "
                  f"{report['counts']['measurements']} measurements, {report['counts']['events']} events into {out}")
    only = report["date_only"]
    console.print(f"date-only (placed by the daily rule): {only['infusions']} infusions, {only['measurements']} "
                  f"measurements, {only['events']} events; rule: {report['time_rule']['description']}", highlight=False)
    without = report["without_infusion"]
    if without["patients"]:
        console.print(f"[yellow]not imported:[/] {without['patients']} patient(s) without a CAR-T infusion (e.g. "
                      f"{', '.join(map(str, without['examples']))}), with their {without['measurements']} "
                      f"measurements and {without['events']} events", highlight=False)
    for reason, count in report["skipped"].items():
        console.print(f"skipped: {count} x {escape(reason)}", highlight=False)
    unknown = report["unknown_codes"]
    if unknown:
        table = Table(title=f"{sum(u['count'] for u in unknown)} records with codes crsrisk does not read (ignored)",
                      title_justify="left")
        for column in ("where", "system", "code", "display", "count", "example"):
            table.add_column(column, overflow="fold")
        for u in unknown:
            table.add_row(*(escape(str(u[k])) for k in ("where", "system", "code", "display", "count", "example")))
        console.print(table)
    for note in imported.cohort.metadata.get("notes", []):
        console.print(f"note: {escape(note)}", highlight=False)


def _import(reader: str, source: Any, out: Path, same_day_labs: Optional[str], date_only_hour: float,
            infusion_hour: float, overwrite: bool) -> None:
    """Run one importer (``fhir`` or ``omop``), write the cohort folder and print the import report."""
    import importlib

    from crsrisk.sources.assemble import write_imported

    read = getattr(importlib.import_module(f"crsrisk.sources.{reader}"), f"import_{reader}")
    imported = read(source, _time_rule(date_only_hour, infusion_hour, same_day_labs))
    write_imported(imported, out, overwrite=overwrite)
    _report_import(imported, out)


_OVERWRITE = typer.Option(False, "--overwrite", help="replace a non-empty folder")


@import_app.command("fhir")
@friendly
def import_fhir(
    source: Path = typer.Argument(..., help="a FHIR R4 Bundle (.json) or a Bulk Data folder of .ndjson files"),
    out: Path = _IMPORT_OUT, same_day_labs: Optional[str] = _SAME_DAY, date_only_hour: float = _DATE_ONLY_HOUR,
    infusion_hour: float = _INFUSION_HOUR, overwrite: bool = _OVERWRITE,
) -> None:
    """Import FHIR R4 (Patient, Observation, MedicationAdministration, Procedure, Condition) as a cohort."""
    _import("fhir", source, out, same_day_labs, date_only_hour, infusion_hour, overwrite)


@import_app.command("omop")
@friendly
def import_omop(
    database_url: str = typer.Argument(..., help="SQLAlchemy URL of an OMOP CDM v5.4 database, e.g. "
                                       "duckdb:///cdm.duckdb or postgresql+psycopg://user@host/db"),
    out: Path = _IMPORT_OUT, same_day_labs: Optional[str] = _SAME_DAY, date_only_hour: float = _DATE_ONLY_HOUR,
    infusion_hour: float = _INFUSION_HOUR, overwrite: bool = _OVERWRITE,
) -> None:
    """Import an OMOP CDM v5.4 database (person, measurement, observation, drug_exposure, procedure_occurrence,
    condition_occurrence, resolved through its concept table) as a cohort."""
    _import("omop", database_url, out, same_day_labs, date_only_hour, infusion_hour, overwrite)


def _audit_table(path: Path | None, bundle: Any, table: Any, cohort: Any, kind: str) -> None:
    """Append one audit record for a cohort's outputs (batch scores or SHAP importance)."""
    from crsrisk.audit.log import AuditLog, batch_record
    from crsrisk.scoring import _model_info

    log = AuditLog(path)
    log.append(batch_record(log, _model_info(bundle), table, cohort.fingerprint(), kind))


def print_json(data: object) -> None:
    """Print plain, strict JSON (no colour; null, never NaN) so other tools can read the output."""
    from crsrisk.outputs import json_text

    typer.echo(json_text(data))


if __name__ == "__main__":
    app()
