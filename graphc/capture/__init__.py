"""Capturing eager code as graphs: `graphc.script`, `graphc.trace`, `graphc.cond`, `graphc.scan`,
the tracer."""

from graphc.capture.compiled import CompiledModule, compile
from graphc.capture.control import cond, scan
from graphc.capture.script import ScriptModule, capture, load, script, trace
from graphc.capture.tracer import TracingError

__all__ = [
    "CompiledModule",
    "ScriptModule",
    "TracingError",
    "capture",
    "compile",
    "cond",
    "load",
    "scan",
    "script",
    "trace",
]
