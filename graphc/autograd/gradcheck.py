"""Check analytical gradients against finite differences (use float64 inputs).

>>> x = graphc.rand(3, dtype=graphc.float64, requires_grad=True)
>>> gradcheck(graphc.sin, (x,))
True
"""

from __future__ import annotations

import numpy as np

from graphc.autograd import grad as _grad
from graphc.errors import AutogradError


class GradcheckError(AutogradError):
    """Analytical and numerical gradients disagree."""


def _outputs(func, inputs):
    from graphc._tensor import Tensor

    out = func(*inputs)
    return (out,) if isinstance(out, Tensor) else tuple(out)


def _numerical(func, inputs, i, eps):
    x = inputs[i]
    if not x._data.flags.c_contiguous:
        x._data = x._data.copy()
    flat = x._data.reshape(-1)  # a view: perturbing it perturbs x
    columns = []
    for k in range(flat.size):
        orig = flat[k].item()
        flat[k] = orig + eps
        plus = [o.detach().numpy(force=True).astype(np.float64).copy() for o in _outputs(func, inputs)]
        flat[k] = orig - eps
        minus = [o.detach().numpy(force=True).astype(np.float64).copy() for o in _outputs(func, inputs)]
        flat[k] = orig
        columns.append([((p - m) / (2 * eps)).reshape(-1) for p, m in zip(plus, minus, strict=True)])
    return columns  # [input element][output] -> d output / d x_k


def gradcheck(
    func,
    inputs,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    **unused,
) -> bool:
    """Whether the gradients of `func` at `inputs` match central finite differences."""
    from graphc._creation import zeros_like
    from graphc._tensor import Tensor

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    diff_idx = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff_idx:
        raise ValueError("gradcheck expects at least one input tensor with requires_grad=True")
    for i in diff_idx:
        if inputs[i].dtype.name != "float64":
            import warnings

            warnings.warn(
                f"gradcheck: input {i} is {inputs[i].dtype}, not float64; the check "
                "may fail from rounding alone",
                stacklevel=2,
            )
    outputs = _outputs(func, inputs)
    for i in diff_idx:
        numerical = _numerical(func, inputs, i, eps)
        for o, out in enumerate(outputs):
            if not out.dtype.is_floating_point:
                continue
            flat = out.reshape(-1)
            analytical = np.zeros((out.numel(), inputs[i].numel()))
            for r in range(out.numel()):
                if not flat.requires_grad:
                    break
                g = _grad(flat[r], inputs[i], retain_graph=True, allow_unused=True)[0]
                g = zeros_like(inputs[i]) if g is None else g
                analytical[r] = g.detach().numpy(force=True).reshape(-1)
            num = np.stack([col[o] for col in numerical], axis=1) if numerical else analytical * 0
            if not np.allclose(analytical, num, rtol=rtol, atol=atol, equal_nan=True):
                worst = np.unravel_index(np.argmax(np.abs(analytical - num)), num.shape)
                msg = (
                    f"Jacobian mismatch for output {o} with respect to input {i}:\n"
                    f"numerical:\n{num}\nanalytical:\n{analytical}\n"
                    f"largest difference at {worst}: {analytical[worst]} vs {num[worst]}"
                )
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def gradgradcheck(
    func,
    inputs,
    grad_outputs=None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    **unused,
) -> bool:
    """gradcheck of the gradient of `func` (checks second derivatives)."""
    from graphc._creation import randn_like
    from graphc._tensor import Tensor

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    outs = _outputs(func, inputs)
    if grad_outputs is None:
        grad_outputs = tuple(randn_like(o).requires_grad_(True) for o in outs)
    n = len(inputs)

    def first_grads(*args):
        xs, gos = args[:n], args[n:]
        res = _grad(
            _outputs(func, xs),
            [x for x in xs if isinstance(x, Tensor) and x.requires_grad],
            gos,
            create_graph=True,
            allow_unused=True,
        )
        return tuple(r for r in res if r is not None)

    return gradcheck(
        first_grads, (*inputs, *grad_outputs), eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception
    )
