"""Write a folder or a file all at once: a failure half-way never leaves a half-written output or loses the old one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` to fill; on success it replaces ``target``, on failure it goes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes, private: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling that is flushed to disk and renamed over the old
    file, so a failure leaves the old file intact. ``private`` files (patient data) are created readable and
    writable by the owner only (0600); others get the usual permissions (0666 less the umask)."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder: expected a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)  # 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not private:
            os.chmod(staging, 0o666 & ~_umask())
        os.replace(staging, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise
    return target
