"""Capturing eager code as graphs: `graphc.script`, `graphc.trace`, the tracer."""

from graphc.capture.script import ScriptModule, capture, load, script, trace
from graphc.capture.tracer import TracingError

__all__ = ["ScriptModule", "TracingError", "capture", "load", "script", "trace"]
