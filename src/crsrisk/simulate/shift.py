"""Knobs that shift a synthetic cohort away from the default one: case mix and miscalibration.

A shifted cohort is what a model meets at a new centre: more adults, another CAR-T product mix, another spread of
centres (case mix, seen in the inputs), or a centre whose patients do worse than their measurements suggest (a centre
effect on the outcomes only: miscalibration). ``Shift()`` changes nothing: the default cohort's bytes are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

from crsrisk.cohort.io import MAX_SETTINGS_BYTES, read_limited
from crsrisk.errors import InputError
from crsrisk.schema.tables import PRODUCTS
from crsrisk.simulate.params import SimulationParams

# Adults drawn by adult_fraction: 18 + Gamma(2, 12) years (median ~38), at most 80. Assumption, aimed at adult B-ALL
# CAR-T trials such as ZUMA-3 (brexucabtagene, adults; clinical-facts.md, "to confirm"; its median age of about
# 40 years is widely cited, not re-read).
ADULT_AGE_MIN, ADULT_AGE_SHAPE, ADULT_AGE_SCALE, ADULT_AGE_MAX = 18.0, 2.0, 12.0, 80.0
SHIFT_SUBSEED = 3571  # the knobs' own random stream: the default cohort's draws never move


def _shares(name: str, value: Mapping[str, float], allowed: tuple[str, ...]) -> Mapping[str, float]:
    """Non-negative shares over known names, normalised to sum 1; else a ValueError naming the field and key."""
    if not isinstance(value, Mapping) or not value:
        raise InputError(f"{name}: expected a mapping of name to share, got {value!r}")
    for key, share in value.items():
        if key not in allowed:
            raise InputError(f"{name}: unknown name {key!r}; expected one of {', '.join(allowed)}")
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share < float("inf"):
            raise InputError(f"{name}: share of {key!r} must be a number >= 0, got {share!r}")
    total = float(sum(value.values()))
    if total <= 0:
        raise InputError(f"{name}: expected shares with a positive sum, got {dict(value)!r}")
    return MappingProxyType({key: float(share) / total for key, share in value.items()})


@dataclass(frozen=True)
class Shift:
    """Case-mix and miscalibration knobs; every default leaves the cohort exactly as ``simulate_cohort`` makes it.

    - ``adult_fraction``: share of infusions whose patient is drawn from an adult population (ages above) instead
      of the pediatric/AYA one; the rest keep the default draw (which itself has a few young adults up to 26).
    - ``product_mix``: CAR-T product shares in place of ``SimulationParams.product_shares`` (e.g. more CD28).
    - ``centre_shares``: centre shares in place of the default spread (``{"C3": 1}``: a single-centre cohort).
    - ``centre_effect``: per centre, a shift of the latent severity that drives the CRS grade, ICANS and
      tocilizumab-refractoriness, after every measurement's cause is fixed: patients at that centre do better or
      worse than their measurements suggest. In severity units (the outcome noise SD is 0.55; the grade-3 cut is
      0.95 above grade 2's): a positive effect raises the severe-CRS rate, i.e. a model from elsewhere under-predicts.
    """

    adult_fraction: float | None = None
    product_mix: Mapping[str, float] | None = None
    centre_shares: Mapping[str, float] | None = None
    centre_effect: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.adult_fraction is not None and (
            not isinstance(self.adult_fraction, (int, float))
            or isinstance(self.adult_fraction, bool)
            or not 0 <= self.adult_fraction <= 1
        ):
            raise InputError(f"adult_fraction: expected a number from 0 to 1, got {self.adult_fraction!r}")
        if self.product_mix is not None:
            object.__setattr__(self, "product_mix", _shares("product_mix", self.product_mix, PRODUCTS))
        if not isinstance(self.centre_effect, Mapping):
            raise InputError(f"centre_effect: expected a mapping of centre to shift, got {self.centre_effect!r}")
        for centre, effect in self.centre_effect.items():
            if not isinstance(effect, (int, float)) or isinstance(effect, bool) or not abs(effect) < 10:
                raise InputError(
                    f"centre_effect: shift of {centre!r} must be a number between -10 and 10, got {effect!r}"
                )
        object.__setattr__(self, "centre_effect", MappingProxyType(dict(self.centre_effect)))

    @property
    def is_default(self) -> bool:
        """True when no knob moves anything."""
        return self == Shift()

    def params(self, base: SimulationParams) -> SimulationParams:
        """The generator parameters with the product mix and centre shares applied (centre names checked)."""
        names = tuple(c.name for c in base.centres)
        for centre in self.centre_effect:
            if centre not in names:
                raise InputError(f"centre_effect: unknown centre {centre!r}; expected one of {', '.join(names)}")
        p = base if self.product_mix is None else replace(base, product_shares=dict(self.product_mix))
        if self.centre_shares is None:
            return p
        shares = _shares("centre_shares", self.centre_shares, names)
        return replace(p, centres=tuple(replace(c, share=shares.get(c.name, 0.0)) for c in p.centres))

    def ages(self, age: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Ages with ``adult_fraction`` of them re-drawn from the adult population (unchanged when it is None)."""
        if self.adult_fraction is None:
            return age
        adult = rng.random(age.shape) < self.adult_fraction
        adult_age = np.minimum(ADULT_AGE_MIN + rng.gamma(ADULT_AGE_SHAPE, ADULT_AGE_SCALE, age.shape), ADULT_AGE_MAX)
        return np.where(adult, np.round(adult_age, 1), age)

    def severity_shift(self, centre_names: np.ndarray) -> np.ndarray | float:
        """Each infusion's centre effect on latent severity (0.0, a scalar, when there is none)."""
        if not self.centre_effect:
            return 0.0
        return np.array([self.centre_effect.get(name, 0.0) for name in centre_names], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the cohort's metadata (only the knobs that are set)."""
        out: dict[str, Any] = {}
        if self.adult_fraction is not None:
            out["adult_fraction"] = self.adult_fraction
        for name in ("product_mix", "centre_shares", "centre_effect"):
            value = getattr(self, name)
            if value:
                out[name] = dict(value)
        return out


KNOBS = ("adult_fraction", "product_mix", "centre_shares", "centre_effect")


def shift_from_mapping(data: object, source: str = "shift") -> Shift:
    """A Shift from plain data (a YAML document): only the known knobs, each checked."""
    if data is None:
        return Shift()
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: expected a mapping of knobs ({', '.join(KNOBS)}), got {type(data).__name__}")
    unknown = [key for key in data if key not in KNOBS]
    if unknown:
        raise InputError(f"{source}: unknown knob(s) {', '.join(map(str, unknown))}; expected {', '.join(KNOBS)}")
    return Shift(**{key: data[key] for key in KNOBS if key in data and data[key] is not None})


def load_shift(path: str | Path) -> Shift:
    """Read a Shift from a YAML file of knobs (see ``Shift``), by the bounded read that refuses FIFOs and devices."""
    try:
        data = yaml.safe_load(read_limited(path, MAX_SETTINGS_BYTES, "shift"))
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    return shift_from_mapping(data, str(path))
