"""Activation modules: thin wrappers of `nn.functional`."""

from __future__ import annotations

from graphc._tensor import Tensor
from graphc.nn import functional as F
from graphc.nn.module import Module


class ReLU(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.silu(input, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(Module):
    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input: Tensor) -> Tensor:
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Softmax(Module):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim)


class _Elementwise(Module):
    """An activation of `nn.functional` with keyword settings (shown by repr) and `inplace`."""

    fn: str = ""
    settings: tuple = ()  # (name, default) pairs

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        names = [n for n, _ in self.settings]
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} arguments, got {len(args)}")
        values = dict(self.settings)
        values.update(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in values:
                raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {key!r}")
            values[key] = value
        missing = [key for key, value in values.items() if value is None]
        if missing:
            raise TypeError(f"{type(self).__name__} missing required arguments {missing}")
        for key, value in values.items():
            setattr(self, key, value)

    def forward(self, input: Tensor) -> Tensor:
        return getattr(F, self.fn)(input, *(getattr(self, n) for n, _ in self.settings))

    def extra_repr(self) -> str:
        shown = [f"{n}={getattr(self, n)}" for n, _ in self.settings if n != "inplace"]
        if dict(self.settings).get("inplace") is not None and getattr(self, "inplace", False):
            shown.append("inplace=True")
        return ", ".join(shown)


class ReLU6(_Elementwise):
    fn, settings = "relu6", (("inplace", False),)


class Hardtanh(_Elementwise):
    fn, settings = "hardtanh", (("min_val", -1.0), ("max_val", 1.0), ("inplace", False))


class Hardswish(_Elementwise):
    fn, settings = "hardswish", (("inplace", False),)


class Hardsigmoid(_Elementwise):
    fn, settings = "hardsigmoid", (("inplace", False),)


class Mish(_Elementwise):
    fn, settings = "mish", (("inplace", False),)


class SELU(_Elementwise):
    fn, settings = "selu", (("inplace", False),)


class CELU(_Elementwise):
    fn, settings = "celu", (("alpha", 1.0), ("inplace", False))


class Threshold(_Elementwise):
    fn, settings = "threshold", (("threshold", None), ("value", None), ("inplace", False))


class GLU(_Elementwise):
    fn, settings = "glu", (("dim", -1),)


class LogSigmoid(_Elementwise):
    fn = "logsigmoid"


class Softsign(_Elementwise):
    fn = "softsign"


class Tanhshrink(_Elementwise):
    fn = "tanhshrink"


class Softshrink(_Elementwise):
    fn, settings = "softshrink", (("lambd", 0.5),)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Hardshrink(Softshrink):
    fn = "hardshrink"


class Softmin(Softmax):
    def forward(self, input: Tensor) -> Tensor:
        return F.softmin(input, self.dim)


class Softmax2d(Module):
    """Softmax over the channels of (N, C, H, W) or (C, H, W): at each pixel."""

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() not in (3, 4):
            raise ValueError(f"Softmax2d: expected a 3-D or 4-D input, got {input.dim()}-D")
        return F.softmax(input, -3)


class RReLU(Module):
    """Leaky ReLU with a random negative slope from [lower, upper] per element in training, and
    their mean in eval mode."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False) -> None:
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.rrelu(input, self.lower, self.upper, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}" + (", inplace=True" if self.inplace else "")


class PReLU(Module):
    """max(0, x) + a * min(0, x) with a learned slope `a`: one, or one per channel."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None) -> None:
        super().__init__()
        import graphc as G
        from graphc.nn.parameter import Parameter

        self.num_parameters, self.init = num_parameters, init
        self.weight = Parameter(G.full((num_parameters,), init, device=device, dtype=dtype))

    def forward(self, input: Tensor) -> Tensor:
        return F.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"
