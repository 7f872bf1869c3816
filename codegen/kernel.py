"""The kernel IR: loop-level programs that renderers turn into machine code.

A `Kernel` iterates over an index space (`ranges`, sizes ints or symbols that the caller passes
at run time) and stores one scalar expression per point, or with a `Reduction` combines the
expression over some axes; with `Stage`s it works row by row, reducing each row first and
reading the results as `Row`s (softmax, layer norm in one kernel). An expression reads its
inputs through `Load`s whose per-dimension strides (0 where the input is broadcast) come from
the input's shape, or from a `View` of another buffer (permuted, sliced, flipped...), so
movement never copies. `Matmul`, `Conv2d` and `Pool2d` are the blocked kernels, with their
elementwise consumers as an epilogue expression of `Acc()`; `conv_path` says which of the three
convolution kernels a layer gets. Renderers consume only this.

    >>> k = Kernel("k0", ranges=("batch", 4), dtype=f32, inputs=(KernelInput(("batch", 4)),),
    ...            body=Unary("exp", Load(0)))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ir import dtypes
from ir.types import TensorType


@dataclass(frozen=True)
class Load:
    """The value of input `index` at the current point (broadcast by its shape)."""

    index: int


@dataclass(frozen=True)
class Const:
    value: float


@dataclass(frozen=True)
class Acc:
    """In a matmul's epilogue: the product's value at the current point."""


@dataclass(frozen=True)
class Unary:
    op: str
    x: Expr


@dataclass(frozen=True)
class Binary:
    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Cast:
    """x converted to `dtype` (numpy's astype)."""

    dtype: dtypes.DType
    x: Expr


@dataclass(frozen=True)
class Where:
    """a where cond holds, else b."""

    cond: Expr
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Row:
    """In a kernel with stages: the result of stage `index` for the current row."""

    index: int


@dataclass(frozen=True)
class Take:
    """Input `index` (a `KernelInput` with `gather`) read at the current point moved along its
    gathered axis to the integer value of `at`: PyTorch's gather. An `at` outside the axis
    reads its first element and sets the kernel's status word: the call raises IndexError."""

    index: int
    at: Expr


@dataclass(frozen=True)
class Index:
    """The current point's position along range `axis` (int64): `arange(n)` computed in place,
    the counter of a random number generator."""

    axis: int


Expr = Load | Const | Acc | Unary | Binary | Cast | Where | Row | Take | Index

UNARY_OPS = (
    "neg",
    "abs",
    "exp",
    "log",
    "sqrt",
    "tanh",
    "sigmoid",
    "relu",
    "rsqrt",
    "reciprocal",
    "floor",
    "ceil",
    "trunc",
    "exp2",
    "log2",
    "log10",
    "sin",
    "cos",
    "erf",
    "expm1",
    "log1p",
)
BINARY_OPS = ("add", "sub", "mul", "div", "maximum", "minimum")
BITWISE_OPS = ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift")  # integers only
COMPARE_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
LOGIC_OPS = ("logical_and", "logical_or", "logical_not")
PREDICATES = ("isfinite", "isnan", "isinf")


def expr_dtype(e: Expr, inputs, default: dtypes.DType, stages=()) -> dtypes.DType:
    """The dtype of `e`'s values; `inputs` are the kernel's inputs, `default` the dtype of
    constants and of Acc(), `stages` the kernel's stages."""
    if isinstance(e, Row):
        return stages[e.index].dtype
    if isinstance(e, (Load, Take)):
        return inputs[e.index].dtype or default
    if isinstance(e, (Const, Acc)):
        return default
    if isinstance(e, Index):
        return dtypes.int64
    if isinstance(e, Cast):
        return e.dtype
    if isinstance(e, Where):
        return expr_dtype(e.a, inputs, default, stages)
    if e.op in COMPARE_OPS or e.op in LOGIC_OPS or e.op in PREDICATES:
        return dtypes.bool_
    return expr_dtype(e.x if isinstance(e, Unary) else e.a, inputs, default, stages)


@dataclass(frozen=True)
class View:
    """Where the elements of an input live in its buffer when the input is a view of it
    (permuted, sliced, expanded...): element (i0, i1, ...) at offset + sum(i_k * strides[k]).
    Each stride is 0 or a product (a tuple of ints and symbols, ints possibly negative), the
    offset a sum of such products."""

    strides: tuple
    offset: tuple = ()


@dataclass(frozen=True)
class KernelInput:
    """An input of `shape` (broadcast against the kernel's ranges) and `dtype` (None: the
    kernel's): a contiguous buffer, or with `view` a view of one."""

    shape: tuple
    dtype: dtypes.DType | None = None
    view: View | None = None
    # read by `Take` only: (stride, size) of the axis its index moves along (the view's stride
    # there is 0: the index adds index * stride)
    gather: tuple | None = None


@dataclass(frozen=True)
class Reduction:
    """Combine the body's values over `axes` of the ranges with `op` ('sum', 'max', 'min');
    `mean` divides the sums by the number of values combined."""

    op: str
    axes: tuple[int, ...]
    keepdim: bool = False
    mean: bool = False


@dataclass(frozen=True)
class Stage:
    """A reduction a kernel computes for each row (each point of its ranges outside
    `row_axes`) before its body: `body` combined over the row with `op` ('sum', 'max', 'min'),
    divided by the row's size where `mean`; later stages and the body read it as `Row(index)`.
    Of float `dtype`, the body's."""

    op: str
    body: Expr
    dtype: dtypes.DType
    mean: bool = False


@dataclass(frozen=True)
class Kernel:
    """One compiled loop nest over `ranges`: out[point] = body(inputs at point), or with a
    `reduce`, out[point without the reduced axes] = combination of body over those axes.

    With `stages` (softmax, layer norm), the kernel works row by row, a row being the points
    that differ only along `row_axes`: it computes each stage over the row, then the body at
    every point of the row (or, with a `reduce` over `row_axes`, its combination), reading the
    stages' results as `Row`s. The intermediates never leave the kernel."""

    name: str
    ranges: tuple
    dtype: dtypes.DType
    inputs: tuple[KernelInput, ...]
    body: Expr
    reduce: Reduction | None = None
    stages: tuple[Stage, ...] = ()
    row_axes: tuple[int, ...] = ()
    # with stages and no `reduce`: the body is computed once per row (from the rows' results:
    # e.g. a sum divided by a count) into an output of this shape (the ranges without the row
    # axes, or with them as 1s); None: at every point of the row
    row_out: tuple | None = None

    @property
    def checked(self) -> bool:
        """Whether the kernel reads by index (`Take`) and takes a status word to report an
        index out of range."""
        return any(x.gather is not None for x in self.inputs)

    @property
    def splittable(self) -> bool:
        """Whether calls on disjoint parts of the outermost range write disjoint outputs (they
        do unless that axis is reduced), so the parts can run on different threads."""
        reduced = (*(self.reduce.axes if self.reduce is not None else ()), *self.row_axes)
        return len(self.ranges) > 0 and 0 not in reduced

    @property
    def out_shape(self) -> tuple:
        if self.row_out is not None:
            return tuple(self.row_out)
        if self.reduce is None:
            return tuple(self.ranges)
        axes = self.reduce.axes
        if self.reduce.keepdim:
            return tuple(1 if k in axes else d for k, d in enumerate(self.ranges))
        return tuple(d for k, d in enumerate(self.ranges) if k not in axes)

    def out_strides(self) -> tuple:
        """Per dim of the ranges, the output's stride (a product of later kept dims), 0 on a
        reduced axis."""
        axes = self.reduce.axes if self.reduce is not None else ()
        if self.row_out is not None:
            axes = self.row_axes
        out = []
        for k in range(len(self.ranges)):
            if k in axes:
                out.append(0)
            else:
                out.append(tuple(d for j, d in enumerate(self.ranges) if j > k and j not in axes and d != 1))
        return tuple(out)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbolic sizes, in the order the compiled function takes them."""
        seen: list[str] = []
        views = [x.view for x in self.inputs if x.view is not None]
        products = [p for v in views for p in (*v.strides, *v.offset) if p != 0]
        products += [x.gather[0] for x in self.inputs if x.gather is not None and x.gather[0] != 0]
        products += [(x.gather[1],) for x in self.inputs if x.gather is not None]
        for shape in (self.ranges, *(i.shape for i in self.inputs), *products):
            for d in shape:
                if isinstance(d, str) and d not in seen:
                    seen.append(d)
        return tuple(seen)

    def strides(self, input_index: int) -> tuple:
        """Per dim of the ranges, the input's stride: a product of sizes (ints and symbols), or
        0 where the input is broadcast."""
        x = self.inputs[input_index]
        rank = len(self.ranges)
        lead = rank - len(x.shape)
        padded = (1,) * lead + tuple(x.shape)
        out = []
        for k in range(rank):
            if k < lead or (padded[k] == 1 and self.ranges[k] != 1):
                out.append(0)
            elif x.view is not None:
                out.append(x.view.strides[k - lead])
            else:
                out.append(tuple(d for d in padded[k + 1 :] if d != 1))
        return tuple(out)

    def offset(self, input_index: int) -> tuple:
        """Where input `input_index`'s first element is in its buffer: a sum of products."""
        view = self.inputs[input_index].view
        return () if view is None else view.offset


@dataclass(frozen=True)
class Matmul:
    """out = epilogue(a @ b) for `a` of shape (..., M, K) (leading dims are rows too) or (K,),
    and `b` of shape (K, N), or batched: a (..., M, K) and b (..., K, N) with the same leading
    dims (a product per batch). The epilogue is an expression of `Acc()` (the product at a
    point) and `Load`s of `extras`, inputs broadcast against `out_shape` that vary along the
    rows, the columns, both or neither (`extra_strides`); bias, activation and residual adds
    live there. With `pack_b` the kernel packs b into panels itself on every call (b computed
    by the graph, or batched); otherwise the caller passes a weight packed once
    (`pack_matmul_b`). Sizes M (all rows), N, K and the rows per batch are passed at run time;
    calls on disjoint row ranges may run in parallel.

    With a `prologue`, a is not read but computed at each of its points: an expression of
    `Load`s of `prologue_inputs`, inputs broadcast against a's shape along its rows, columns,
    both or neither (`prologue_strides`). The kernel evaluates a block of a's rows into a
    buffer of its own that every panel of b reuses, so each value of a is computed once a call
    and never stored in memory. Arguments in `operands` order: the first prologue input takes
    a's place, the others follow the extras."""

    name: str
    dtype: dtypes.DType
    a: KernelInput
    b: KernelInput
    out_shape: tuple
    epilogue: Expr = Acc()
    extras: tuple[KernelInput, ...] = ()
    pack_b: bool = False
    prologue: Expr | None = None
    prologue_inputs: tuple[KernelInput, ...] = ()

    splittable = True

    @property
    def batched(self) -> bool:
        return len(self.b.shape) > 2

    @property
    def operands(self) -> tuple[KernelInput, ...]:
        """The kernel's inputs in argument order (after the output)."""
        if self.prologue is None:
            return (self.a, self.b, *self.extras)
        return (self.prologue_inputs[0], self.b, *self.extras, *self.prologue_inputs[1:])

    def prologue_strides(self, index: int) -> tuple:
        """(row stride, column stride) of prologue input `index` in a's rows and columns: row
        stride 0, 1 or 'n' (the number of columns, K), column stride 0 or 1."""
        strides = matmul_extra_strides(self.prologue_inputs[index].shape, self.a.shape)
        if strides is None:
            shape = self.prologue_inputs[index].shape
            raise ValueError(f"prologue input of shape {shape} does not fit a's shape {self.a.shape}")
        return strides

    def extra_strides(self, index: int) -> tuple:
        """(row stride, column stride) of extra `index`: row stride 0, 1 or 'n' (the number of
        columns), column stride 0 or 1."""
        strides = matmul_extra_strides(self.extras[index].shape, self.out_shape)
        if strides is None:
            raise ValueError(f"extra input of shape {self.extras[index].shape} does not fit {self.out_shape}")
        return strides


def matmul_extra_strides(shape: tuple, out_shape: tuple) -> tuple | None:
    """How an input of `shape`, broadcast against a matmul's `out_shape`, is indexed by (row,
    column) of the product; None where it varies along only part of the leading dims."""
    if not out_shape or len(shape) > len(out_shape):
        return None
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    if padded[-1] not in (1, out_shape[-1]):
        return None
    columns = 1 if padded[-1] != 1 else 0
    lead, out_lead = padded[:-1], tuple(out_shape[:-1])
    if all(d == 1 for d in lead):
        return (0, columns)
    if lead == out_lead:
        return ("n" if columns else 1, columns)
    return None


@dataclass(frozen=True)
class Conv2d:
    """out = epilogue(conv2d(x, w)) in NCHW: x (N, C, H, W), w (CO, C / groups, KH, KW), out
    (N, CO, OH, OW); only N may be a symbol. Per image and group a matrix product of the weight
    (CO / groups rows of K = C / groups * KH * KW values) with the image's columns (im2col,
    packed by the kernel as it goes). `extra_strides[i]` gives epilogue operand i's strides
    along (image, output channel, output pixel): a per-channel bias is (0, 1, 0). A call covers
    a range of units, `pieces` per image (each a share of its output pixels, so one image's
    work splits over the cores too), images in order; calls on disjoint ranges may run in
    parallel."""

    name: str
    dtype: dtypes.DType
    x: KernelInput
    w: KernelInput
    out_shape: tuple
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    epilogue: Expr = Acc()
    extras: tuple[KernelInput, ...] = ()
    extra_strides: tuple[tuple[int, int, int], ...] = ()
    # w given already transposed for the channels path ([group][K][channels padded to whole
    # vectors]: `pack_conv_weight`), done once for a weight instead of on every call
    w_packed: bool = False

    splittable = True

    @property
    def pieces(self) -> int:
        """Units per image: CONV_PIECES where an image's multiply-adds reach
        CONV_PIECE_MIN_MACS (a layer over large images, run one image at a time), else 1."""
        work = math.prod(self.w.shape) * math.prod(self.out_shape[2:])
        return CONV_PIECES if work >= CONV_PIECE_MIN_MACS else 1


# a convolution whose work per image reaches CONV_PIECE_MIN_MACS splits each image into
# CONV_PIECES units (shares of its output pixels): enough for the cores of one machine at
# batch 1, few enough that each stays thousands of multiply-adds per output channel
CONV_PIECES = 16
CONV_PIECE_MIN_MACS = 1 << 22


@dataclass(frozen=True)
class Pool2d:
    """out = the maximum of each pooling window of x (N, C, H, W) -> (N, C, OH, OW), windows
    clipped to the input (padding never wins); only N may be a symbol. With `indices`, out is
    instead where each maximum sits, as a flat position in its input plane (int64; the first
    maximum wins, a NaN before any number): max_pool2d's second output. Calls on disjoint
    ranges of images may run in parallel."""

    name: str
    dtype: dtypes.DType
    x: KernelInput
    out_shape: tuple
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    indices: bool = False

    splittable = True


@dataclass(frozen=True)
class PoolBackward:
    """out = max_pool2d_backward(g, indices): each plane of out (N, C, H, W) zero but for the
    output gradient g (N, C, OH, OW) added at the flat positions `indices` (int64, of g's shape)
    in the order of g (overlapping windows sum; an index outside the plane is skipped); only
    N may be a symbol. Calls on disjoint ranges of images may run in parallel."""

    name: str
    dtype: dtypes.DType
    g: KernelInput
    out_shape: tuple

    splittable = True


@dataclass(frozen=True)
class ConvWeightGrad:
    """out = conv2d_weight_grad(x, g): the gradient of a stride-1 convolution's weight, the sum
    over images and output pixels of g[n, o, pixel] * x[n, c, the pixel's window tap] ->
    (CO, C / groups, KH, KW), from x (N, C, H, W) and the output gradient g (N, CO, OH, OW);
    only N may be a symbol. Calls on disjoint ranges of output channels may run in parallel."""

    name: str
    dtype: dtypes.DType
    x: KernelInput
    g: KernelInput
    out_shape: tuple
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    extras = ()  # no epilogue
    splittable = True


def weight_grad_block(k: ConvWeightGrad, vector_bits: int) -> tuple[int, int]:
    """(output channels, taps) per register block of the weight-gradient kernel: taps divide
    K = C / groups * KH * KW (at most 6, consecutive taps of a window row share a load's
    neighbourhood), and channels fill the vector registers left beside the accumulators and
    the loaded vectors."""
    co, cg, kh, kw = k.out_shape
    depth = cg * kh * kw
    taps = max(t for t in range(1, 7) if depth % t == 0)
    registers = 30 if vector_bits >= 512 else 14
    channels = max(1, min(8, (registers - taps) // (taps + 1), co // k.groups))
    return channels, taps


def conv_direct_rows(k: Conv2d, lanes: int, vectors: int) -> int:
    """Output rows per block of the direct convolution path (no im2col: each vector of the
    product loads its pixels straight from an input row), 0 where it does not apply: it needs
    stride 1 along the width. A row wider than lanes * vectors pixels is a block of its own,
    in segments of that many (`conv_direct_segments`)."""
    ow = k.out_shape[3]
    chunks = -(-ow // lanes)
    if k.stride[1] != 1 or ow == 0:
        return 0
    return max(1, vectors // chunks)


def conv_direct_segments(k: Conv2d, lanes: int, vectors: int) -> int:
    """The segments of lanes * vectors pixels (the last one shorter) an output row of the
    direct path is computed in: 1 where a row fits in one block."""
    chunks = -(-k.out_shape[3] // lanes)
    return -(-chunks // vectors)


def conv_path(k: Conv2d, rows: int, lanes: int, vectors: int) -> str:
    """Which convolution kernel `k` gets with a rows x (lanes * vectors) register block:
    'direct' (output pixels along the vector lanes, read straight from the input rows),
    'channels' (output channels along the lanes, pixels broadcast from the input) or 'packed'
    (im2col), by the vector fused multiply-adds each issues per image plus its merge (the
    channels path's transposes one element at a time: about half an FMA's time each, measured
    against the direct path on LeNet and ResNet layers)."""
    co, cg, kh, kw = k.w.shape
    _, _, oh, ow = k.out_shape
    cog, depth = co // k.groups, cg * kh * kw
    costs = {}
    block = conv_direct_rows(k, lanes, vectors)
    if block:
        costs["direct"] = cog * depth * -(-oh // block) * block * -(-ow // lanes) + 0.1 * oh * ow * cog
    if cog >= lanes:
        costs["channels"] = oh * ow * (depth * -(-cog // lanes) + 0.5 * cog)
    return min(costs, key=costs.get) if costs else "packed"


def conv_extra_strides(shape: tuple, out_shape: tuple) -> tuple[int, int, int] | None:
    """How an input of `shape`, broadcast against a convolution's `out_shape` (N, CO, OH, OW),
    is indexed by (image, channel, pixel); None where it varies along only one of OH, OW."""
    if len(shape) > 4:
        return None
    n, co, oh, ow = out_shape
    pn, pc, ph, pw = (1,) * (4 - len(shape)) + tuple(shape)
    if (ph, pw) == (oh, ow) and oh * ow != 1:
        pixel, pixels = 1, oh * ow
    elif (ph, pw) == (1, 1):
        pixel, pixels = 0, 1
    else:
        return None
    if pc not in (1, co) or pn not in (1, n):
        return None
    channel = pixels if pc == co and co != 1 else 0
    image = (pc if pc == co else 1) * pixels if pn == n and n != 1 else 0
    return image, channel, pixel


def format_expr(e: Expr, inputs: str = "in") -> str:
    """`e` as text; its Loads read `{inputs}0`, `{inputs}1`, ..."""
    if isinstance(e, Row):
        return f"row{e.index}"
    if isinstance(e, Acc):
        return "acc"
    if isinstance(e, Load):
        return f"{inputs}{e.index}[i]"
    if isinstance(e, Take):
        return f"{inputs}{e.index}[i at {format_expr(e.at, inputs)}]"
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Index):
        return f"index{e.axis}"
    if isinstance(e, Unary):
        return f"{e.op}({format_expr(e.x, inputs)})"
    if isinstance(e, Cast):
        return f"cast[{e.dtype.name}]({format_expr(e.x, inputs)})"
    if isinstance(e, Where):
        return f"where({', '.join(format_expr(x, inputs) for x in (e.cond, e.a, e.b))})"
    return f"{e.op}({format_expr(e.a, inputs)}, {format_expr(e.b, inputs)})"


def _format_product(p) -> str:
    return "0" if p == 0 else "*".join(str(d) for d in p) or "1"


def _format_view(view: View | None) -> str:
    if view is None:
        return ""
    strides = ", ".join(_format_product(p) for p in view.strides)
    offset = " + ".join(_format_product(p) for p in view.offset) or "0"
    return f" view(strides=[{strides}], offset={offset})"


def format_kernel(k: Kernel | Matmul | Conv2d | Pool2d | PoolBackward | ConvWeightGrad) -> str:
    if isinstance(k, ConvWeightGrad):
        geometry = f"padding={k.padding}, dilation={k.dilation}, groups={k.groups}"
        x, g = TensorType(k.dtype, k.x.shape), TensorType(k.dtype, k.g.shape)
        out = TensorType(k.dtype, k.out_shape)
        return f"kernel {k.name}(x: {x}, g: {g}) conv2d_weight_grad[{geometry}] -> {out}"
    if isinstance(k, Pool2d):
        geometry = (
            f"kernel_size={k.kernel_size}, stride={k.stride}, padding={k.padding}, dilation={k.dilation}"
        )
        x = TensorType(k.dtype, k.x.shape)
        out = TensorType(dtypes.int64 if k.indices else k.dtype, k.out_shape)
        what = "max_pool2d_indices" if k.indices else "max_pool2d"
        return f"kernel {k.name}(x: {x}) {what}[{geometry}] -> {out}"
    if isinstance(k, PoolBackward):
        g, out = TensorType(k.dtype, k.g.shape), TensorType(k.dtype, k.out_shape)
        return f"kernel {k.name}(g: {g}, indices) max_pool2d_backward -> {out}"
    if isinstance(k, Conv2d):
        ins = ", ".join(
            f"{n}: {TensorType(k.dtype, x.shape)}"
            for n, x in [("x", k.x), ("w", k.w), *((f"in{i}", x) for i, x in enumerate(k.extras))]
        )
        geometry = f"stride={k.stride}, padding={k.padding}, dilation={k.dilation}, groups={k.groups}"
        geometry += ", w packed" if k.w_packed else ""
        out = TensorType(k.dtype, k.out_shape)
        return f"kernel {k.name}({ins}) conv2d[{geometry}] -> {out}: out = {format_expr(k.epilogue)}"
    if isinstance(k, Matmul):
        ins = ", ".join(
            f"{n}: {TensorType(k.dtype, x.shape)}{_format_view(x.view)}"
            for n, x in [("a", k.a), ("b", k.b), *((f"in{i}", x) for i, x in enumerate(k.extras))]
        )
        out = TensorType(k.dtype, k.out_shape)
        packing = " (b packed by the kernel)" if k.pack_b else ""
        prologue = ""
        if k.prologue is not None:
            ins += "".join(
                f", p{i}: {TensorType(x.dtype or k.dtype, x.shape)}" for i, x in enumerate(k.prologue_inputs)
            )
            prologue = f", a = {format_expr(k.prologue, 'p')}"
        return (
            f"kernel {k.name}({ins}) matmul{packing} -> {out}: out = {format_expr(k.epilogue)}, acc = a @ b"
            + prologue
        )
    ranges = ", ".join(str(d) for d in k.ranges)
    ins = ", ".join(
        f"in{i}: {TensorType(x.dtype or k.dtype, x.shape)}{_format_view(x.view)}"
        + ("" if x.gather is None else f" gather(stride={_format_product(x.gather[0])}, size={x.gather[1]})")
        for i, x in enumerate(k.inputs)
    )
    head = f"kernel {k.name}({ins}) over [{ranges}]"
    if k.stages:
        stages = "; ".join(
            f"row{i} = {'mean' if s.mean else s.op}({format_expr(s.body)})" for i, s in enumerate(k.stages)
        )
        head += f" by rows[axes={k.row_axes}]: {stages};"
    else:
        head += ":"
    if k.row_out is not None:
        return f"{head} out[row] = {format_expr(k.body)}"
    if k.reduce is None:
        return f"{head} out[i] = {format_expr(k.body)}"
    r = k.reduce
    op = "mean" if r.mean else r.op
    return f"{head} out = {op}[axes={r.axes}]({format_expr(k.body)})"
