"""Progress over the training fits, its total known from the start: a rich bar on a terminal, plain timed lines
(at most one every ``PLAIN_EVERY_SECONDS``, and the last) when the output goes to a file or a pipe."""

from __future__ import annotations

import sys
import textwrap
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

PLAIN_EVERY_SECONDS = 15.0  # a log or a pipe hears of progress this often, not once per fit and not never


class Progress:
    """Context manager over ``total`` fits; ``step`` completes one (naming the task, landmark and fold), ``note``
    shows what runs now without counting."""

    def __init__(self, enabled: bool = True, total: int = 0, every: float = PLAIN_EVERY_SECONDS) -> None:
        self._plain = enabled and not Console().is_terminal
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not enabled or self._plain,
            transient=False,
        )
        self._task = self._bar.add_task("training", total=total)
        self._total, self._done, self._every = total, 0, every
        self._start = self._last = time.monotonic()

    def __enter__(self) -> "Progress":
        self._bar.start()
        self._start = time.monotonic()
        self._say(f"training: {self._total} fits to run", force=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._bar.stop()

    def _say(self, text: str, force: bool = False) -> None:
        """One plain line (wrapped at 80 columns) with the time since the start, when not on a terminal and one
        is due."""
        now = time.monotonic()
        if self._plain and (force or now - self._last >= self._every):
            self._last = now
            elapsed = int(now - self._start)
            line = f"[{elapsed // 60}:{elapsed % 60:02d}] {text}"
            sys.stdout.write(textwrap.fill(line, 80, subsequent_indent=" " * 4, break_long_words=False) + "\n")
            sys.stdout.flush()

    def step(self, description: str) -> None:
        """Count one fit done and show which it was."""
        self._done += 1
        self._bar.update(self._task, description=f"done: {description}", advance=1)
        self._say(f"training: {self._done}/{self._total} fits done (latest: {description})", self._done == self._total)

    def note(self, description: str) -> None:
        """Show what runs now without counting a unit."""
        self._bar.update(self._task, description=description)
        self._say(description)
