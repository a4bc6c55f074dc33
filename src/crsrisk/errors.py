"""The package's own error types: every refusal of bad input is a ``CrsriskError``; any other exception is a bug.

The bad-input types also derive from the built-in type a caller would catch (``ValueError``, ``KeyError``,
``RuntimeError``), so code written against those keeps working."""

from __future__ import annotations

import difflib

import reprlib
from dataclasses import dataclass
from typing import Iterable

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 80, 80, 40
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 6


def shown(value: object) -> str:
    """A value as Python would write it, cut short: nested junk, huge integers and long text stay readable."""
    try:
        return escaped(_SHORT.repr(value))
    except Exception:  # an integer beyond Python's digit limit, or an object whose repr fails
        return f"<{type(value).__name__} that cannot be shown>"


def escaped(text: str) -> str:
    """Text that can be written as UTF-8: a lone surrogate (or any unencodable character) shown as ``\\udXXX``."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is, what was found and what was expected.

    ``row`` is the 1-based data row of the table; for a CSV file the text line is ``row + 1``
    (line 1 is the header), which is what the message shows so an editor can jump to it.
    """

    table: str
    field: str
    message: str
    row: int | None = None
    patient_id: str | None = None
    value: object = None
    csv: bool = True

    def __post_init__(self) -> None:
        """Escape unencodable characters in the texts (a key or id echoed from the input), so every refusal
        can be written as UTF-8 (a JSON body, a terminal, a log)."""
        for name in ("table", "field", "message", "patient_id"):
            text = getattr(self, name)
            if isinstance(text, str) and not text.isascii():
                object.__setattr__(self, name, escaped(text))

    def __str__(self) -> str:
        where = [self.table]
        if self.row is not None:
            where.append(f"line {self.row + 1}" if self.csv else f"row {self.row}")
        if self.patient_id is not None:
            where.append(f"patient_id={self.patient_id!r}")
        where.append(f"field {self.field!r}")
        value = "" if self.value is None else f": value {shown(self.value)}"
        return f"{', '.join(where)}{value}: {self.message}"


def unknown_key_message(allowed: Iterable[str], key: object = None) -> str:
    """How every refusal of an unknown key reads (a record, a request body, an experiment file): the closest
    allowed key when the key looks like a typo of one, then the keys allowed there, listed."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75) if isinstance(key, str) else []
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {guess}expected one of {allowed}"


class CrsriskError(Exception):
    """An error the package raises on purpose: bad input, or a state the user can fix (a damaged log, a bundle
    that fails its checks). The CLI shows it and exits 2; the service answers 422 (503 for the audit log)."""


class InputError(CrsriskError, ValueError):
    """A bad argument, setting or value, named with what was expected."""


class NotFoundError(InputError, KeyError):
    """A name that is not there (an unknown feature, a patient not in the cohort); shown as its message, unquoted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NothingScored(InputError):
    """No task is scored for this patient at the hour asked (each outcome occurred, or none applies yet), so
    there is nothing to explain; the message names the hour and each task's reason."""


class CohortValidationError(CrsriskError, ValueError):
    """Input that breaks the cohort contract; holds every problem found (up to a limit)."""

    def __init__(
        self, problems: list[Problem], truncated: int = 0, counts: list[tuple[str, str, str, int]] | None = None
    ) -> None:
        self.problems = problems
        self.truncated = truncated
        self.counts = counts or []  # every problem counted by kind (table, field, rule), shown examples or not
        lines = [str(p) for p in problems]
        if truncated:
            lines.append(f"... and {truncated} more problem(s) not shown")
        kinds = (
            [f"{n} x {table}.{field}: {rule}" for table, field, rule, n in self.counts]
            if len(self.counts) > 1 or truncated
            else []
        )
        by_kind = ("by kind:\n  " + "\n  ".join(kinds) + "\nfirst examples:\n  ") if kinds else ""
        super().__init__(f"{len(problems) + truncated} problem(s) in the input:\n  {by_kind}" + "\n  ".join(lines))

    def __reduce__(self) -> tuple:
        """Pickle from the problems (a Dask worker sends the error back to the driver), not from the message."""
        return type(self), (self.problems, self.truncated, self.counts)


class SourceImportError(CohortValidationError):
    """An import (FHIR, OMOP) that failed, with the table of codes it did not read (they often explain why)."""

    def __init__(
        self,
        problems: list[Problem],
        truncated: int = 0,
        counts: list[tuple[str, str, str, int]] | None = None,
        unknown_codes: list[dict] | None = None,
    ) -> None:
        super().__init__(problems, truncated, counts)
        self.unknown_codes = unknown_codes or []

    def __reduce__(self) -> tuple:
        """Pickle from the problems and the unknown codes."""
        return type(self), (self.problems, self.truncated, self.counts, self.unknown_codes)


class BundleIntegrityError(CrsriskError, RuntimeError):
    """A model bundle whose files do not match its manifest of SHA-256 hashes."""


class AuditLogError(CrsriskError, RuntimeError):
    """The prediction audit log cannot be written or read as a log (a bad path, a missing key, a foreign file)."""


class PrefetchMissingError(ValueError):
    """A CDS Hooks call lacks data the service needs and names no FHIR server to read it from (HTTP 412)."""


class FhirServerError(RuntimeError):
    """The FHIR server a CDS Hooks call named could not be read (HTTP 502): its address and what it answered."""
