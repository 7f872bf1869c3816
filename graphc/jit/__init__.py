"""`graphc.jit`: PyTorch's jit namespace over graphc's capture (`script`, `trace`, `load`)."""

from graphc.capture import ScriptModule, load, script, trace

__all__ = ["ScriptModule", "load", "script", "trace"]
