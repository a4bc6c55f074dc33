"""What every command shares: the Typer apps, the consoles, the bad-input wrapper, output helpers."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import textwrap
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import click
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import crsrisk
from crsrisk import notice
from crsrisk.errors import CohortValidationError, CrsriskError, InputError, shown

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Predict severe CRS, ICANS and tocilizumab-refractory CRS after CAR T-cell therapy. " + notice.GENERAL,
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


def tracking_store(uri: str | None, name: str = "--tracking-uri") -> str:
    """The MLflow store a command tracks in (``uri``, or the default), refused by the library's one rule before
    the command reads or writes anything; ``name`` is how the user gave it."""
    from crsrisk.training import tracking

    with flag(name):
        return tracking.tracking_store(uri)


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


TABLE_WIDTH = 80  # every table fits an 80-column terminal (or a narrower one), whatever the output goes to


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def print_rows(header: list[str], rows: list[list[str]], dropped_note: str = "", first: Sequence[str] = ()) -> None:
    """A table of text cells (markup escaped) at most ``TABLE_WIDTH`` columns wide, cells wrapped at word
    boundaries; the columns named in ``first`` lead, the others follow in order; while the columns' longest words
    do not fit, the rightmost column is left out (never the first), and a note names what was left out, then
    ``dropped_note`` (where to read it)."""
    order = [header.index(name) for name in first] + [i for i, name in enumerate(header) if name not in first]
    header, rows = [header[i] for i in order], [[row[i] for i in order] for row in rows]
    width = min(console.width, TABLE_WIDTH)
    shown = len(header)
    need = [max(_longest_word(cell) for cell in [name, *(row[i] for row in rows)]) for i, name in enumerate(header)]
    while shown > 1 and sum(need[:shown]) + 3 * shown + 1 > width:  # each column: its text, 2 padding, 1 rule
        shown -= 1
    natural = [max(cell_len(cell) for cell in [name, *(row[i] for row in rows)]) for i, name in enumerate(header)]
    spare, widths = width - (sum(need[:shown]) + 3 * shown + 1), []
    for least, most in zip(need[:shown], natural):  # the longest words first, then the spare room in order
        widths.append(least + min(spare, most - least))
        spare -= widths[-1] - least
    table = Table()
    for name, chosen in zip(header[:shown], widths):
        table.add_column(escape(name), overflow="fold", width=chosen)  # fold only a word wider than the table
    for row in rows:
        table.add_row(*(escape(cell) for cell in row[:shown]))
    console.print(table, width=width)
    if shown < len(header):
        left_out = ", ".join(header[shown:])
        say(f"(not shown at {width} columns: {left_out}{'; ' + dropped_note if dropped_note else ''})")


def text_width() -> int:
    """The width prose is wrapped at: the terminal's, or ``TABLE_WIDTH`` when the output is not a terminal."""
    return console.width if console.is_terminal else TABLE_WIDTH


def say(text: str, lead: str = "", style: str = "bold", margin: int = 0, hang: int = 4) -> None:
    """Plain text (markup escaped) after an optional ``lead`` in ``style``, wrapped at word boundaries to
    ``text_width``, ``margin`` spaces in and every further line ``hang`` more, so a long list stays readable."""
    lines = textwrap.wrap(
        lead + text,
        text_width(),
        initial_indent=" " * margin,
        subsequent_indent=" " * (margin + hang),
        break_long_words=False,
        break_on_hyphens=False,
    )
    start = " " * margin + lead
    for i, line in enumerate(lines):
        shown = escape(line)
        if i == 0 and lead and line.startswith(start):
            shown = f"{' ' * margin}[{style}]{escape(lead)}[/]{escape(line[len(start) :])}"
        console.print(shown, highlight=False, soft_wrap=True)


def require_empty(out: Path) -> None:
    """Refuse an ``--out`` folder that already holds files, so nothing written before is overwritten."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose another folder")


def _print_counts(title: str, counts: dict) -> None:
    console.print(f"[bold]{escape(title)}[/]")  # above the table: a title inside would wrap to its width
    print_rows(["name", "count"], [[str(name), str(count)] for name, count in counts.items()])


def say_model(identity: Mapping[str, Any]) -> None:
    """The closing line of every output a model produced, wrapped as ``say`` wraps: the notice's line in bold,
    then the bundle and its trust."""
    say(f" model {identity['path']} ({identity['signature']})", lead=notice.line(notice.is_synthetic(identity)))


def print_json(data: object) -> None:
    """Print plain, strict JSON (no colour; null, never NaN) so other tools can read the output."""
    from crsrisk.util.outputs import json_text

    typer.echo(json_text(data))
