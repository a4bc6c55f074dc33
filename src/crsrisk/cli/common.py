"""What every command shares: the Typer apps, the consoles, the bad-input wrapper, output helpers."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import crsrisk
from crsrisk.errors import CohortValidationError, CrsriskError, InputError, shown

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Predict severe CRS, ICANS and tocilizumab-refractory CRS after CAR T-cell therapy. "
    "Research software: not for clinical use.",
)
audit_log_app = typer.Typer(no_args_is_help=True, help="The append-only prediction audit log.")
app.add_typer(audit_log_app, name="audit-log")
import_app = typer.Typer(
    no_args_is_help=True, help="Read clinical sources (FHIR R4, OMOP CDM v5.4) into a cohort folder."
)
app.add_typer(import_app, name="import")
console = Console()
if not console.is_terminal:  # piped or captured: wide enough for the comparison table
    console = Console(width=200)
errors = Console(stderr=True)

# OSError: a path or resource the system refuses (not found, a folder where a file belongs, no permission, disk full)
_EXPECTED = (CrsriskError, OSError)
INTERNAL_EXIT, BAD_INPUT_EXIT = 3, 2


def _problem_text(error: BaseException) -> str:
    """What was wrong, in one message: an OS error names its path, the package's errors say it themselves; text
    that is not valid Unicode (a lone surrogate) is shown escaped, so printing it cannot fail."""
    text = str(error)
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {shown(error.filename)}" if error.filename else error.strerror
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _write_traceback(error: BaseException) -> Path:
    """The traceback of an internal error, in a new owner-only (0600) file in the temp folder; its path."""
    handle, name = tempfile.mkstemp(prefix="crsrisk-internal-error-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as out:
        out.write(f"crsrisk {crsrisk.__version__}\n")
        out.write("".join(traceback.format_exception(error)))
    return Path(name)


def friendly(command: Callable) -> Callable:
    """Bad input (the package's own errors, OS errors about paths) -> a message naming the problem and exit 2;
    anything else is a bug -> one line pointing to a file with the traceback and exit 3, so tests can tell."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except _EXPECTED as error:
            errors.print(
                f"[bold red]error:[/] {type(error).__name__}: {escape(_problem_text(error))}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(BAD_INPUT_EXIT) from None
        except Exception as error:
            where = _write_traceback(error)
            errors.print(
                f"[bold red]internal error[/]; details in {escape(str(where))} (a bug, not your input: "
                "please report it with that file)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(INTERNAL_EXIT) from None

    return wrapper


@contextlib.contextmanager
def flag(name: str, kind: type[InputError] = InputError) -> Iterator[None]:
    """Say which option a refusal (of ``kind``) is about: the library names the setting, the CLI adds its flag."""
    try:
        yield
    except kind as error:
        raise InputError(f"{name}: {error}") from error


def _model_option() -> Any:
    """The ``--model`` option every scoring command takes."""
    return typer.Option(
        None, "--model", help="bundle folder or models:/NAME@ALIAS (default: the shipped synthetic model)"
    )


def _allow_unverified_option() -> Any:
    """The ``--allow-unverified`` option of the care commands: the one way to lower the signature check."""
    return typer.Option(
        False,
        "--allow-unverified",
        help="research use only: accept a bundle not signed by a trusted key (every output then says UNVERIFIED)",
    )


MAX_SHOWN = 50  # problems shown on the terminal; --problems-out writes every one


def _write_problems(error: CohortValidationError, path: Path) -> None:
    """Every problem of a failed validation as a CSV (owner-only: it quotes patient data), and say where."""
    import pandas as pd

    from crsrisk.util.outputs import write_table

    rows = [
        {
            "table": p.table,
            "line_or_row": None if p.row is None else (p.row + 1 if p.csv else p.row),
            "patient_id": p.patient_id,
            "field": p.field,
            "value": None if p.value is None else str(p.value),
            "rule": p.message,
        }
        for p in error.problems
    ]
    write_table(pd.DataFrame(rows, columns=["table", "line_or_row", "patient_id", "field", "value", "rule"]), path)
    errors.print(f"wrote all {len(rows)} problem(s) to {escape(str(path))}", highlight=False)


def print_rows(header: list[str], rows: list[list[str]]) -> None:
    """A table of text cells (markup escaped), long cells folded rather than cut."""
    table = Table()
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def require_empty(out: Path) -> None:
    """Refuse an ``--out`` folder that already holds files, so nothing written before is overwritten."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose another folder")


def _print_counts(title: str, counts: dict) -> None:
    console.print(f"[bold]{escape(title)}[/]")  # above the table: a title inside would wrap to its width
    table = Table()
    table.add_column("name")
    table.add_column("count", justify="right")
    for name, count in counts.items():
        table.add_row(str(name), str(count))
    console.print(table)


def print_json(data: object) -> None:
    """Print plain, strict JSON (no colour; null, never NaN) so other tools can read the output."""
    from crsrisk.util.outputs import json_text

    typer.echo(json_text(data))
