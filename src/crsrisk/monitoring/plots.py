"""The monitoring report's figures (matplotlib ``Figure`` objects, never pyplot): calibration over time, O/E over
time, and a heat map of each group's input drift (PSI per feature and period)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

MAX_GROUPS = 8  # lines per plot (the busiest groups); monitor.json holds every group
HEAT_FEATURES = 20  # rows of a drift heat map: the features whose PSI was highest in any period


def _series(
    periods: list[dict[str, Any]], metric: str
) -> dict[str, tuple[list[int], list[float], list[float], list[float]]]:
    """Per group: period positions, values and CI bounds of one metric (periods without it left out)."""
    out: dict[str, tuple[list[int], list[float], list[float], list[float]]] = {}
    for period in periods:
        for group in period["groups"]:
            value = group["metrics"].get(metric) or {}
            if value.get("value") is None or not np.isfinite(value["value"]):
                continue
            x, v, low, high = out.setdefault(group["name"], ([], [], [], []))
            x.append(period["index"])
            v.append(value["value"])
            low.append(value["ci_low"] if value["ci_low"] is not None else value["value"])
            high.append(value["ci_high"] if value["ci_high"] is not None else value["value"])
    busiest = sorted(out, key=lambda name: -len(out[name][0]))[:MAX_GROUPS]
    return {name: out[name] for name in sorted(busiest)}


def _over_time(ax: Any, periods: list[dict[str, Any]], metric: str, reference: float, label: str) -> None:
    for name, (x, v, low, high) in _series(periods, metric).items():
        lines = ax.plot(x, v, marker="o", label=name)
        ax.fill_between(x, low, high, alpha=0.15, color=lines[0].get_color())
    ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_ylabel(label)
    ax.set_xticks([p["index"] for p in periods], [p["period"] for p in periods], rotation=45, ha="right", fontsize=7)


def _label(top: Any, bottom: Any, title: str) -> None:
    """The title on the top panel, periods along the bottom one, and a legend of the groups when there are any."""
    top.set_title(title)
    bottom.set_xlabel("period")
    if top.get_legend_handles_labels()[0]:
        top.legend(fontsize=7)


def calibration_over_time(periods: list[dict[str, Any]]) -> Figure:
    """Calibration intercept and slope per period and group, with 95% CIs (ideal: 0 and 1)."""
    figure = Figure(figsize=(9, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    _over_time(top, periods, "calibration_intercept", 0.0, "calibration intercept")
    _over_time(bottom, periods, "calibration_slope", 1.0, "calibration slope")
    _label(top, bottom, "Calibration over time (95% bootstrap CI; dashed: ideal)")
    return figure


def oe_over_time(periods: list[dict[str, Any]]) -> Figure:
    """Observed over expected events per period and group, with 95% CIs (ideal: 1)."""
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.subplots()
    _over_time(ax, periods, "oe", 1.0, "observed / expected")
    _label(ax, ax, "O/E over time (95% bootstrap CI; dashed: 1)")
    return figure


def drift_heat_map(periods: list[dict[str, Any]]) -> Figure | None:
    """PSI per feature (rows: the most drifted) and period (columns), one panel per group; None without drift."""
    tables: dict[str, dict[int, dict[str, float]]] = {}
    for period in periods:
        for group in period["groups"]:
            drift = group.get("drift")
            if not drift or drift["features"]["psi"] is None:
                continue
            features = drift["features"]
            tables.setdefault(group["name"], {})[period["index"]] = {
                name: psi for name, psi in zip(features["name"], features["psi"]) if psi is not None
            }
    tables = {name: table for name, table in tables.items() if any(table.values())}
    if not tables:
        return None
    names = sorted(tables)[:MAX_GROUPS]
    figure = Figure(figsize=(9, 4.2 * len(names)), layout="constrained")
    axes = np.atleast_1d(figure.subplots(len(names), 1))
    colours = LinearSegmentedColormap.from_list("psi", ["#f7fbff", "#fdd49e", "#d7301f"])
    labels = {p["index"]: p["period"] for p in periods}
    for ax, name in zip(axes, names):
        table = tables[name]
        columns = sorted(table)
        worst: dict[str, float] = {}
        for values in table.values():
            for feature, psi in values.items():
                worst[feature] = max(worst.get(feature, 0.0), psi)
        rows = sorted(worst, key=lambda f: -worst[f])[:HEAT_FEATURES]
        matrix = np.array([[table[c].get(f, np.nan) for c in columns] for f in rows])
        image = ax.imshow(matrix, aspect="auto", cmap=colours, vmin=0, vmax=max(0.5, float(np.nanmax(matrix))))
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xticks(range(len(columns)), [labels[c] for c in columns], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"Input drift (PSI vs training): {name}", fontsize=9)
        figure.colorbar(image, ax=ax, label="PSI (0.1 moderate, 0.25 major)")
    return figure
