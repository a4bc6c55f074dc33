"""Commands for data scientists: train, demo, evaluate, recalibrate, samplesize."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape


from crsrisk.cli.common import (
    _allow_unverified_option,
    _model_option,
    app,
    console,
    flag,
    friendly,
    print_json,
    print_rows,
    require_empty,
    say,
    tracking_store,
)
from crsrisk.cohort.population import flags_text
from crsrisk.errors import InputError


def _print_comparison(
    results: list[dict], title: str = "cross-validated comparison (out-of-fold, bootstrap 95% CI)"
) -> None:
    """The comparison table of each model's own rows; a landmark super-model's per-landmark rows as one line each
    (all of them are in metrics.json and comparison.md)."""
    from crsrisk.training.artifacts import COMPARISON_HEADER, comparison_rows, landmark_lines

    console.print(f"[bold]{escape(title)}[/]")
    order = [2, 5, 9, 4, 6, 7, 8, 3]  # after the task and landmark, the columns that decide: what does not fit
    rows = comparison_rows([r for r in results if "model_landmark" not in r])  # at 80 columns is left out
    print_rows(
        [f"{COMPARISON_HEADER[0]}, {COMPARISON_HEADER[1]}", *(COMPARISON_HEADER[i] for i in order)],
        [[f"{row[0]} {row[1]}", *(row[i] for i in order)] for row in rows],
        "all in comparison.md",
    )
    for line in landmark_lines(results):
        say(line)


def _report_run(result, uri: str) -> None:
    """The comparison table and where everything went."""
    from crsrisk.training.artifacts import skipped_lines

    _print_comparison(result.metrics["results"])
    for line in skipped_lines(result.metrics.get("skipped", [])):
        say(line, lead="note: ", style="yellow")
    browse = uri if uri.startswith(("http://", "https://")) else f"mlflow ui --backend-store-uri {uri}"
    say(str(result.out_dir / "metrics.json"), lead="metrics: ")
    say(str(result.bundle_dir), lead="model bundle: ")
    say(f"{result.run_id} (browse: {browse})", lead="MLflow run: ")
    say(", ".join(result.registered) or "none", lead="registered: ")
    for line in result.repointed:
        say(line, lead="note: ", style="yellow")
    say(result.metrics["disclaimer"])


def _sample_size_line(statement: str) -> None:
    """A sample-size statement (Riley et al.), printed before fitting or beside an evaluation."""
    say(statement, lead="sample size: ", style="cyan")


@app.command()
@friendly
def train(
    cohort: Path = typer.Argument(..., help="cohort folder in the contract"),
    task: str = typer.Option(
        "all", "--task", help="all, or one task: severe_crs, icans, severe_crs_dynamic, icans_dynamic, toci_refractory"
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="experiment YAML (see experiments/)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="default: sqlite:///mlflow.db"),
    out: Path = typer.Option(Path("runs/latest"), "--out", help="folder for metrics.json, plots and model/"),
    workers: Optional[int] = typer.Option(
        None,
        "--workers",
        min=1,
        help="fits run side by side in this many single-threaded processes (default: the cores available)",
    ),
    dask: Optional[str] = typer.Option(
        None,
        "--dask",
        help="run the fits on a Dask cluster: tcp://SCHEDULER:8786, "
        "or 'local' for a local cluster of --workers processes",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Cross-validate models beside the published scores, log everything to MLflow, register the models."""
    from crsrisk.training.config import load_config
    from crsrisk.training.crossval import TooFewEvents
    from crsrisk.training.run import train as run_training

    store = tracking_store(tracking_uri)
    settings = load_config(config, workers=workers, dask=dask)
    with flag(f"--config {config or '(none: the defaults)'} (the experiment file, see experiments/)", TooFewEvents):
        result = run_training(
            cohort,
            task=task,
            config=settings,
            tracking_uri=store,
            out=out,
            show_progress=progress,
            announce=_sample_size_line,
        )
    _report_run(result, store)


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

    store = tracking_store(tracking_uri)
    cohort_dir = out / "cohort"
    write_simulated(simulate_cohort(n=n, seed=seed), cohort_dir, overwrite=True)
    console.print(f"simulated {n} infusions (seed {seed}) into {cohort_dir} [bold](synthetic)[/]")
    _report_run(run_training(cohort_dir, config=DEMO_CONFIG, tracking_uri=store, out=out / "run"), store)


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
    from crsrisk import notice
    from crsrisk.evaluation.external import evaluate_bundle
    from crsrisk.training.artifacts import skipped_lines, write_json

    document = evaluate_bundle(load_cohort(cohort), model, n_boot=n_boot).document
    _print_comparison(
        document["results"],
        f"{document['cohort']['size']} infusions of {cohort}, scored by "
        f"{document['model']['path']} ({document['model']['signature']}; published scores fitted on this cohort: "
        "optimistic)",
    )
    for line in skipped_lines(document["skipped"]):
        console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
    flags = document["population_flags"]
    if not flags["recorded"]:
        console.print("[yellow]note:[/] the bundle records no training population: nothing checked against it")
    found = [f"found {count} infusion(s) flagged {kind}" for kind, count in flags["infusions"].items()]
    if flags["rows"]:  # the models evaluated are the keys of ``precision``: name a finding's only when not all
        found.append(flags_text(flags["rows"], list(document["precision"])))
    if found:
        console.print(f"[yellow]outside the training population:[/] {escape('; '.join(found))}", highlight=False)
    for key, size in document["precision"].items():
        _sample_size_line(f"{key}: {size['statement']}")
    if document["same_cohort_as_training"]:
        console.print(f"[yellow]note:[/] {notice.in_sample()}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", document)
        console.print(f"metrics: {out / 'metrics.json'}")
    console.print(document["disclaimer"])


@app.command()
@friendly
def recalibrate(
    model: str = typer.Argument(..., help="the bundle to recalibrate (folder or models:/NAME@ALIAS)"),
    cohort: Path = typer.Argument(..., help="the local cohort folder to fit the calibrators on"),
    out: Path = typer.Option(..., "--out", help="folder for the new bundle (must not exist or be empty)"),
    method: str = typer.Option(
        "platt",
        "--method",
        help="platt (intercept and slope on the booster margin: update's option (c)), intercept (a new intercept "
        "only: update's option (b)) or isotonic",
    ),
    n_boot: int = typer.Option(500, "--n-boot", min=50, help="bootstrap resamples for the 95% CIs"),
    allow_unverified: bool = _allow_unverified_option(),
) -> None:
    """Refit each model's calibrator on a local cohort, keep the boosters, write a new bundle with its lineage."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.evaluation.recalibration import RECALIBRATION_METHODS as METHODS
    from crsrisk.evaluation.recalibration import LINEAGE_HEADER, lineage_rows, recalibrate as refit, write_recalibrated
    from crsrisk.scoring import load_model

    if method not in METHODS:
        raise InputError(f"--method: expected one of {list(METHODS)}, got {method!r}")
    require_empty(out)
    parent = load_model(
        model, allow_unverified=allow_unverified
    )  # the new bundle is signed: its parent must be trusted
    result = write_recalibrated(refit(parent, load_cohort(cohort), method, n_boot=n_boot), parent, out)  # type: ignore[arg-type]  # checked above
    lineage = result.lineage
    console.print(
        f"[bold]calibration on {lineage['local_cohort_size']} infusions of {cohort} before and after "
        f"({method}; bootstrap 95% CI; 'after' is in-sample)[/]"
    )
    print_rows(
        LINEAGE_HEADER,
        lineage_rows(lineage),
        f"all in {out / 'bundle.json'}, under recalibration",
        first=["model", "status", "intercept before", "intercept after", "slope before", "slope after"],
    )
    console.print(
        f"new bundle {result.path} (parent {lineage['parent_bundle_sha256'][:12]}..., boosters unchanged); "
        "check it on another local cohort with `crsrisk evaluate`"
    )


@app.command()
@friendly
def update(
    model: str = typer.Argument(..., help="the bundle to update (folder or models:/NAME@ALIAS)"),
    cohort: Path = typer.Argument(..., help="the local cohort folder"),
    out: Path = typer.Option(..., "--out", help="folder for the new bundle (must not exist or be empty)"),
    alpha: float = typer.Option(0.05, "--alpha", help="significance level of the closed testing procedure"),
    task: Optional[str] = typer.Option(None, "--task", help="update only this task or model key (default: all)"),
    config: Optional[Path] = typer.Option(
        None, "--config", help="experiment YAML: folds (cv), tuning of (d)/(e), bootstrap, seed"
    ),
    folds: Optional[int] = typer.Option(None, "--folds", min=2, max=20, help="local cross-validation folds (5)"),
    n_boot: Optional[int] = typer.Option(None, "--n-boot", min=50, help="bootstrap resamples for the 95% CIs (500)"),
    report: Optional[Path] = typer.Option(None, "--report", help="where REPORT.json goes (default: OUT.REPORT.json)"),
) -> None:
    """Update each model to a local cohort by closed testing: original, recalibration (intercept; intercept and
    slope), revision (booster continued) or refit; the simplest not significantly worse is kept."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.evaluation.update_options import LABELS
    from crsrisk.evaluation.updating import OPTION_HEADER, UPDATE_CONFIG, option_rows, update as run_update
    from crsrisk.evaluation.updating import selected_models, write_updated
    from crsrisk.scoring.load import load_model
    from crsrisk.training.config import load_config
    from crsrisk.util.outputs import write_json

    if not 0 < alpha < 1:
        raise InputError(f"--alpha: expected a number strictly between 0 and 1, got {alpha!r}")
    require_empty(out)
    settings = load_config(config) if config is not None else UPDATE_CONFIG
    changes: dict[str, Any] = {} if folds is None else {"cv": settings.cv.model_copy(update={"n_splits": folds})}
    if n_boot is not None:
        changes["bootstrap"] = settings.bootstrap.model_copy(update={"n_boot": n_boot})
    settings = settings.model_copy(update=changes)
    parent = load_model(model)
    with flag("--task"):
        selected_models(parent, task)
    result = run_update(parent, load_cohort(cohort), float(alpha), settings, task)
    result = write_updated(result, parent, out)
    document = result.report | {"bundle": str(result.path)}
    report_path = report or out.with_name(f"{out.name}.REPORT.json")
    write_json(report_path, document)
    console.print(
        f"[bold]each option cross-validated on {result.lineage.local_cohort_size} infusions of {cohort} "
        f"({settings.cv.n_splits} folds; bootstrap 95% CI)[/]"
    )
    print_rows(OPTION_HEADER, option_rows(document), f"all in {report_path}", first=["model", "option", "choice"])
    for key, entry in document["models"].items():
        kept = LABELS[entry["choice"]]
        console.print(f"[bold]{escape(key)}[/]: kept {escape(kept)}: {escape(entry['reason'])}", highlight=False)
        _sample_size_line(f"{key}: {entry['precision']['statement']}")
    console.print(f"choice: {escape(result.lineage.procedure)}, alpha {alpha}", highlight=False)
    console.print(
        f"new bundle {result.path} (parent {result.lineage.parent_bundle_sha256[:12]}...); report {report_path}; "
        "check it on another local cohort with `crsrisk evaluate`"
    )
    if result.lineage.local_cohort_synthetic:
        console.print("[yellow]note:[/] the local cohort is synthetic: no figure here is clinical evidence")


@app.command()
@friendly
def samplesize(
    prevalence: float = typer.Option(..., "--prevalence", help="anticipated outcome prevalence (0-1)"),
    parameters: Optional[int] = typer.Option(
        None, "--parameters", min=1, help="candidate predictor parameters (development)"
    ),
    r2_cs: Optional[float] = typer.Option(None, "--r2-cs", help="anticipated Cox-Snell R2 (development)"),
    cstatistic: Optional[float] = typer.Option(
        None, "--cstatistic", help="anticipated C-statistic (in place of --r2-cs; required with --validation)"
    ),
    shrinkage: float = typer.Option(0.9, "--shrinkage", help="target expected shrinkage (development)"),
    validation: bool = typer.Option(
        False,
        "--validation",
        help="size an external validation instead (O/E, calibration slope and C-statistic CI widths)",
    ),
    oe_width: float = typer.Option(0.2, "--oe-width", help="target 95% CI width of O/E (validation)"),
    slope_width: float = typer.Option(
        0.2, "--slope-width", help="target 95% CI width of the calibration slope (validation)"
    ),
    c_width: float = typer.Option(0.1, "--c-width", help="target 95% CI width of the C-statistic (validation)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (minimum_n is the largest)"),
) -> None:
    """How much data is enough (Riley et al.): minimum n to develop a binary-outcome model, or to validate one."""
    from crsrisk.evaluation.samplesize import development_sample_size, validation_sample_size

    if validation:
        if cstatistic is None:
            raise InputError("--validation needs --cstatistic (the anticipated C-statistic)")
        result = validation_sample_size(prevalence, cstatistic, oe_width, slope_width, c_width)
    else:
        if parameters is None:
            raise InputError("--parameters is needed to size a development cohort")
        if r2_cs is not None and cstatistic is not None:
            raise InputError("give --r2-cs or --cstatistic, not both")
        result = development_sample_size(
            prevalence, parameters, r2_cs=r2_cs, cstatistic=cstatistic, shrinkage=shrinkage
        )
    if as_json:
        print_json(result.to_dict())
        return
    console.print(
        f"[bold]minimum sample size for {result.purpose}[/] (Riley et al.), prevalence {prevalence}; "
        + ", ".join(f"{k} {v}" for k, v in result.assumptions.items()),
        highlight=False,
    )
    columns = ("criterion", "n", "events") + (("events/parameter",) if result.purpose == "development" else ())
    rows = []
    for c in result.criteria:
        per_parameter = [] if c.events_per_parameter is None else [f"{c.events_per_parameter:.2f}"]
        rows.append([c.description, str(c.n), str(c.events), *per_parameter])
    print_rows(list(columns), rows, "all of them with --json")
    console.print(f"minimum n = {result.minimum_n} ({result.minimum_events} events): the largest of the criteria")
