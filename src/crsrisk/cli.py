"""The ``crsrisk`` command line: thin wrappers that parse options, call the library and print results."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from crsrisk.errors import BundleIntegrityError, CohortValidationError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Predict severe CRS, ICANS and tocilizumab-refractory CRS after CAR T-cell therapy. "
                       "Research software: not for clinical use.")
audit_log_app = typer.Typer(no_args_is_help=True, help="The append-only prediction audit log.")
app.add_typer(audit_log_app, name="audit-log")
console = Console()
errors = Console(stderr=True)

_EXPECTED = (CohortValidationError, BundleIntegrityError, FileExistsError, FileNotFoundError, ValueError, KeyError)


def friendly(command: Callable) -> Callable:
    """Turn the package's own errors into a clear message and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _EXPECTED as error:
            text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            errors.print(f"[bold red]error:[/] {type(error).__name__}: {text}", markup=True, highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _print_counts(title: str, counts: dict) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("name")
    table.add_column("count", justify="right")
    for name, count in counts.items():
        table.add_row(str(name), str(count))
    console.print(table)


@app.command()
@friendly
def validate(path: Path = typer.Argument(..., help="cohort folder with patients, measurements, events")) -> None:
    """Validate a cohort folder against the contract and print a summary."""
    from crsrisk.cohort_io import load_cohort
    from crsrisk.summary import cohort_summary

    summary = cohort_summary(load_cohort(path))
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


@audit_log_app.command("verify")
@friendly
def audit_log_verify(path: Optional[Path] = typer.Argument(None, help="log file (default: $CRSRISK_AUDIT_LOG)")) -> None:
    """Check the hash chain of the prediction audit log; exit non-zero naming any broken record."""
    from crsrisk.audit.log import resolve_log_path, verify_log

    log_path = resolve_log_path(path)
    result = verify_log(log_path)
    if result.ok:
        console.print(f"[green]ok[/]: checked {result.n_records} record(s) in {log_path}; chain intact")
        return
    errors.print(f"[red]BROKEN[/]: checked {result.n_records} record(s) in {log_path}")
    for problem in result.problems:
        errors.print(f"  {problem}", highlight=False)
    raise typer.Exit(1)


def print_json(data: object) -> None:
    """Print plain JSON (no colour) so other tools can read the output."""
    typer.echo(json.dumps(data, indent=1, sort_keys=False, default=str))
