"""What every command shares: the Typer apps, the consoles, the bad-input wrapper, output helpers."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

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

    from crsrisk.util.outputs import write_table

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


def _flag_text(flag: dict) -> str:
    """One population flag in words: which field or model, the value, what training saw."""
    where = flag.get("model_key", flag["field"])
    return f"{flag['kind']} ({where}): {flag.get('value')!s}; expected {flag['expected']}"


def _audit_table(path: Path | None, bundle: Any, table: Any, cohort: Any, kind: str) -> None:
    """Append one audit record for a cohort's outputs (batch scores or SHAP importance)."""
    from crsrisk.audit import AuditLog, batch_record
    from crsrisk.scoring.patient import _model_info

    log = AuditLog(path)
    log.append(batch_record(log, _model_info(bundle), table, cohort.fingerprint(), kind))


def print_json(data: object) -> None:
    """Print plain, strict JSON (no colour; null, never NaN) so other tools can read the output."""
    from crsrisk.util.outputs import json_text

    typer.echo(json_text(data))
