"""Graph passes and the fixed pipeline that runs them (DESIGN.md, compiler step 1).

Each pass is `Graph -> Graph` (a new graph; the input is not changed), states its precondition,
and keeps the graph's signature: input names and types, output types, and output names where the
output is still computed by a node.

    >>> from ir.passes import optimize
    >>> g2 = optimize(g)                     # GRAPHC_DUMP=dir writes the IR after every pass
"""

from ir.passes.pipeline import PIPELINE, Pass, optimize
from ir.passes.rewrite import (
    COMPOSITES,
    cse,
    dce,
    decompose,
    fold_constants,
    simplify,
    specialize,
)

__all__ = [
    "COMPOSITES",
    "PIPELINE",
    "Pass",
    "cse",
    "dce",
    "decompose",
    "fold_constants",
    "optimize",
    "simplify",
    "specialize",
]
