"""A server process on this machine for tests and benchmarks: start it, wait until it answers, always stop it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
from pathlib import Path
import time
import urllib.error
import urllib.request
from typing import Iterator, Mapping, Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(
    command: Sequence[str],
    ready_url: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    log: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Run ``command`` until the block ends; yields once ``ready_url`` answers (RuntimeError with the server's
    last output if it exits or does not answer within ``timeout`` seconds). The process is always stopped. Its
    output goes to ``log`` (a temporary file by default)."""
    # a file, not a pipe: a chatty server never blocks on a full pipe
    output = tempfile.TemporaryFile() if log is None else open(log, "w+b")
    server = subprocess.Popen(list(command), env=None if env is None else dict(env), stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(
                        f"{command[:4]} exited with {server.returncode}: "
                        f"{output.read().decode(errors='replace')[-2000:]}"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:4]} did not answer {ready_url} within {timeout:g} s") from None
                time.sleep(0.3)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        output.close()
