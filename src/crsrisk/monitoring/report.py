"""Writing a monitoring result: ``monitor.json`` (every period's figures and flags), the figures as PNG, and a
self-contained HTML report that embeds them (opens offline)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from crsrisk import notice
from crsrisk.monitoring.plots import calibration_over_time, drift_heat_map, oe_over_time
from crsrisk.util.atomic import write_bytes
from crsrisk.util.outputs import write_json

TITLE = "crsrisk monitoring report"


def figures(document: dict[str, Any]) -> dict[str, Figure]:
    """The report's figures by file stem."""
    periods = document["periods"]
    out = {"calibration_over_time": calibration_over_time(periods), "oe_over_time": oe_over_time(periods)}
    heat = drift_heat_map(periods)
    if heat is not None:
        out["drift_heat_map"] = heat
    return out


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _ci(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "-"
    low, high = metric.get("ci_low"), metric.get("ci_high")
    interval = f" ({low:.2f}-{high:.2f})" if low is not None and high is not None else ""
    return f"{metric['value']:.2f}{interval}"


def _number(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _rows(document: dict[str, Any]) -> str:
    cells = []
    for period in document["periods"]:
        for g in period["groups"]:
            drift = g.get("drift") or {}
            bands = ", ".join(f"{k} {v:.0%}" for k, v in g["bands"].items())
            flagged = "; ".join(f["rule"] for f in g["flags"])
            values = [
                period["period"],
                g["name"],
                g["volume"],
                g["pending"],
                g["labelled"],
                g["events"],
                _ci(g["metrics"].get("oe")),
                _ci(g["metrics"].get("calibration_intercept")),
                _ci(g["metrics"].get("calibration_slope")),
                _ci(g["metrics"].get("auroc")),
                bands,
                _number(drift.get("psi_max")),
                _number(drift.get("drifted_features")),
                _number(drift.get("missing_change_max")),
                _number(drift.get("outside_population_share")),
                flagged or "",
            ]
            row = "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
            cells.append(f'<tr class="{"flagged" if flagged else ""}">{row}</tr>')
    return "\n".join(cells)


HEADER = (
    "period",
    "model / task / landmark",
    "predictions",
    "pending",
    "labelled",
    "events",
    "O/E (95% CI)",
    "calibration intercept",
    "calibration slope",
    "AUROC",
    "risk bands",
    "PSI max",
    "drifted features",
    "missingness change",
    "outside training population",
    "flags",
)


def html_report(document: dict[str, Any], images: dict[str, bytes]) -> str:
    """The self-contained HTML page."""
    log = document["audit_log"]
    chain = (
        "not verified (--no-verify)"
        if log["verified"] is None
        else "intact"
        if log["verified"]
        else f"BROKEN: {'; '.join(log['chain_problems'][:5])}"
    )
    flags = "".join(f"<li>{html.escape(f['period'])}: {html.escape(f['text'])}</li>" for f in document["flags"])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in document["notes"])
    plots = "".join(
        f'<h2>{html.escape(name.replace("_", " "))}</h2><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        for name, data in images.items()
    )
    status = notice.disclaimer(document["synthetic_models"], document["synthetic_outcomes"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{TITLE}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px}} tr.flagged{{background:#fde0dd}} .warn{{color:#b30000;font-weight:bold}}
img{{max-width:100%}}</style></head><body>
<h1>{TITLE}</h1>
<p class='warn'>{html.escape(status)}</p>
<p>{document["volume"]} audited predictions from {html.escape(log["path"])}
(chain {html.escape(chain)}), joined with outcomes from {html.escape(document["outcomes"]["source"])}
({document["outcomes"]["infusions"]} infusions), by period ({html.escape(document["period"])}).</p>
<h2>Flags ({len(document["flags"])})</h2><ul>{flags or "<li>none</li>"}</ul>
<h2>Notes</h2><ul>{notes or "<li>none</li>"}</ul>
<p>Pseudonymous key: {html.escape(document["pseudonym_key"])}.</p>
{plots}
<h2>Periods</h2>
<table><tr>{"".join(f"<th>{h}</th>" for h in HEADER)}</tr>
{_rows(document)}
</table>
</body></html>
"""


def write_report(document: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``monitor.json``, ``plots/*.png`` and ``report.html`` into ``out``; their paths by name."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    images = {name: _png(figure) for name, figure in figures(document).items()}
    paths = {"json": write_json(folder / "monitor.json", document)}
    for name, data in images.items():
        paths[name] = write_bytes(folder / "plots" / f"{name}.png", data)
    paths["html"] = write_bytes(folder / "report.html", html_report(document, images).encode())
    return paths
