"""A rich progress bar over folds and models whose total grows as tasks are planned."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """Context manager; ``add`` plans more steps, ``step`` completes one, ``note`` shows what runs now."""

    def __init__(self, enabled: bool = True) -> None:
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), disable=not enabled, transient=False)
        self._task = self._bar.add_task("training", total=0)

    def __enter__(self) -> "Progress":
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._bar.stop()

    def add(self, steps: int) -> None:
        """Plan ``steps`` more units of work."""
        total = self._bar.tasks[0].total or 0
        self._bar.update(self._task, total=total + steps)

    def step(self, description: str) -> None:
        """Show ``description`` and count one unit done (called before the unit runs)."""
        self._bar.update(self._task, description=description, advance=1)

    def note(self, description: str) -> None:
        """Show what runs now without counting a unit."""
        self._bar.update(self._task, description=description)
