"""A patient field's value as a source gives it (quantity, boolean, text, code) -> the contract's value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from crsrisk.schema.codes import PATIENT_UNITS
from crsrisk.schema.kinds import Choice, Kind, Number, Text, Truth
from crsrisk.schema.tables import PATIENT_COLUMNS

_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}


class _Problems(Protocol):
    def problem(
        self, where: str, field_name: str, message: str, patient_id: str | None = None, value: Any = None
    ) -> None: ...


Reader = Callable[[str, Any, "str | None", str, str, _Problems], Any]


def _number(column: str, value: Any, unit: str | None, where: str, patient_id: str, out: _Problems) -> Any:
    expected = PATIENT_UNITS.get(column)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        out.problem(where, column, f"expected a number in {expected}", patient_id, value)
        return None
    if unit and expected and unit.strip() != expected:
        out.problem(where, column, f"expected the UCUM unit {expected!r}", patient_id, unit)
        return None
    return float(value)


def _truth(column: str, value: Any, unit: str | None, where: str, patient_id: str, out: _Problems) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    out.problem(where, column, "expected a boolean", patient_id, value)
    return None


def _text(column: str, value: Any, unit: str | None, where: str, patient_id: str, out: _Problems) -> Any:
    return None if value is None else str(value).strip()


# One reader per column kind, chosen once per column.
_READERS: dict[type[Kind], Reader] = {Number: _number, Truth: _truth, Text: _text, Choice: _text}
_READ = {c.name: _READERS[type(c.kind)] for c in PATIENT_COLUMNS}


def patient_value(column: str, value: Any, unit: str | None, where: str, patient_id: str, out: _Problems) -> Any:
    """The contract value of ``column`` (float, bool or text), or None after recording why it is unusable."""
    return _READ[column](column, value, unit, where, patient_id, out)
