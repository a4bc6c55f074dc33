"""A rich progress bar over the training fits, its total known from the start."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """Context manager over ``total`` fits; ``step`` completes one (naming the task, landmark and fold), ``note``
    shows what runs now without counting."""

    def __init__(self, enabled: bool = True, total: int = 0) -> None:
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not enabled,
            transient=False,
        )
        self._task = self._bar.add_task("training", total=total)

    def __enter__(self) -> "Progress":
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._bar.stop()

    def step(self, description: str) -> None:
        """Count one fit done and show which it was."""
        self._bar.update(self._task, description=f"done: {description}", advance=1)

    def note(self, description: str) -> None:
        """Show what runs now without counting a unit."""
        self._bar.update(self._task, description=description)
