"""The bedside page: what a care team reads off one prediction, rendered on the server (Jinja2, no JS build,
nothing fetched from a network). Reads the documented ``to_dict()`` shape generically, so keys a newer
``predict`` adds (``question``, ``horizon_hours``, ``probability_interval``, ``already_occurred``) show when present."""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any, Mapping

import jinja2

from crsrisk.bundle.bands import RULE, training_rate
from crsrisk.bundle.format import TaskModel
from crsrisk.bundle.store import Bundle
from crsrisk.cohort.population import flags_text
from crsrisk.features.phrases import missing_lines
from crsrisk.cohort.arrays import CohortArrays
from crsrisk.cohort.record import canonical_record
from crsrisk.service.status import warning

TOP_REASONS = 5


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("crsrisk.service", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )


def percent(probability: float) -> str:
    """A probability as the page shows it, e.g. ``23.4%``."""
    return f"{100 * probability:.1f}%"


def _interval(prediction: Mapping[str, Any]) -> str:
    interval = prediction.get("probability_interval")
    if not interval or any(v is None for v in interval):
        return "interval not available"
    return f"95% interval {percent(interval[0])} to {percent(interval[1])}"


def _question(prediction: Mapping[str, Any], descriptions: Mapping[str, str]) -> str:
    """What the probability answers, as the card's heading: the prediction's own ``question`` when given, else the
    task's definition at its landmark; capitalised, since it opens the card."""
    text = str(prediction.get("question") or "")
    if not text:
        when = prediction.get("landmark") or f"{prediction.get('landmark_hours')} h"
        text = f"{descriptions.get(prediction['task'], prediction['task'])} (model at {when})"
    return text[:1].upper() + text[1:]


def _horizon(prediction: Mapping[str, Any]) -> str:
    hours = prediction.get("horizon_hours")
    return "" if hours is None else f"{hours:g} h"


def task_view(prediction: Mapping[str, Any], descriptions: Mapping[str, str]) -> dict[str, Any]:
    """One task's card: probability, band, what it answers, interval, top reasons and the inputs it lacked."""
    contributions = prediction.get("contributions", [])
    reasons = [c for c in contributions if c.get("shap")][:TOP_REASONS]
    return {
        "task": prediction["task"],
        "probability": prediction["probability"],
        "probability_repr": repr(float(prediction["probability"])),
        "probability_text": percent(prediction["probability"]),
        "band": prediction.get("band", ""),
        "question": _question(prediction, descriptions),
        "horizon": _horizon(prediction),
        "landmark": prediction.get("landmark", ""),
        "interval": _interval(prediction),
        "reasons": [
            {"phrase": c.get("phrase") or c.get("label") or c["feature"], "direction": c.get("direction")}
            for c in reasons
        ],
        "missing": missing_lines(prediction.get("missing_inputs", [])),
    }


def band_cutoffs(model: TaskModel | None) -> str:
    """A model's band cut-offs in words, with the training event rate they were set from (``bundle.bands``), so
    a reader sees why the same probability is one band for one question and another band for another."""
    if model is None:
        return ""
    low, high = percent(model.bands["low"]), percent(model.bands["high"])
    rate = training_rate(model.bands)
    if rate is None:
        return f"Bands for this question, as set in the model bundle: low below {low}, high from {high}."
    return (
        f"Bands for this question: low below {low}, high from {high}; {percent(rate)} of the training infusions "
        "had this outcome."
    )


def _hours(hours: float) -> str:
    """An hour since infusion as a care team counts it: ``hour 40.0 after infusion (day 1; infusion = day 0)``."""
    if hours < 0:
        return f"hour {hours:.1f}, before infusion"
    return f"hour {hours:.1f} after infusion (day {int(hours // 24)}; infusion = day 0)"


def patient_view(arrays: CohortArrays) -> list[tuple[str, str]]:
    """Who was scored, as the validated record says (defaults applied), shown above the risks so that a risk is
    never read against the wrong patient: id, age, sex, diagnosis, product and its costimulatory domain, dose."""
    patient = canonical_record(arrays)["patient"]
    dose = patient.get("dose_1e6_cells_per_kg")
    product = patient.get("product") or "not recorded"
    costim = patient.get("costim_domain")
    rows = [
        ("patient", str(arrays.patient_ids[0])),
        ("age", "not recorded" if patient.get("age_years") is None else f"{patient['age_years']:g} years"),
        ("sex", patient.get("sex") or "not recorded"),
        ("diagnosis", patient.get("diagnosis") or "not recorded"),
        ("product", f"{product} ({costim} costimulation)" if costim else product),
        ("dose", "not recorded" if dose is None else f"{dose:g} x 10^6 CAR T cells/kg"),
    ]
    return rows + ([("centre", patient["center"])] if patient.get("center") else [])


def page_document(document: Mapping[str, Any], arrays: CohortArrays) -> dict[str, Any]:
    """A prediction document as the page keeps it: with the scored patient's identity (``patient_view``) under
    ``identity``, so that a page rendered later from the document alone (a CDS card's link) still names the
    patient above the risks."""
    return {**document, "identity": [list(row) for row in patient_view(arrays)]}


def model_view(model: Mapping[str, Any]) -> dict[str, Any]:
    """Which model answered: version, bundle hash, creation time and whether it is synthetic."""
    digest = str(model.get("bundle_sha256") or "")
    return {
        "version": model.get("crsrisk_version"),
        "sha": digest[:12],
        "created": model.get("created"),
        "synthetic": bool(model.get("synthetic", True)),
    }


def render_page(
    bundle: Bundle,
    *,
    record_text: str = "",
    now_hours: str = "",
    document: Mapping[str, Any] | None = None,
    trajectory_png: bytes | None = None,
    problems: list[str] | None = None,
    needs_token: bool = False,
    form: bool = True,
) -> str:
    """The whole page: the form (kept filled in; left out with ``form=False``, for a page a CDS card opens on a
    patient already chosen in the EHR), and the result or the refusal when there is one; a result's ``document``
    (``page_document``) names the patient above the risks."""
    descriptions = {m.task: m.definition.description for m in bundle.models.values()}
    context = {
        "warning": warning(bundle.identity.to_dict()),
        "band_rule": RULE,
        "record_text": record_text,
        "now_hours": now_hours,
        "needs_token": needs_token,
        "form": form,
        "problems": problems or [],
        "tasks": [],
        "not_applicable": [],
        "already_occurred": [],
        "population_flags": "",
        "model": model_view({}),
        "trajectory_image": None,
        "has_result": document is not None,
        "patient": [],
        "as_of": "",
    }
    if document is not None:
        context.update(
            tasks=[
                task_view(p, descriptions) | {"cutoffs": band_cutoffs(bundle.models.get(p.get("model_key", "")))}
                for p in document.get("predictions", [])
            ],
            patient=[(str(name), str(value)) for name, value in document.get("identity", [])],
            as_of="" if document.get("now_hours") is None else _hours(float(document["now_hours"])),
            not_applicable=document.get("not_applicable", []),
            already_occurred=document.get("already_occurred", []),
            population_flags=flags_text(
                document.get("population_flags", []), [p.get("model_key") for p in document.get("predictions", [])]
            ),
            model=model_view(document.get("model", {})),
            trajectory_image=(base64.b64encode(trajectory_png).decode() if trajectory_png else None),
        )
    return _environment().get_template("page.html").render(**context)
