"""What keeps the service safe by default: a request-size limit, a bearer token, and the bind policy."""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Callable

from starlette.types import Message, Receive, Scope, Send  # noqa: F401 (the ASGI types the service modules use)

from crsrisk.errors import InputError

TOKEN_ENV = "CRSRISK_API_TOKEN"
MAX_BODY_BYTES = 5 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def required_token(host: str, environ: dict[str, str] | None = None) -> str | None:
    """The API token the server must demand: ``$CRSRISK_API_TOKEN`` if set; binding a non-loopback address
    without one is refused (ValueError), so a server is never reachable from the network unauthenticated."""
    token = (os.environ if environ is None else environ).get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise InputError(
            f"host {host}: binding an address other than loopback needs a token; set {TOKEN_ENV} "
            "(callers then send 'Authorization: Bearer <token>')"
        )
    return token


def token_matches(expected: str | None, authorization: str | None) -> bool:
    """Whether an ``Authorization: Bearer ...`` header (or a bare token) carries the expected token, compared in
    constant time; always True when no token is configured."""
    if expected is None:
        return True
    given = (authorization or "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), expected.encode())


class BodyLimit:
    """ASGI middleware: answers 413 to a request body larger than ``max_bytes`` (declared or streamed), before
    any of it is parsed; smaller bodies are buffered and replayed to the app unchanged."""

    def __init__(self, app: Callable, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        body = b'{"detail": "request body larger than %d bytes"}' % self.max_bytes
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
