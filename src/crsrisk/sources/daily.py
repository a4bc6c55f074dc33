"""Times relative to the infusion, including the documented rule for sources that record dates without times.

A value with a date and a time is placed exactly: hours = (its time - the infusion time). A value with a date
only (common in registries) is placed at ``hour`` o'clock of its day, so a lab on day d (d = its date minus
the infusion date) sits at ``d * 24 + hour - infusion_hour`` hours. On the infusion day itself that can fall
on either side of the infusion, so labs of that day go where ``same_day_labs`` says: ``before`` (moved to 1 h
before infusion if the stated hour is later) or ``after`` (moved to 1 h after it if the stated hour is
earlier); a source with such labs and no choice is refused. Events (grades, doses) dated the infusion day
are always placed after it: CRS, ICANS and their treatment follow the infusion. An infusion with a date only
is placed at ``infusion_hour`` o'clock. A time without a zone is read in the zone of the other time (an infusion
recorded as a date only takes the zone of the value it is compared with). The cohort's ``cohort.json`` records the rule (``to_metadata``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from typing import Literal

from crsrisk.errors import InputError

SameDay = Literal["before", "after"]
SAME_DAY_CHOICES: tuple[str, ...] = ("before", "after")
SAME_DAY_SHIFT_HOURS = 1.0


@dataclass(frozen=True)
class TimeRule:
    """Where date-only values go: at ``hour`` o'clock; a date-only infusion at ``infusion_hour`` o'clock."""

    hour: float = 8.0
    infusion_hour: float = 12.0
    same_day_labs: SameDay | None = None

    def __post_init__(self) -> None:
        for name in ("hour", "infusion_hour"):
            if not 0 <= getattr(self, name) < 24:
                raise InputError(f"{name}: expected an hour of the day from 0 to 24, got {getattr(self, name)!r}")
        if self.same_day_labs not in (None, *SAME_DAY_CHOICES):
            raise InputError(f"same_day_labs: expected one of {SAME_DAY_CHOICES}, got {self.same_day_labs!r}")

    def to_metadata(self) -> dict:
        """The rule as recorded in cohort.json, with a sentence saying what it did."""
        labs = (
            f"date-only labs of the infusion day {self.same_day_labs} the infusion (at least "
            f"{SAME_DAY_SHIFT_HOURS:g} h from it)"
            if self.same_day_labs
            else "no side given for date-only labs of the infusion day (an export with any is refused)"
        )
        return {
            **asdict(self),
            "description": (
                f"values with a date but no time are placed at {self.hour:g}:00 of their day; an infusion with a date "
                f"only at {self.infusion_hour:g}:00; {labs}; date-only events of the infusion day after it"
            ),
        }


Moment = datetime | date
"""A source time: a ``datetime`` when the source gave a time, a ``date`` when it gave only the day."""


class SameDayUnspecified(InputError):
    """A date-only lab falls on the infusion day and the rule does not say on which side it goes."""


def has_time(moment: Moment) -> bool:
    """True when the source recorded a time of day, not only a date."""
    return isinstance(moment, datetime)


def infusion_start(moment: Moment, rule: TimeRule) -> datetime:
    """The infusion as a datetime: its own time, or ``rule.infusion_hour`` o'clock of its date."""
    if isinstance(moment, datetime):
        return moment
    minutes = round(rule.infusion_hour * 60)
    return datetime.combine(moment, time(minutes // 60, minutes % 60))


def _clock_hours(moment: datetime) -> float:
    return moment.hour + moment.minute / 60 + moment.second / 3600 + moment.microsecond / 3.6e9


def hours_since(moment: Moment, infusion: datetime, lab: bool, rule: TimeRule) -> float:
    """Hours from the infusion to ``moment`` (negative before it), by the rule when ``moment`` has no time."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None and infusion.tzinfo is not None:
            moment = moment.replace(tzinfo=infusion.tzinfo)
        elif infusion.tzinfo is None and moment.tzinfo is not None:
            infusion = infusion.replace(tzinfo=moment.tzinfo)
        return (moment - infusion).total_seconds() / 3600
    days = (moment - infusion.date()).days
    hours = days * 24 + rule.hour - _clock_hours(infusion)
    if days != 0:
        return hours
    side = rule.same_day_labs if lab else "after"
    if side is None:
        raise SameDayUnspecified(
            "a lab dated the infusion day has no time: say whether such labs were taken "
            "before or after the infusion (same_day_labs 'before' or 'after')"
        )
    return min(hours, -SAME_DAY_SHIFT_HOURS) if side == "before" else max(hours, SAME_DAY_SHIFT_HOURS)
