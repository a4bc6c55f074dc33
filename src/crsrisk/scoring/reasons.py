"""A prediction's reasons: the largest rendered with the answer, the rest the first time they are read.

Rendering a contribution record (value, unit, phrase) costs more than the exact SHAP behind it, and a model has
about 140 of them; most callers show a handful. ``Reasons`` is a plain list to every reader, so the documented
JSON shape is unchanged, but it holds only the first ``EAGER_REASONS`` records until something reads past them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

EAGER_REASONS = 10  # rendered with the answer (the page, the CDS card and the CLI show 5, explain 8)
Render = Callable[[int, int], list[dict[str, Any]]]  # (start, stop) -> the records at those ranks


class Reasons(list[dict[str, Any]]):
    """Contribution records, largest |SHAP| first: a list whose first ``eager`` records are rendered when it is
    made and the rest the first time anything reads past them (iterating, ``len``, ``json.dumps``, comparing,
    copying or pickling, which gives a plain list). Indexing or slicing within the first ones renders no more."""

    def __init__(self, render: Render, total: int, eager: int = EAGER_REASONS) -> None:
        first = min(eager, total)
        super().__init__(render(0, first))
        self._rest: Callable[[], list[dict[str, Any]]] | None = None
        if total > first:
            self._rest = functools.partial(render, first, total)

    def complete(self) -> Reasons:
        """Render the records not rendered yet (once); returns the list itself."""
        if self._rest is not None:
            rest, self._rest = self._rest, None
            list.extend(self, rest())
        return self

    def __getitem__(self, index: Any) -> Any:
        if self._rest is not None and not _within(index, list.__len__(self)):
            self.complete()
        return list.__getitem__(self, index)

    def __bool__(self) -> bool:
        return self._rest is not None or list.__len__(self) > 0

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (list, (list(self),))  # copies and pickles are plain, complete lists


def _within(index: Any, rendered: int) -> bool:
    """True when ``index`` (an int or a slice) reads only the first ``rendered`` records."""
    if isinstance(index, slice):
        start, stop = index.start or 0, index.stop
        return index.step in (None, 1) and start >= 0 and stop is not None and 0 <= stop <= rendered
    return isinstance(index, int) and 0 <= index < rendered


def _completing(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    @functools.wraps(method)
    def read(self: Reasons, *args: Any, **kwargs: Any) -> Any:
        return method(self.complete(), *args, **kwargs)

    return read


for _name in (  # every other list method reads (or changes) the whole list: render the rest first
    "__iter__",
    "__len__",
    "__reversed__",
    "__contains__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__repr__",
    "__add__",
    "__mul__",
    "__rmul__",
    "__iadd__",
    "__imul__",
    "__setitem__",
    "__delitem__",
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "clear",
    "copy",
    "count",
    "index",
    "reverse",
    "sort",
):
    setattr(Reasons, _name, _completing(_name))
