"""Calibration maps from a model's raw score (log-odds margin) to a probability, as plain parameters.

Kept free of pickled sklearn objects so a model bundle can store a calibrator as JSON and the
clinician's predict path can apply it with numpy alone.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from crsrisk.errors import InputError

Method = Literal["platt", "isotonic"]


class Calibrator(ABC):
    """A fitted map from margin to probability; each method is a subclass registered in ``CALIBRATORS``."""

    method: ClassVar[str]

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The method's parameters as plain JSON values."""

    @abstractmethod
    def transform(self, margin: np.ndarray) -> np.ndarray:
        """Map raw scores (log-odds) to calibrated probabilities."""

    def interval(self, margin: float, level: float = 0.95) -> list[float] | None:
        """The probability's interval over bootstrap refits (None for a method without refits)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (floats and lists only)."""
        return {"method": self.method, "params": self.params}

    @classmethod
    @abstractmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray, n_boot: int, seed: int, groups: np.ndarray | None) -> "Calibrator":
        """Fit on out-of-sample margins."""

    @classmethod
    @abstractmethod
    def parse(cls, data: dict[str, Any]) -> "Calibrator | None":
        """Rebuild from ``to_dict`` output, or None when its shape is not this method's."""

    @classmethod
    def from_dict(cls, data: Any) -> "Calibrator":
        """Rebuild from ``to_dict`` output through the registry, checking the fields rather than trusting them:
        every number finite; isotonic x strictly increasing and y non-decreasing within [0, 1]. Raises InputError
        naming the fault."""
        kind = (
            CALIBRATORS.get(data["method"]) if isinstance(data, dict) and isinstance(data.get("method"), str) else None
        )
        parsed = kind.parse(data) if kind is not None else None
        if parsed is None:
            raise InputError(
                f"calibrator: expected method 'platt' with a, b or 'isotonic' with x, y; got {data!r:.200}"
            )
        return parsed


@dataclass(frozen=True)
class Platt(Calibrator):
    """p = sigmoid(a * margin + b); ``bootstrap``: parameter sets refitted on resamples (for ``interval``)."""

    a: float
    b: float
    bootstrap: tuple[dict[str, float], ...] = ()
    method: ClassVar[str] = "platt"

    @property
    def params(self) -> dict[str, Any]:
        """``{"a": a, "b": b}``."""
        return {"a": self.a, "b": self.b}

    def transform(self, margin: np.ndarray) -> np.ndarray:
        """Map raw scores (log-odds) to calibrated probabilities."""
        return expit(self.a * np.asarray(margin, dtype=float) + self.b)

    def interval(self, margin: float, level: float = 0.95) -> list[float] | None:
        """The probability's interval over the bootstrap refits of the calibrator (None when it has none)."""
        if not self.bootstrap:
            return None
        a, b = (np.array([p[k] for p in self.bootstrap]) for k in ("a", "b"))
        low, high = np.quantile(expit(a * float(margin) + b), [(1 - level) / 2, (1 + level) / 2])
        return [float(low), float(high)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; the refits only when there are some (old bundles keep their bytes)."""
        return super().to_dict() | ({"bootstrap": list(self.bootstrap)} if self.bootstrap else {})

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray, n_boot: int, seed: int, groups: np.ndarray | None) -> "Platt":
        """Platt's fit, with ``n_boot`` refits on resamples of the margins (whole ``groups`` at a time)."""
        params = _platt(margin, y)
        return cls(params["a"], params["b"], _platt_resampled(margin, y, n_boot, seed, groups) if n_boot else ())

    @classmethod
    def parse(cls, data: dict[str, Any]) -> "Platt | None":
        """Two finite parameters a, b and optional refits of the same shape."""
        params, boot = data.get("params"), data.get("bootstrap", [])
        if not (
            isinstance(params, dict)
            and set(params) == {"a", "b"}
            and isinstance(boot, list)
            and all(isinstance(p, dict) and set(p) == {"a", "b"} for p in boot)
        ):
            return None
        return cls(
            *(finite_number(params[name], f"calibrator: parameter {name}") for name in "ab"),  # type: ignore[arg-type, call-arg]  # a and b
            tuple(
                {name: finite_number(p[name], f"calibrator: bootstrap[{i}].{name}") for name in "ab"}
                for i, p in enumerate(boot)
            ),
        )


@dataclass(frozen=True)
class Isotonic(Calibrator):
    """p = piecewise-linear interpolation through the knots (x, y)."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    method: ClassVar[str] = "isotonic"

    @property
    def params(self) -> dict[str, Any]:
        """``{"x": [...], "y": [...]}``."""
        return {"x": list(self.x), "y": list(self.y)}

    def transform(self, margin: np.ndarray) -> np.ndarray:
        """Map raw scores (log-odds) to calibrated probabilities."""
        return np.clip(np.interp(np.asarray(margin, dtype=float), self.x, self.y), 0.0, 1.0)  # interp: 1 ulp over

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray, n_boot: int, seed: int, groups: np.ndarray | None) -> "Isotonic":
        """sklearn's isotonic regression (no refits: ``n_boot`` is ignored)."""
        model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
        return cls(tuple(float(v) for v in model.X_thresholds_), tuple(float(v) for v in model.y_thresholds_))

    @classmethod
    def parse(cls, data: dict[str, Any]) -> "Isotonic | None":
        """Finite knots, x strictly increasing, y non-decreasing probabilities."""
        params = data.get("params")
        if not (
            isinstance(params, dict)
            and set(params) == {"x", "y"}
            and all(isinstance(params[k], list) for k in "xy")
            and len(params["x"]) == len(params["y"]) > 0
        ):
            return None
        x = [finite_number(v, f"calibrator: parameter x[{i}]") for i, v in enumerate(params["x"])]
        y = [finite_number(v, f"calibrator: parameter y[{i}]") for i, v in enumerate(params["y"])]
        if any(b <= a for a, b in zip(x, x[1:])):
            raise InputError("calibrator: isotonic x must be strictly increasing")
        if any(b < a for a, b in zip(y, y[1:])) or not 0.0 <= y[0] <= y[-1] <= 1.0:
            raise InputError("calibrator: isotonic y must be non-decreasing probabilities in [0, 1]")
        return cls(tuple(x), tuple(y))


CALIBRATORS: Mapping[str, type[Calibrator]] = MappingProxyType({kind.method: kind for kind in (Platt, Isotonic)})
METHODS: tuple[str, ...] = tuple(CALIBRATORS)


def finite_number(value: Any, name: str) -> float:
    """A stored parameter as a float, refused (InputError) unless a finite real number (not a bool or text)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise ValueError
    except (ValueError, OverflowError):
        raise InputError(f"{name} must be a finite number, got {value!r:.50}") from None
    return float(value)


def _platt(margin: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Platt's two parameters (sklearn's logistic regression, effectively unpenalised)."""
    model = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), y)
    return {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])}


def _platt_resampled(
    margin: np.ndarray, y: np.ndarray, n_boot: int, seed: int, groups: np.ndarray | None = None
) -> tuple[dict[str, float], ...]:
    """Platt fits on ``n_boot`` bootstrap resamples at once: Newton steps on resample counts as weights (a plain
    unpenalised logistic fit of two parameters per resample, vectorised over the resamples). ``groups`` (the
    infusion of each row) are resampled whole: a super-model's rows at many landmarks of one infusion are not
    independent, and resampling them one by one would make the interval too narrow."""
    rng = np.random.default_rng(seed)
    codes = np.arange(len(y)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n_groups = int(codes.max()) + 1 if codes.size else 0
    weights = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot).astype(float)[:, codes]
    events = weights @ y
    keep = (events > 0) & (events < weights.sum(axis=1))  # a resample without both classes has no fit
    weights = weights[keep]
    a, b = np.ones(len(weights)), np.zeros(len(weights))
    step = np.full(len(weights), np.inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a separable resample diverges: dropped
        for _ in range(50):
            p = expit(a[:, None] * margin + b[:, None])
            r, h = weights * (y - p), weights * p * (1 - p)
            ga, gb = r @ margin, r.sum(axis=1)
            haa, hab, hbb = h @ (margin * margin), h @ margin, h.sum(axis=1)
            det = haa * hbb - hab * hab
            da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
            a, b, step = a + da, b + db, np.maximum(np.abs(da), np.abs(db))
            if not np.nanmax(step, initial=0) > 1e-10:
                break
    converged = np.isfinite(a) & np.isfinite(b) & (step < 1e-6)
    return tuple({"a": float(x), "b": float(z)} for x, z in zip(a[converged], b[converged]))


INTERVAL_REFITS = 200  # Platt refits on resampled margins behind the interval stated with a model's probabilities


def fit_calibrator(
    margin: np.ndarray, y: np.ndarray, method: Method, n_boot: int = 0, seed: int = 0, groups: np.ndarray | None = None
) -> Calibrator:
    """Fit a calibrator on out-of-sample margins (never on the margins the model was trained on); for Platt,
    ``n_boot`` refits on resamples of those margins (whole ``groups`` at a time) give each probability an
    interval."""
    kind = CALIBRATORS.get(method)
    if kind is None:
        raise InputError(f"calibration method: expected one of {METHODS}, got {method!r}")
    return kind.fit(np.asarray(margin, dtype=float), np.asarray(y, dtype=float), n_boot, seed, groups)
