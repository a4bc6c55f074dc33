"""Running the service: uvicorn started from Python (no ``uvicorn`` executable needed on PATH), bound to
loopback unless told otherwise, with no access log (request lines could carry identifiers)."""

from __future__ import annotations

import os

from crsrisk.service.guard import MAX_BODY_BYTES, required_token

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def serve(model: str | os.PathLike | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          audit_log: str | os.PathLike | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Serve the bundle until interrupted. A non-loopback ``host`` needs ``$CRSRISK_API_TOKEN`` (ValueError
    otherwise); when the token is set every scoring request must carry it."""
    import uvicorn

    from crsrisk.service.app import create_app

    token = required_token(host)
    app = create_app(model=model, audit_log=audit_log, token=token, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", server_header=False)
