"""The fixed, ordered pass pipeline, with the verifier after every pass and GRAPHC_DUMP dumps."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ir.graph import Graph
from ir.passes.rewrite import cse, dce, decompose, fold_constants, simplify
from ir.printer import format_graph
from ir.verify import verify


@dataclass(frozen=True)
class Pass:
    """A named `Graph -> Graph` pass and the condition it needs of its input."""

    name: str
    run: Callable[[Graph], Graph]
    precondition: str


PIPELINE: tuple[Pass, ...] = (
    Pass("decompose", decompose, "a verified graph"),
    Pass("simplify", simplify, "a verified graph"),
    Pass("fold_constants", fold_constants, "weights are constants (inference graphs)"),
    Pass("simplify_folded", simplify, "a verified graph"),
    Pass("cse", cse, "every op is pure (random ops depend only on their seed attribute)"),
    Pass("dce", dce, "every op is pure"),
)


def optimize(
    graph: Graph, passes: tuple[Pass, ...] = PIPELINE, dump: str | os.PathLike | None = None
) -> Graph:
    """Run `passes` in order, verifying after each. With `dump` (or the GRAPHC_DUMP environment
    variable) the graph is written as text before the first pass and after every pass:
    `<dir>/<graph>.<NN>.<pass>.txt`."""
    dump = dump if dump is not None else os.environ.get("GRAPHC_DUMP") or None
    directory = Path(dump) if dump else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{graph.name}.00.input.txt").write_text(format_graph(graph) + "\n")
    verify(graph)
    for i, p in enumerate(passes, start=1):
        graph = p.run(graph)
        verify(graph)
        if directory is not None:
            (directory / f"{graph.name}.{i:02d}.{p.name}.txt").write_text(format_graph(graph) + "\n")
    return graph
