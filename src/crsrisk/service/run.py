"""Running the service: uvicorn started from Python (no ``uvicorn`` executable needed on PATH), bound to
loopback unless told otherwise, with no access log (request lines could carry identifiers), in one process per
core by default: scoring is CPU-bound Python, so one process answers one request at a time whatever its threads."""

from __future__ import annotations

import json
import os
from typing import Any

from crsrisk.errors import InputError
from crsrisk.scoring.load import load_model
from crsrisk.util.cluster import available_cores
from crsrisk.service.guard import MAX_BODY_BYTES, required_token

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
SETTINGS_ENV = "CRSRISK_SERVE_SETTINGS"  # how the parent hands the worker processes their settings


def app_from_environment() -> Any:
    """The app a worker process serves, from the settings its parent put in ``$CRSRISK_SERVE_SETTINGS``."""
    from crsrisk.service.app import create_app  # in the worker only: the parent never builds the app (FastAPI)

    settings = json.loads(os.environ[SETTINGS_ENV])
    return create_app(
        model=settings["model"],
        audit_log=settings["audit_log"],
        token=required_token(settings["host"]),
        max_body_bytes=settings["max_body_bytes"],
        allow_unverified=settings["allow_unverified"],
    )


def worker_count(workers: int | None) -> int:
    """The number of server processes: as asked, else one per available core."""
    count = available_cores() if workers is None else workers
    if count < 1:
        raise InputError(f"workers: expected at least 1 worker process, got {count}")
    return count


def serve(
    model: str | os.PathLike | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    audit_log: str | os.PathLike | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    workers: int | None = None,
    allow_unverified: bool = False,
) -> None:
    """Serve the bundle until interrupted, in ``workers`` processes (default: the cores available) sharing one
    socket and one audit log (appends are ``flock``-ed, so the chain stays whole). A non-loopback ``host`` needs
    ``$CRSRISK_API_TOKEN`` (ValueError otherwise); when the token is set every scoring request must carry it. The
    bundle is loaded and verified here first (refused unless signed by a trusted key, or ``allow_unverified``), so
    a bad or unverified model is one clear error, not a worker crash loop."""
    import uvicorn  # the server itself: only for a process that serves

    required_token(host)
    load_model(model, allow_unverified=allow_unverified)
    os.environ[SETTINGS_ENV] = json.dumps(
        {
            "model": None if model is None else os.fspath(model),
            "host": host,
            "audit_log": None if audit_log is None else os.fspath(audit_log),
            "max_body_bytes": max_body_bytes,
            "allow_unverified": allow_unverified,
        }
    )
    uvicorn.run(
        "crsrisk.service.run:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=worker_count(workers),
        access_log=False,
        log_level="warning",
        server_header=False,
    )
