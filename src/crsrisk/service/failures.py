"""How the service answers what goes wrong: bad input is a 422 naming the problem, an audit log that cannot be
appended to a 503 with the reason, anything else (a bug) a 500 with an error id whose traceback is logged under that
id. Every answer is encodable: text that is not valid Unicode (a lone surrogate) is shown backslash-escaped."""

from __future__ import annotations

import json
import logging
import threading
import traceback
import uuid
from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse

from crsrisk.service.guard import Message, Receive, Scope, Send

log = logging.getLogger("crsrisk.service")


def encodable(text: str) -> bytes:
    """Text as UTF-8, a lone surrogate (from ``"\\ud800"`` or raw bytes ``ED A0 80``) written as ``\\ud800``."""
    return text.encode("utf-8", "backslashreplace")


class EncodableJSON(JSONResponse):
    """Strict JSON as ``JSONResponse`` writes it, but never ``UnicodeEncodeError``: a lone surrogate in a key or
    value is written as its JSON escape, so an echoed bad value cannot turn a refusal into a 500."""

    def render(self, content: Any) -> bytes:
        return encodable(json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")))


class EncodableHTML(HTMLResponse):
    """An HTML page whose echoed text may hold a lone surrogate: shown as ``\\ud800``, never a 500."""

    def render(self, content: Any) -> bytes:
        return encodable(content) if isinstance(content, str) else super().render(content)  # type: ignore[return-value]  # bytes in, bytes out


class AuditHealth:
    """The audit log's last known state, shared by ``/predict`` (which records each outcome) and ``/health``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problem: str | None = None

    def failed(self, reason: str) -> None:
        with self._lock:
            self._problem = reason

    def appended(self) -> None:
        with self._lock:
            self._problem = None

    @property
    def problem(self) -> str | None:
        with self._lock:
            return self._problem


def internal_error_id(error: BaseException) -> str:
    """Log a bug's traceback under a new id and return the id. The message is left out (it may quote a patient's
    values); the type and the frames say where it happened."""
    error_id = uuid.uuid4().hex[:16]
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("internal error %s: %s\n%s", error_id, type(error).__name__, frames)
    return error_id


def internal_error_body(error_id: str) -> dict[str, str]:
    """The 500 body: the id to quote when reporting, and that it is a bug rather than bad input."""
    return {
        "detail": f"internal error (a bug, not your input): quote error id {error_id} when reporting it",
        "error_id": error_id,
    }


class InternalErrors:
    """ASGI middleware: an exception no handler answered becomes a 500 JSON answer with an error id (traceback
    logged under it), instead of a bare "Internal Server Error" and a traceback with the request's values."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            error_id = internal_error_id(error)
            if started:  # the answer is on its way: nothing more can be said on this connection
                raise
            await EncodableJSON(internal_error_body(error_id), status_code=500)(scope, receive, send)
