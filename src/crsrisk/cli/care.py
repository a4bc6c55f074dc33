"""Commands on the clinician's path: predict, explain, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from crsrisk import notice
from crsrisk.bundle.store import Bundle
from crsrisk.scoring.audited import audit_table
from crsrisk.cli.common import (
    _allow_unverified_option,
    _model_option,
    app,
    console,
    flag,
    friendly,
    print_json,
    print_rows,
    say,
    say_model,
)
from crsrisk.cohort.population import flags_text
from crsrisk.errors import InputError, NothingScored
from crsrisk.features.phrases import log_odds, missing_lines


@app.command()
@friendly
def predict(
    target: Path = typer.Argument(..., help="patient.json (one patient) or a cohort folder (batch)"),
    model: Optional[str] = _model_option(),
    now_hours: Optional[float] = typer.Option(
        None,
        "--now-hours",
        help="one patient: the hour to predict at, "
        "from everything strictly before it (default: just after the "
        "latest measurement or event)",
    ),
    at: Optional[float] = typer.Option(
        None,
        "--at",
        help="batch: score every infusion as of this hour, as "
        "predict --now-hours would (default: every model at its own landmarks)",
    ),
    trajectory: bool = typer.Option(
        False,
        "--trajectory",
        help="one patient: the risk every 12 h and after each new measurement, with the top reasons, drawn as a PNG",
    ),
    plot: Optional[Path] = typer.Option(
        None, "--plot", help="--trajectory: PNG path (default: <patient>_trajectory.png)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the full result as JSON"),
    output_format: str = typer.Option(
        "text",
        "--format",
        help="one patient: text, json (as --json) or fhir (a FHIR R4 Bundle of RiskAssessment resources)",
    ),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="append to the prediction audit log"),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", help="default: $CRSRISK_AUDIT_LOG"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="batch: CSV of patient_id, task, landmark_hours, horizon_hours, probability, band"
    ),
    top: int = typer.Option(5, "--top", help="contributors shown per task"),
    chunk_size: int = typer.Option(5000, "--chunk-size", min=1, help="partitioned cohort: infusions per chunk"),
    dask: Optional[str] = typer.Option(
        None,
        "--dask",
        help="partitioned cohort: score chunks on the Dask "
        "scheduler at tcp://HOST:PORT, or 'local' for a local cluster",
    ),
    allow_unverified: bool = _allow_unverified_option(),
) -> None:
    """Calibrated risk for one patient with its reasons (or over time), or scores for every infusion of a cohort."""
    from crsrisk.cohort.io import is_folder
    from crsrisk.scoring import load_model, predict as predict_one
    from crsrisk.scoring.patient import default_now_words

    bundle = load_model(model, allow_unverified=allow_unverified)  # refused unless signed by a trusted key

    if is_folder(target):
        from crsrisk.scoring.batch import BATCH_COLUMNS, score_partitioned
        from crsrisk.cohort.io import load_cohort
        from crsrisk.cohort.partitions import is_partitioned
        from crsrisk.util.outputs import write_table
        from crsrisk.scoring import predict_cohort

        if out is None:
            raise InputError("--out: batch scoring of a cohort folder needs an output CSV file")
        if is_partitioned(target):
            done = score_partitioned(
                target, out, bundle, chunk_size=chunk_size, dask=dask, audit=audit, audit_log=audit_log, at_hours=at
            )
            for note in done.notes:
                console.print(f"note: {escape(note)}", highlight=False)
            console.print(
                f"scored {done.infusions} infusions ({done.rows} rows, {done.chunks} chunks) into {out} "
                f"in {done.seconds:.1f} s"
            )
            return
        if dask is not None:
            raise InputError(
                "--dask: only a partitioned cohort folder (patients/, measurements/, events/ "
                "folders of Parquet files) is scored on a cluster"
            )
        cohort = load_cohort(target)
        scores = predict_cohort(cohort, bundle, at_hours=at, audit=audit, audit_log=audit_log)
        write_table(scores[BATCH_COLUMNS], out)
        console.print(
            f"scored {scores['patient_id'].nunique()} infusions ({len(scores)} rows) into {out}; "
            f"model {bundle.path} ({escape(bundle.trust)})"
        )
        return
    if at is not None:
        raise InputError("--at: scores a cohort folder; for one patient use --now-hours")
    if trajectory:
        _print_trajectory(target, bundle, plot, as_json, top, audit, audit_log)
        return
    if output_format not in ("text", "json", "fhir"):
        raise ValueError(f"--format: expected text, json or fhir, got {output_format!r}")
    if output_format == "fhir":
        from crsrisk.cohort.record import read_record
        from crsrisk.service.riskassessment import risk_assessment_bundle

        record = read_record(target)
        print_json(
            risk_assessment_bundle(
                predict_one(record, model=bundle, now_hours=now_hours, audit=audit, audit_log=audit_log), record
            )
        )
        return
    result = predict_one(target, model=bundle, now_hours=now_hours, audit=audit, audit_log=audit_log)
    if as_json or output_format == "json":
        print_json(result.to_dict())
        return
    default = f" (by default: {default_now_words(result.now_hours)})" if now_hours is None else ""
    say(f"{default}: everything recorded strictly before it", lead=f"as of hour {result.now_hours:g}")
    for p in result.predictions:
        interval = p.interval()
        shown = "" if interval is None else f"; 95% interval {interval[0]:.1%} to {interval[1]:.1%}"
        console.print()
        say(f" ({p['band']} risk{shown}) - {p['question']}", lead=f"{p['task']}: {p['probability']:.1%}")
        print_rows(
            ["reason", "SHAP (log-odds)"], [[c["phrase"], log_odds(c["shap"])] for c in p["contributions"][:top]]
        )
        missing = missing_lines(p.missing(), p.clock)
        if missing:
            say(f"missing for {p['task']}:")
        for line in missing:
            say(line, margin=2)
    for occurred in result.already_occurred:
        say(f"{occurred['task']}: {occurred['text']} (not scored)")
    if result.population_flags:
        found = flags_text(result.population_flags, [p.model.key for p in result.predictions])
        say(found, lead="outside the training population: ", style="bold yellow")
    for skipped in result.not_applicable:
        say(f"{skipped['task']}: not scored ({skipped['reason']})")
    say_model(result.model)


def _print_trajectory(
    target: Path,
    model: Bundle,
    plot: Optional[Path],
    as_json: bool,
    top: int,
    audit: bool,
    audit_log: Optional[Path],
) -> None:
    """``predict --trajectory``: the table (or JSON) of risk over time and its PNG; audited like predict."""
    from crsrisk.scoring.trajectory import risk_trajectory

    result = risk_trajectory(target, model, top=min(top, 3), audit=audit, audit_log=audit_log)
    path = result.plot(plot or Path(f"{target.stem}_trajectory.png"))
    if as_json:
        print_json(result.to_dict() | {"plot": str(path)})
        return
    table = Table(
        title="risk over time: a row where a task's risk (to 0.1 %) or band changed, from everything strictly "
        "before that hour",
        title_justify="left",
    )
    for column in ("hour", "task", "probability", "band", "top reasons"):
        table.add_column(column, overflow="fold")
    for point in result.changes():
        table.add_row(
            f"{point['hours']:.1f}",
            point["task"],
            f"{point['probability']:.1%}",
            point["band"],
            "; ".join(point["reasons"]),
        )
    console.print(table)
    for task, hours in result.already_occurred.items():
        console.print(f"{task}: occurred at hour {hours:g}")
    if result.population_flags:
        found = flags_text(result.population_flags, sorted({p["model_key"] for p in result.points}))
        say(found, lead="outside the training population: ", style="bold yellow")
    console.print(f"plot: {path}")
    say_model(result.model)


@app.command()
@friendly
def explain(
    target: Path = typer.Argument(..., help="patient.json (waterfall + summary) or a cohort folder (global plots)"),
    model: Optional[str] = _model_option(),
    now_hours: Optional[float] = typer.Option(None, "--now-hours"),
    out: Path = typer.Option(Path("explanations"), "--out", help="folder for the PNG plots and text"),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="append to the prediction audit log"),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", help="default: $CRSRISK_AUDIT_LOG"),
    allow_unverified: bool = _allow_unverified_option(),
) -> None:
    """SHAP explanations: a patient's waterfall and summary, or a cohort's importance, beeswarm and dependence.
    A cohort's explanations are research and read any bundle; a patient's are care, as ``predict``."""
    from crsrisk.reporting.cohort_figures import question
    from crsrisk.reporting.explain import explain_cohort, explain_patient
    from crsrisk.scoring import load_for_research, load_model

    from crsrisk.cohort.io import is_folder, load_cohort

    if is_folder(target):
        bundle = load_for_research(model)
        cohort = load_cohort(target)
        table = explain_cohort(cohort, bundle, out)
        if audit:
            audit_table(bundle, table, cohort.fingerprint(), "explanation", audit_log)
        for key, part in table.groupby("model", sort=False):
            console.print(f"{key} ({escape(question(bundle.models[str(key)]))}), mean |SHAP| in log-odds:")
            console.print(
                "".join(f"  {r.mean_abs_shap:.3f}  {escape(str(r.label))}\n" for r in part.head(5).itertuples()), end=""
            )
        console.print(f"plots and global_importance.csv in {out}")
        say_model(bundle.identity.to_dict())
        return
    bundle = load_model(model, allow_unverified=allow_unverified)
    with flag("--now-hours", NothingScored):
        summary, files = explain_patient(
            target, model=bundle, now_hours=now_hours, out_dir=out, audit=audit, audit_log=audit_log
        )
    for line in summary.splitlines():
        text = line.lstrip()
        say(text, margin=len(line) - len(text))
    say("reasons charts and SHAP waterfalls:")
    for path in files:
        say(str(path), margin=2)
    say_model(bundle.identity.to_dict())


@app.command()
@friendly
def serve(
    model: Optional[str] = _model_option(),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to bind; anything but loopback needs $CRSRISK_API_TOKEN"
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", help="default: $CRSRISK_AUDIT_LOG"),
    workers: Optional[int] = typer.Option(
        None,
        "--workers",
        min=1,
        help="server processes (default: the cores available); they share the socket and the audit log",
    ),
    allow_unverified: bool = _allow_unverified_option(),
) -> None:
    """Serve predictions over REST (POST /predict) and the bedside page (/) until interrupted."""
    from crsrisk.service.guard import required_token
    from crsrisk.service.run import serve as run_server
    from crsrisk.service.run import worker_count

    with flag("--host"):
        secured = required_token(host) is not None
    with flag("--workers"):
        workers = worker_count(workers)
    console.print(
        f"crsrisk serving on http://{host}:{port}/ in {workers} process(es) (page at /, API docs at "
        f"/docs); bearer token {'required' if secured else 'not required (loopback only)'}; Ctrl-C stops it. "
        f"[bold]{notice.GENERAL}[/]"
    )
    run_server(
        model=model, host=host, port=port, audit_log=audit_log, workers=workers, allow_unverified=allow_unverified
    )
