"""Commands on data: validate, simulate, features, and import from FHIR R4 and OMOP CDM."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from crsrisk.errors import CohortValidationError, InputError, SourceImportError, shown

from crsrisk.cli.common import (
    MAX_SHOWN,
    _print_counts,
    _write_problems,
    app,
    console,
    errors,
    friendly,
    import_app,
    print_rows,
)


@app.command()
@friendly
def validate(
    path: Path = typer.Argument(..., help="cohort folder with patients, measurements, events"),
    problems_out: Optional[Path] = typer.Option(
        None,
        "--problems-out",
        help="on failure, write every problem (table, line, patient, field, value, rule) to this CSV",
    ),
) -> None:
    """Validate a cohort folder against the contract and print a summary (or every problem, counted by kind)."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.cohort.summary import cohort_summary

    try:
        cohort = load_cohort(path, max_problems=10**7 if problems_out else MAX_SHOWN)
    except CohortValidationError as error:
        if problems_out is not None:
            _write_problems(error, problems_out)
            error = CohortValidationError(
                error.problems[:MAX_SHOWN], error.truncated + len(error.problems[MAX_SHOWN:]), error.counts
            )
        raise error from None
    summary = cohort_summary(cohort)
    console.print(
        f"[bold green]valid[/] cohort {path}: {summary['infusions']} infusions, "
        f"{len(summary['centres'])} centre(s), synthetic={summary['synthetic']}"
    )
    console.print(f"fingerprint {summary['fingerprint']}")
    _print_counts("infusions per centre", summary["centres"])
    _print_counts("measurements per analyte", summary["measurements_per_analyte"])
    _print_counts("events per kind", summary["events_per_kind"])
    _print_counts("values converted to canonical units", summary["units_converted"] or {"(none)": 0})
    for note in summary["notes"]:
        console.print(f"note: {note}")


@app.command()
@friendly
def simulate(
    n: int = typer.Option(1500, "--n", min=1, help="number of infusions"),
    seed: int = typer.Option(0, "--seed", help="random seed (same seed + version = same bytes)"),
    out: Path = typer.Option(..., "--out", help="folder to write (must not exist or be empty)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty folder"),
    shift_file: Optional[Path] = typer.Option(
        None,
        "--shift",
        help="YAML of case-mix/miscalibration knobs (see examples/shifts/); the options below override it",
    ),
    adult_fraction: Optional[float] = typer.Option(
        None, "--adult-fraction", help="share of infusions drawn from an adult population"
    ),
    product_mix: Optional[list[str]] = typer.Option(
        None, "--product-mix", help="PRODUCT=SHARE, repeatable: replaces the product shares"
    ),
    centre_share: Optional[list[str]] = typer.Option(
        None, "--centre-share", help="CENTRE=SHARE, repeatable: replaces the centre shares"
    ),
    centre_effect: Optional[list[str]] = typer.Option(
        None, "--centre-effect", help="CENTRE=SHIFT, repeatable: latent severity shift at a centre (miscalibration)"
    ),
) -> None:
    """Write a synthetic multi-centre cohort (clearly labelled synthetic) plus its truth file, optionally shifted."""
    from crsrisk.simulate import Shift, load_shift, simulate_cohort, write_simulated
    from crsrisk.simulate.shift import shift_from_mapping

    knobs = (load_shift(shift_file) if shift_file is not None else Shift()).to_dict()
    options = {
        "adult_fraction": adult_fraction,
        "product_mix": _pairs(product_mix, "--product-mix"),
        "centre_shares": _pairs(centre_share, "--centre-share"),
        "centre_effect": _pairs(centre_effect, "--centre-effect"),
    }
    shift = shift_from_mapping(knobs | {k: v for k, v in options.items() if v is not None})
    sim = simulate_cohort(n=n, seed=seed, shift=shift)
    write_simulated(sim, out, overwrite=overwrite)
    shifted = f", shifted: {sim.metadata['shift']}" if "shift" in sim.metadata else ""
    console.print(
        f"wrote synthetic cohort of {n} infusions (seed {seed}{escape(shifted)}) to {out}; "
        f"truth.csv beside it is not part of the cohort",
        highlight=False,
    )


def _pairs(values: Optional[list[str]], flag: str) -> Optional[dict[str, float]]:
    """NAME=NUMBER options as a mapping (None when the option was not given)."""
    if not values:
        return None
    out = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(f"{flag}: expected NAME=NUMBER, got {value!r}")
    return out


@app.command()
@friendly
def features(
    cohort: Path = typer.Argument(..., help="cohort folder in the contract"),
    task: str = typer.Option(
        ..., "--task", help="a task name: severe_crs, icans, severe_crs_dynamic, icans_dynamic, toci_refractory"
    ),
    landmark: Optional[str] = typer.Option(
        None,
        "--landmark",
        help="hours after infusion (default: the task's last landmark; toci_refractory: the first dose)",
    ),
    label: str = typer.Option("primary", "--label", help="primary, or a second label such as icans_severe"),
    out: Path = typer.Option(..., "--out", help="matrix file (.parquet or .csv)"),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        help="experiment YAML whose task_overrides (grids, horizons, thresholds) define the task, as train reads it",
    ),
) -> None:
    """Write one task's feature matrix with patient_id, landmark_hours and label (the task's ``dataset``), and report
    it."""
    from crsrisk.cohort.io import load_cohort
    from crsrisk.features import describe_features
    from crsrisk.util.outputs import write_table
    from crsrisk.tasks import get_task

    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"--out: expected a .parquet or .csv file name, got {shown(out.name)}")
    from crsrisk.training.config import load_config

    task_def = get_task(task).with_overrides(**load_config(config).task_overrides.get(task, {}))
    data = load_cohort(cohort)
    point = task_def.landmarks[-1] if landmark is None else landmark
    dataset = task_def.dataset(data, point, label=label)
    matrix = dataset.X
    table = (
        matrix.assign(landmark_hours=dataset.landmark_hours, label=dataset.y).rename_axis("patient_id").reset_index()
    )
    first = ["patient_id", "landmark_hours", "label"]
    table = table[first + [c for c in table.columns if c not in first]]
    write_table(table, out)
    summary = {
        "risk_set": dataset.risk_set,
        "labelled": len(dataset.y),
        "events": int(dataset.y.sum()),
        "excluded": dataset.excluded,
    }
    console.print(f"{task} at {dataset.landmark.label}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    described = describe_features(matrix)
    console.print(f"{matrix.shape[1]} features")
    print_rows(
        [str(c) for c in described.columns],
        [[f"{v:.1%}" if isinstance(v, float) else str(v) for v in row] for row in described.itertuples(index=False)],
        f"every column in {out}",
    )
    console.print(f"wrote {len(table)} rows to {out}")


def _time_rule(hour: float, infusion_hour: float, same_day_labs: Optional[str]) -> Any:
    from crsrisk.sources.daily import TimeRule

    return TimeRule(hour=hour, infusion_hour=infusion_hour, same_day_labs=same_day_labs)  # type: ignore[arg-type]  # TimeRule checks the text


_DATE_ONLY_HOUR = typer.Option(
    8.0, "--date-only-hour", help="hour of the day at which a value with a date but no time is placed"
)


_INFUSION_HOUR = typer.Option(12.0, "--infusion-hour", help="hour of the day of an infusion recorded with a date only")


_SAME_DAY = typer.Option(
    None,
    "--same-day-labs",
    help="before|after: side of the infusion for labs dated the "
    "infusion day without a time (required when there are any)",
)


_IMPORT_OUT = typer.Option(..., "--out", help="cohort folder to write (must not exist or be empty)")


def _report_import(imported: Any, out: Path) -> None:
    """What an import read, what it placed by the daily rule, and every code it did not recognise."""
    report = imported.report
    console.print(
        f"[bold green]imported[/] {report['counts']['patients']} infusions, "
        f"{report['counts']['measurements']} measurements, {report['counts']['events']} events into {out}"
    )
    only = report["date_only"]
    console.print(
        f"date-only (placed by the daily rule): {only['infusions']} infusions, {only['measurements']} "
        f"measurements, {only['events']} events; rule: {report['time_rule']['description']}",
        highlight=False,
    )
    without = report["without_infusion"]
    if without["patients"]:
        more = without["patients"] - len(without["examples"])
        console.print(
            f"[yellow]not imported:[/] {without['patients']} patient(s) without a CAR-T infusion: "
            f"{', '.join(map(str, without['examples']))}{f' and {more} more' if more > 0 else ''}; with "
            f"their {without['measurements']} measurements and {without['events']} events",
            highlight=False,
        )
    for reason, count in report["skipped"].items():
        console.print(f"skipped: {count} x {escape(reason)}", highlight=False)
    from crsrisk.cohort.io import METADATA_FILE

    _unknown_table(report["unknown_codes"], f"every column in {out / METADATA_FILE}, under unknown_codes")
    for note in imported.cohort.metadata.get("notes", []):
        console.print(f"note: {escape(note)}", highlight=False)


def _unknown_table(unknown: list[dict], where: str = "") -> None:
    """The codes an import did not read, counted with an example each (``where``: where the table is whole)."""
    if unknown:
        console.print(
            f"{sum(u['count'] for u in unknown)} records with codes crsrisk does not read (ignored)", highlight=False
        )
        columns = ["where", "system", "code", "display", "count", "example"]
        print_rows(columns, [[str(u[k]) for k in columns] for u in unknown], where)


def _import(
    reader: str,
    source: Any,
    out: Path,
    same_day_labs: Optional[str],
    date_only_hour: float,
    infusion_hour: float,
    overwrite: bool,
    code_map: Optional[Path],
) -> None:
    """Run one importer (``fhir`` or ``omop``), write the cohort folder and print the import report; on failure
    the codes it did not read are printed before the problems (they often explain them)."""
    import importlib

    from crsrisk.sources.assemble import write_imported
    from crsrisk.sources.codemap import load_code_map

    read = getattr(importlib.import_module(f"crsrisk.sources.{reader}"), f"import_{reader}")
    try:
        imported = read(source, _time_rule(date_only_hour, infusion_hour, same_day_labs), load_code_map(code_map))
    except CohortValidationError as error:
        if isinstance(error, SourceImportError):
            _unknown_table(error.unknown_codes)
        if any("same_day_labs" in p.message for p in error.problems):
            errors.print("hint: say when labs dated the infusion day were taken: --same-day-labs before|after")
        raise
    write_imported(imported, out, overwrite=overwrite)
    _report_import(imported, out)


_OVERWRITE = typer.Option(False, "--overwrite", help="replace a non-empty folder")
_CODE_MAP = typer.Option(
    None,
    "--code-map",
    help="site code map: a CSV (source_vocabulary_id, source_code, "
    "source_code_description, target) or a FHIR ConceptMap .json; target is a contract name "
    "such as il6 or car_t_infusion",
)


@import_app.command("fhir")
@friendly
def import_fhir(
    source: Path = typer.Argument(
        ...,
        help="a FHIR R4 Bundle (.json), a folder of per-patient Bundles (.json) or a Bulk Data folder of .ndjson files",
    ),
    out: Path = _IMPORT_OUT,
    same_day_labs: Optional[str] = _SAME_DAY,
    date_only_hour: float = _DATE_ONLY_HOUR,
    infusion_hour: float = _INFUSION_HOUR,
    overwrite: bool = _OVERWRITE,
    code_map: Optional[Path] = _CODE_MAP,
) -> None:
    """Import FHIR R4 (Patient, Observation, MedicationAdministration, Procedure, Condition) as a cohort."""
    _import("fhir", source, out, same_day_labs, date_only_hour, infusion_hour, overwrite, code_map)


@import_app.command("omop")
@friendly
def import_omop(
    database_url: str = typer.Argument(
        ...,
        help="SQLAlchemy URL of an OMOP CDM v5.4 database, e.g. "
        "duckdb:///cdm.duckdb or postgresql+psycopg://user@host/db",
    ),
    out: Path = _IMPORT_OUT,
    same_day_labs: Optional[str] = _SAME_DAY,
    date_only_hour: float = _DATE_ONLY_HOUR,
    infusion_hour: float = _INFUSION_HOUR,
    overwrite: bool = _OVERWRITE,
    code_map: Optional[Path] = _CODE_MAP,
) -> None:
    """Import an OMOP CDM v5.4 database (person, measurement, observation, drug_exposure, procedure_occurrence,
    condition_occurrence, resolved through its concept table) as a cohort."""
    _import("omop", database_url, out, same_day_labs, date_only_hour, infusion_hour, overwrite, code_map)
