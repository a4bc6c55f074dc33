"""Commands for auditors and key holders: audit, the audit log, keygen, sign."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape


from crsrisk.cli.common import (
    _model_option,
    app,
    audit_log_app,
    console,
    errors,
    flag,
    friendly,
    say_model,
    tracking_store,
)


@app.command()
@friendly
def audit(
    model: Optional[str] = _model_option(),
    cohort: Path = typer.Option(..., "--cohort", help="cohort folder to evaluate on (ideally held out)"),
    out: Path = typer.Option(Path("audit-report"), "--out", help="folder for model_card.html"),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow store holding the model's run (default: the one recorded in the bundle)"
    ),
    n_boot: int = typer.Option(300, "--n-boot", min=50),
) -> None:
    """Write the self-contained HTML model card and log it to the model's MLflow run when that run exists."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.reporting.model_card import write_model_card
    from crsrisk.scoring import load_for_research
    from crsrisk.training.artifacts import shared_tracking_uri

    if tracking_uri is not None:  # refused before the card is written
        tracking_store(tracking_uri)
    bundle = load_for_research(model)
    started = time.monotonic()

    def announce(step: str) -> None:
        console.print(f"model card, {time.monotonic() - started:3.0f} s: {step}", highlight=False)

    path = write_model_card(bundle, load_cohort(cohort), out, n_boot=n_boot, announce=announce)
    console.print(f"model card: {path}")
    say_model(bundle.identity.to_dict())
    run_id = bundle.metadata.mlflow_run_id
    if not run_id:
        console.print("no MLflow run recorded in the bundle: report not logged")
        return
    from crsrisk.training.tracking import local_tracking_store, log_report

    uri = tracking_uri or shared_tracking_uri(bundle.metadata.mlflow_tracking_uri) or local_tracking_store()
    if not uri:
        console.print(
            f"the model's MLflow run {run_id} was tracked in a local store on the machine that trained it (the "
            "bundle names no tracking server, and there is no mlflow.db in this folder): report not logged; pass "
            "--tracking-uri to log it to that store"
        )
        return
    console.print(log_report(uri, run_id, path))


@app.command()
@friendly
def keygen(
    out: Path = typer.Option(
        ..., "--out", help="file prefix: writes PREFIX.key (private, mode 0600) and PREFIX.pub (public)"
    ),
) -> None:
    """Make an Ed25519 key pair for signing model bundles (never overwrites a key)."""
    from crsrisk.bundle.signing import generate_keypair

    private, public = generate_keypair(out)
    console.print(
        f"private key {private} (keep it secret; mode 0600), public key {public} "
        "(add it to CRSRISK_TRUSTED_KEYS where bundles are loaded)"
    )


@app.command()
@friendly
def sign(
    bundle: Path = typer.Argument(..., help="model bundle folder"),
    key: Path = typer.Option(..., "--key", help="Ed25519 private key (PEM) from `crsrisk keygen`"),
) -> None:
    """Sign a model bundle's manifest (after checking every file against it): writes BUNDLE/signature.json."""
    from crsrisk.bundle import sign_bundle

    with flag("--key"):
        signed = sign_bundle(bundle, key)
    console.print(f"signed: {signed}")


@audit_log_app.command("head")
@friendly
def audit_log_head(path: Optional[Path] = typer.Argument(None, help="log file (default: $CRSRISK_AUDIT_LOG)")) -> None:
    """Print the latest record's SEQ:HASH; keep it elsewhere and pass it to `verify --expect-head` later."""
    from crsrisk.audit import log_head, resolve_log_path

    seq, digest = log_head(resolve_log_path(path))
    typer.echo(f"{seq}:{digest}")


@audit_log_app.command("verify")
@friendly
def audit_log_verify(
    path: Optional[Path] = typer.Argument(None, help="log file (default: $CRSRISK_AUDIT_LOG)"),
    expect_head: Optional[str] = typer.Option(
        None,
        "--expect-head",
        help="SEQ:HASH printed earlier by `crsrisk audit-log head`: detects records dropped from the end and rewrites",
    ),
) -> None:
    """Check every record's HMAC and the chain; exit 1 naming any broken record, 2 when the log cannot be read."""
    from crsrisk.audit import parse_head, resolve_log_path, verify_log

    log_path = resolve_log_path(path)
    with flag("--expect-head"):
        expected = parse_head(expect_head) if expect_head else None
    result = verify_log(log_path, expect_head=expected)
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    head = "empty" if result.head is None else f"head {result.head[0]}:{result.head[1]}"
    if result.ok:
        anchored = f"; contains the expected head {expect_head}" if expect_head else ""
        console.print(
            f"[green]ok[/]: checked {result.n_records} record(s) in {log_path}; chain intact{anchored}; {head}",
            soft_wrap=True,
        )
        return
    errors.print(f"[red]BROKEN[/]: checked {result.n_records} record(s) in {log_path}; {head}", soft_wrap=True)
    for problem in result.problems:
        errors.print(f"  {escape(problem)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
