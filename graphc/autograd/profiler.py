"""A profiler of eager ops: times every op that runs through the dispatch point.

>>> with graphc.autograd.profiler.profile() as prof:
...     z = (x / y) * y
>>> print(prof.key_averages().table(sort_by="self_cpu_time_total"))
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from graphc import _dispatch


@dataclass
class FunctionEventAvg:
    """Totals for one op name."""

    key: str
    count: int = 0
    self_cpu_time_total: float = 0.0  # microseconds

    @property
    def cpu_time_total(self) -> float:
        return self.self_cpu_time_total

    @property
    def cpu_time(self) -> float:
        return self.self_cpu_time_total / max(self.count, 1)


class EventList(list):
    """Per-op totals, printable as a table like PyTorch's."""

    def table(self, sort_by: str | None = None, row_limit: int = 100, **unused) -> str:
        rows = list(self)
        if sort_by:
            key = sort_by
            if key not in ("self_cpu_time_total", "cpu_time_total", "cpu_time", "count"):
                raise ValueError(
                    f"table(): cannot sort by {sort_by!r}; use self_cpu_time_total, cpu_time_total or count"
                )
            rows.sort(key=lambda e: getattr(e, key), reverse=True)
        rows = rows[:row_limit]
        total = sum(e.self_cpu_time_total for e in self) or 1.0
        name_w = max([len("Name")] + [len(e.key) for e in rows]) + 2
        cols = ["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "# of Calls"]
        line = "-" * name_w + "  " + "  ".join("-" * 12 for _ in cols)
        out = [line, "Name".rjust(name_w) + "  " + "  ".join(c.rjust(12) for c in cols), line]
        for e in rows:
            pct = f"{100 * e.self_cpu_time_total / total:.2f}%"
            cells = [
                pct,
                _us(e.self_cpu_time_total),
                pct,
                _us(e.cpu_time_total),
                _us(e.cpu_time),
                str(e.count),
            ]
            out.append(e.key.rjust(name_w) + "  " + "  ".join(c.rjust(12) for c in cells))
        out.append(line)
        out.append(f"Self CPU time total: {_us(total)}")
        return "\n".join(out) + "\n"


def _us(t: float) -> str:
    if t >= 1000:
        return f"{t / 1000:.3f}ms"
    return f"{t:.3f}us"


class profile:
    """Context manager that records the time of every op run inside it."""

    def __init__(
        self, enabled: bool = True, use_cuda: bool = False, record_shapes: bool = False, **unused
    ) -> None:
        self.enabled = enabled
        self.record_shapes = record_shapes
        self._totals: dict = defaultdict(lambda: [0, 0.0])

    def __enter__(self):
        if self.enabled:
            if _dispatch.observer is not None:
                raise RuntimeError("profiler already running: profiles cannot be nested")
            _dispatch.observer = self._record
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            _dispatch.observer = None

    def _record(self, name: str, shapes: tuple, seconds: float) -> None:
        entry = self._totals[name, shapes if self.record_shapes else ()]
        entry[0] += 1
        entry[1] += seconds * 1e6

    def key_averages(self, group_by_input_shape: bool = False) -> EventList:
        """Totals per op name (and per input shapes, with `record_shapes=True`)."""
        if group_by_input_shape and not self.record_shapes:
            raise ValueError("group_by_input_shape=True needs profile(record_shapes=True)")
        merged: dict = defaultdict(lambda: [0, 0.0])
        for (name, shapes), (count, t) in self._totals.items():
            key = f"graphc::{name}" + (f" {list(map(list, shapes))}" if group_by_input_shape else "")
            merged[key][0] += count
            merged[key][1] += t
        return EventList(FunctionEventAvg(key, count, t) for key, (count, t) in merged.items())

    def table(self, **kwargs) -> str:
        return self.key_averages().table(**kwargs)
