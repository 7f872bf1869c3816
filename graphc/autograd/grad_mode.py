"""Grad mode: whether ops record the history autograd needs.

`no_grad`, `enable_grad`, `set_grad_enabled` and `inference_mode` work as context managers and
as decorators, like PyTorch's. Each thread has its own mode, as in PyTorch.
"""

from __future__ import annotations

import functools
import threading


class _State(threading.local):
    enabled = True  # the default in every thread


state = _State()


def is_grad_enabled() -> bool:
    """Whether ops record autograd history now (in this thread)."""
    return state.enabled


def _set(mode: bool) -> None:
    state.enabled = bool(mode)


class _GradModeContext:
    _mode: bool | None  # None: leave the mode as it is

    def __enter__(self):
        self._prev = state.enabled
        if self._mode is not None:
            _set(self._mode)
        return self

    def __exit__(self, *exc) -> None:
        _set(self._prev)

    def __call__(self, fn):
        if not callable(fn):
            raise TypeError(f"{type(self).__name__} decorates functions, got {fn!r}")
        mode = self._mode

        @functools.wraps(fn)
        def run(*args, **kwargs):
            prev = state.enabled
            if mode is not None:
                _set(mode)
            try:
                return fn(*args, **kwargs)
            finally:
                _set(prev)

        return run


class no_grad(_GradModeContext):
    """Turn history recording off inside a `with` block or a decorated function.

    >>> with graphc.no_grad():
    ...     y = x * 2          # y.requires_grad is False
    """

    def __init__(self) -> None:
        self._mode = False


class enable_grad(_GradModeContext):
    """Turn history recording on, even inside `no_grad`."""

    def __init__(self) -> None:
        self._mode = True


class set_grad_enabled(_GradModeContext):
    """Set grad mode to `mode`: at once when called, and back on leaving a `with` block
    (or around each call of a decorated function)."""

    def __init__(self, mode: bool) -> None:
        self._prev = state.enabled
        self._mode = bool(mode)
        _set(mode)

    def __enter__(self):
        return self

    def __call__(self, fn):
        _set(self._prev)
        return super().__call__(fn)


class inference_mode(_GradModeContext):
    """Like `no_grad` (graphc has no separate inference tensors); `inference_mode(False)`
    leaves the mode as it is, as in PyTorch."""

    def __init__(self, mode: bool = True) -> None:
        self._mode = False if mode else None
