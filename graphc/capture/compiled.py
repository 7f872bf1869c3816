"""`graphc.compile`: torch.compile's entry point, on graphc's compiler.

    >>> model = graphc.compile(model)          # or @graphc.compile on a function
    >>> with graphc.no_grad():
    ...     y = model(x)                       # scripted on the first call, compiled code after

The first call with inputs of a new signature (dtypes, ranks, sizes other than the batch)
captures the model with `graphc.script` on them, batch symbolic (or as `dynamic` says), and
compiles it; later calls with that signature run the compiled code. A model whose parameters,
buffers or mode changed since (an optimizer step, `load_state_dict`, `.train()`) is captured
again. Compiled graphs run forward only, so a call that autograd would record (gradients
enabled and some parameter or input requiring them) runs eagerly, as does one with keyword
arguments or non-tensor arguments, or a model in training mode; a model that cannot be captured
(a Python branch on a tensor's value) runs eagerly with a warning, or raises with
`fullgraph=True`.
"""

from __future__ import annotations

import warnings

from graphc._tensor import Tensor
from graphc.autograd import grad_mode
from graphc.capture.tracer import TracingError

_KEEP = 8  # compiled signatures kept per model


class CompiledModule:
    """A model (an nn.Module or a function) with `graphc.compile`'s call path; attributes not
    its own are the model's (`compiled.fc1`, `compiled.state_dict()`, ...)."""

    def __init__(self, model, fullgraph: bool, dynamic, backend: str | None) -> None:
        self.__dict__.update(
            _orig_mod=model,
            _fullgraph=fullgraph,
            _dynamic=dynamic,
            _backend=backend,
            _compiled={},
            _warned=set(),
        )

    def __call__(self, *args, **kwargs):
        reason = None
        if kwargs:
            reason = "it was called with keyword arguments"
        elif not args or not all(isinstance(a, Tensor) for a in args):
            reason = "its arguments are not all tensors"
        else:
            state, training, wants_grad = _walk(self._orig_mod)
            if training:
                reason = "the module is in training mode (compiled graphs run forward only: call .eval())"
            elif grad_mode.state.enabled and (wants_grad or any(a.requires_grad for a in args)):
                reason = (
                    "autograd is recording this call (compiled graphs run forward only: call it "
                    "under graphc.no_grad() or graphc.inference_mode())"
                )
        if reason is not None:
            self._note(reason)
            return self._orig_mod(*args, **kwargs)
        key = (self._shapes(args), state)
        scripted = self._compiled.get(key)
        if scripted is None:
            scripted = self._capture(args)
            if len(self._compiled) >= _KEEP:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = scripted
        if scripted is False:  # (could not be captured: eager, as warned)
            return self._orig_mod(*args)
        return scripted(*args)

    def _shapes(self, args) -> tuple:
        """The inputs' dtypes, devices and shapes (the batch dim's size left out where it is
        symbolic)."""
        full = self._dynamic is not None
        return tuple((a.dtype, a.device, a.dim(), a.shape if full else a.shape[1:]) for a in args)

    def _capture(self, args):
        from graphc.capture.script import script

        device = args[0].device
        try:
            kwargs = {"dynamic": self._dynamic} if self._dynamic is not None else {}
            if self._backend is not None and device.type == "cpu":
                kwargs["backend"] = self._backend
            return script(
                self._orig_mod, tuple(args), device=device if device.type == "cuda" else None, **kwargs
            )
        except TracingError as e:
            if self._fullgraph:
                raise
            warnings.warn(
                f"graphc.compile: running the model eagerly: it cannot be captured ({e})", stacklevel=3
            )
            return False

    def _note(self, reason: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(f"graphc.compile: running this call eagerly: {reason}", stacklevel=3)

    def __getattr__(self, name):
        return getattr(self.__dict__["_orig_mod"], name)

    def __setattr__(self, name, value) -> None:
        setattr(self._orig_mod, name, value)

    def __getitem__(self, index):
        return self._orig_mod[index]

    def __len__(self) -> int:
        return len(self._orig_mod)

    def __iter__(self):
        return iter(self._orig_mod)

    def __repr__(self) -> str:
        return f"CompiledModule({self._orig_mod!r})"


def _walk(model) -> tuple[tuple, bool, bool]:
    """What a capture of `model` depends on (its modules, and each parameter's and buffer's
    identity, memory and version: an optimizer step or load_state_dict changes it), whether any
    module is training, and whether any parameter requires gradients. A function: nothing."""
    if not hasattr(model, "_modules"):
        return (), False, False
    state: list = []
    training = wants_grad = False
    stack, seen = [model], set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        training |= m.training
        state.append(id(m))
        for t in m._parameters.values():
            if t is not None:
                wants_grad |= t.requires_grad
                state.append((id(t), id(t._data), t._version))
        for t in m._buffers.values():
            if t is not None:
                state.append((id(t), id(t._data), t._version))
        stack.extend(c for c in m._modules.values() if c is not None)
    return tuple(state), training, wants_grad


def compile(
    model=None,
    *,
    fullgraph: bool = False,
    dynamic=None,
    backend=None,
    mode=None,
    options=None,
    disable: bool = False,
):
    """`model` (an nn.Module or a function of tensors) with compiled code for its calls (see
    the module's docstring); as a decorator with or without arguments. `backend` 'llvm' or
    'interpreter' on the CPU (PyTorch's names, such as 'inductor', mean the default); `dynamic`
    as `graphc.script` takes it ({input name: {dim: symbol}}; None: the batch dim); `mode` and
    `options` are accepted and ignored; `disable` returns `model` as it is."""
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend, disable=disable)
    if disable:
        return model
    if isinstance(dynamic, bool):
        dynamic = None  # (PyTorch's flag: the batch dim is symbolic either way)
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"graphc.compile: backend must be a name, got {type(backend).__name__}")
    chosen = backend if backend in ("llvm", "interpreter") else None
    return CompiledModule(model, fullgraph, dynamic, chosen)
