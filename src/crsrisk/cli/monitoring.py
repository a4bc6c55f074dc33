"""``crsrisk monitor``: for auditors and operators after go-live."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from crsrisk.cli.common import app, console, errors, flag, friendly, print_json, tracking_store


@app.command()
@friendly
def monitor(
    audit_log: Path = typer.Option(..., "--audit-log", help="the audit log of the predictions made in use"),
    outcomes: Path = typer.Option(
        ..., "--outcomes", help="cohort folder with the outcomes observed since (or a FHIR source, read directly)"
    ),
    model: list[str] = typer.Option(
        [],
        "--model",
        help="bundle folder or models:/NAME@ALIAS of a monitored model version (repeatable; default: the shipped "
        "model): gives task definitions and the training population for input drift",
    ),
    plan: Optional[Path] = typer.Option(None, "--plan", help="monitoring plan YAML (default: the shipped plan)"),
    every: Optional[int] = typer.Option(None, "--every", help="a period is every N predictions, in log order"),
    period: Optional[str] = typer.Option(None, "--period", help="month (the default): calendar months, UTC"),
    out: Path = typer.Option(..., "--out", help="folder for monitor.json, report.html and plots/"),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store for the monitoring run (default: $MLFLOW_TRACKING_URI; none: no run)"
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="check the log's chain first (needs its key)"),
    fail_on_flag: bool = typer.Option(False, "--fail-on-flag", help="exit 1 when any flag is raised"),
    as_json: bool = typer.Option(False, "--json", help="print monitor.json instead of the summary"),
) -> None:
    """Join audited predictions with later outcomes; per period and model version: O/E, calibration, AUROC, risk
    bands and input drift, judged against the monitoring plan."""
    from crsrisk.bundle.store import load_bundle
    from crsrisk.monitoring.plan import load_plan
    from crsrisk.monitoring.report import write_report
    from crsrisk.monitoring.run import load_outcomes, monitor as run_monitor, period_rule
    from crsrisk.monitoring.stream import audit_log_file
    from crsrisk.scoring.load import DEFAULT_MODEL, load_model

    # bad options are refused before anything is read; the library names the setting, the CLI adds its flag
    with flag("--every" if every is not None and period is None else "--period"):
        period_rule(period, every)
    with flag("--plan"):
        chosen = load_plan(plan)
    with flag("--audit-log"):
        audit_log_file(audit_log)
    with flag("--outcomes"):
        cohort = load_outcomes(outcomes)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:  # refused before the report is written
        tracking_store(uri, "--tracking-uri" if tracking_uri else "$MLFLOW_TRACKING_URI")
    # monitoring is an audit path: bundles are read as they are (signed or not); their trust shows in the report
    if model:
        bundles = [load_model(m) if m.startswith(("models:/", "runs:/")) else load_bundle(m) for m in model]
    else:
        bundles = [load_bundle(DEFAULT_MODEL)] if (DEFAULT_MODEL / "manifest.json").exists() else []

    def said(flag: dict) -> None:
        if not as_json:
            console.print(f"[bold red]FLAG[/] {escape(flag['period'])}: {escape(flag['text'])}", highlight=False)

    result = run_monitor(audit_log, cohort, bundles, chosen, every, period, verify, on_flag=said)
    paths = write_report(result.document, out)
    document = result.document
    if uri:
        from crsrisk.monitoring.tracking import log_monitoring

        run_id, linked = log_monitoring(uri, document, paths, bundles, model)
        document["mlflow"] = {"tracking_uri": uri, "run_id": run_id, "registered_model_versions": linked}
        paths = write_report(document, out)
    if as_json:
        print_json(document)
    else:
        log = document["audit_log"]
        chain = "not verified" if log["verified"] is None else "intact" if log["verified"] else "BROKEN"
        console.print(
            f"{document['volume']} predictions in {len(document['periods'])} period(s) ({document['period']}); "
            f"chain {chain}; {len(result.flags)} flag(s)",
            highlight=False,
        )
        for problem in log["chain_problems"][:10]:
            errors.print(f"  chain: {escape(problem)}", highlight=False, soft_wrap=True)
        for note in document["notes"]:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        if "mlflow" in document:
            console.print(
                f"MLflow run {document['mlflow']['run_id']} ({uri}); linked to "
                f"{', '.join(f'{n}/{v}' for n, v in document['mlflow']['registered_model_versions']) or 'no registered version'}",
                highlight=False,
            )
        console.print(f"report: {paths['html']}; figures: {paths['json']}", highlight=False)
    if fail_on_flag and result.flags:
        raise typer.Exit(1)
