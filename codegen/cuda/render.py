"""CUDA C for every kernel of the shared kernel IR (codegen.kernel).

Pointwise kernels: each CUDA thread walks a grid-stride loop over the flat points of the
kernel's ranges, splits a point into its coordinates, reads every input through its strides
(broadcasts and views are index arithmetic, as on the CPU) and writes the output contiguously.
Reductions (sum, mean, max, min over any axes) and row kernels (softmax, layer norm: stages
combined over each row, then the body): a block per row, combining with warp shuffles and then
across the warps in shared memory. Gathers (`Take`) read where their index says and set a
status word for an index out of range. Matmuls, convolutions and convolution weight gradients
are one tiled product (64 x 64 tiles of C, A and B staged in shared memory, the convolutions'
columns gathered while staging); max pooling is a thread per output pixel, its backward a block
per plane adding atomically. Sizes that are symbols are kernel parameters, so one compiled
kernel serves every batch size; the launch configuration is the host's (`launch_config`). A
convolution whose weight comes packed for the CPU raises `UnsupportedKernel`.

The semantics follow numpy's as the LLVM renderer's do: maximum/minimum and relu propagate NaN,
comparisons with NaN are false except `ne`, bools are one byte in memory. The source uses only
what `codegen.cuda.emulate` can also compile as C++ for the CPU tests. `render_module` puts a
graph's kernels in one source, compiled and loaded once (codegen.cuda.executable).

    >>> source = render_kernel(kernel)          # extern "C" __global__ void <name>(...)
"""

from __future__ import annotations

import math
import re

from codegen.kernel import (
    BITWISE_OPS,
    COMPARE_OPS,
    LOGIC_OPS,
    PREDICATES,
    Acc,
    Binary,
    Cast,
    Const,
    Conv2d,
    ConvWeightGrad,
    Expr,
    Index,
    Kernel,
    KernelInput,
    Load,
    Matmul,
    Pool2d,
    PoolBackward,
    Row,
    Take,
    Unary,
    Where,
    expr_dtype,
)
from ir import dtypes

BLOCK = 256  # threads per block of a pointwise kernel


class UnsupportedKernel(NotImplementedError):
    """A kernel the CUDA renderer cannot render yet."""


_TYPES = {
    dtypes.float32: "float",
    dtypes.float64: "double",
    dtypes.int64: "long long",
    dtypes.int32: "int",
    dtypes.int16: "short",
    dtypes.int8: "signed char",
    dtypes.uint8: "unsigned char",
    dtypes.bool_: "unsigned char",  # in memory; `bool` in registers
}
_FLOATS = (dtypes.float32, dtypes.float64)

# helpers every generated source starts with (device functions; C++ for the emulation too)
PRELUDE = r"""
#ifndef GC_PRELUDE
#define GC_PRELUDE
#ifndef GC_DEVICE
#define GC_DEVICE __device__ __forceinline__
#endif
#ifndef GC_SHARED  // (the emulation's shared arrays check every access)
#define GC_SHARED(T, name, n) __shared__ T name[n]
#define GC_SHARED2(T, name, n, m) __shared__ T name[n][m]
#endif
template <typename T> GC_DEVICE T gc_maximum(T x, T y) { return (x >= y || x != x) ? x : y; }
template <typename T> GC_DEVICE T gc_minimum(T x, T y) { return (x <= y || x != x) ? x : y; }
template <typename T> GC_DEVICE bool gc_isnan(T x) { return x != x; }
template <typename T> GC_DEVICE bool gc_isfinite(T x) { return (x - x) == (x - x); }
template <typename T> GC_DEVICE bool gc_isinf(T x) { return !gc_isnan(x) && !gc_isfinite(x); }
template <typename T> GC_DEVICE T gc_abs(T x) { return x < 0 ? -x : x; }
template <typename T> GC_DEVICE T gc_bitwise_and(T x, T y) { return (T)(x & y); }
template <typename T> GC_DEVICE T gc_bitwise_or(T x, T y) { return (T)(x | y); }
template <typename T> GC_DEVICE T gc_bitwise_xor(T x, T y) { return (T)(x ^ y); }
// numpy's shifts: a count past the width (or negative) shifts everything out, to 0 or, right,
// to the sign; left shifts on the unsigned bits (a signed one that overflows is undefined)
template <typename T> GC_DEVICE T gc_left_shift(T x, T s) {
  return (unsigned long long)s < sizeof(T) * 8 ? (T)((unsigned long long)x << s) : (T)0;
}
template <typename T> GC_DEVICE T gc_right_shift(T x, T s) {
  return (unsigned long long)s < sizeof(T) * 8 ? (T)(x >> s) : (T)(x < 0 ? -1 : 0);
}
// a gather: in[base + at * stride], or in[base] with the status word set where `at` is outside
// 0..size (as on the CPU: the call then raises IndexError)
template <typename T>
GC_DEVICE T gc_take(const T* in, long long base, long long at, long long stride, long long size,
                    long long* status) {
  if ((unsigned long long)at >= (unsigned long long)size) { *status = 1; return in[base]; }
  return in[base + at * stride];
}
#endif
"""

# float ops: the C math function for float (the double one drops the `f`)
_MATH = {
    "exp": "expf",
    "log": "logf",
    "sqrt": "sqrtf",
    "tanh": "tanhf",
    "floor": "floorf",
    "ceil": "ceilf",
    "trunc": "truncf",
    "exp2": "exp2f",
    "log2": "log2f",
    "log10": "log10f",
    "sin": "sinf",
    "cos": "cosf",
    "erf": "erff",
    "expm1": "expm1f",
    "log1p": "log1pf",
    "abs": "fabsf",
}


def c_name(symbol: str) -> str:
    """A C identifier for a symbolic size."""
    return "s_" + re.sub(r"\W", "_", symbol)


def _size(d) -> str:
    return str(d) if isinstance(d, int) else c_name(d)


def _product(term) -> str:
    """A stride or offset term (0, or a tuple of ints and symbols) as a C expression."""
    if term == 0:
        return "0LL"
    factors = [_size(d) for d in term]
    return "(" + " * ".join(["1LL", *factors]) + ")"


class _Expr:
    """C expressions for a kernel's body."""

    def __init__(self, kernel, inputs=None) -> None:
        self.kernel = kernel
        self.inputs = kernel.inputs if inputs is None else inputs  # what Load(i) reads

    def dtype(self, e: Expr) -> dtypes.DType:
        return expr_dtype(e, self.inputs, self.kernel.dtype, getattr(self.kernel, "stages", ()))

    def constant(self, value: float, dtype: dtypes.DType) -> str:
        if dtype in _FLOATS:
            if value != value:
                return _special(dtype, "nan")
            if value in (float("inf"), float("-inf")):
                return ("-" if value < 0 else "") + _special(dtype, "inf")
            return f"(({_TYPES[dtype]}){float(value).hex()})"
        if dtype is dtypes.bool_:
            return "true" if value else "false"
        return f"(({_TYPES[dtype]}){int(value)}LL)"

    def __call__(self, e: Expr) -> str:
        if isinstance(e, Load):
            return f"v{e.index}"
        if isinstance(e, Acc):
            return "acc"
        if isinstance(e, Row):
            return f"row{e.index}"
        if isinstance(e, Take):
            x = self.kernel.inputs[e.index]
            stride, size = x.gather
            kind = x.dtype or self.kernel.dtype
            value = (
                f"gc_take<{_TYPES[kind]}>(in{e.index}, b{e.index}, (long long)({self(e.at)}), "
                f"{_product(stride)}, {_size(size)}LL, status)"
            )
            return f"({value} != 0)" if kind is dtypes.bool_ else value
        if isinstance(e, Const):
            return self.constant(e.value, self.kernel.dtype)
        if isinstance(e, Index):
            return f"c{e.axis}"
        if isinstance(e, Cast):
            target, x = e.dtype, self(e.x)
            if target is dtypes.bool_:
                return f"({x} != 0)"
            return f"(({_TYPES[target]}){x})"
        if isinstance(e, Where):
            return f"({self(e.cond)} ? {self(e.a)} : {self(e.b)})"
        if isinstance(e, Unary):
            return self.unary(e.op, self(e.x), self.dtype(e.x))
        if isinstance(e, Binary):
            a, b, kind = self(e.a), self(e.b), self.dtype(e.a)
            if e.op in COMPARE_OPS:
                symbol = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[e.op]
                return f"({a} {symbol} {b})"
            if e.op in LOGIC_OPS:
                return f"({a} {'&&' if e.op == 'logical_and' else '||'} {b})"
            if e.op in ("add", "sub", "mul", "div"):
                symbol = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[e.op]
                return f"(({_TYPES[kind]})({a} {symbol} {b}))"
            if e.op in ("maximum", "minimum"):
                return f"gc_{e.op}<{_TYPES[kind]}>({a}, {b})"
            if e.op in BITWISE_OPS and kind not in _FLOATS:
                return f"gc_{e.op}<{_TYPES[kind]}>({a}, {b})"
        raise UnsupportedKernel(f"kernel {self.kernel.name}: expression {e!r} has no CUDA rendering yet")

    def unary(self, op: str, x: str, kind: dtypes.DType) -> str:
        t = _TYPES.get(kind, "bool")
        if op == "logical_not":
            return f"(!{x})"
        if op in PREDICATES:
            return f"gc_{op}<{t}>({x})"
        if op == "neg":
            return f"(({t})(-{x}))"
        if op == "relu":
            zero = self.constant(0, kind)
            return f"gc_maximum<{t}>({x}, {zero})"
        if kind not in _FLOATS:
            if op == "abs":
                return f"gc_abs<{t}>({x})"
            raise UnsupportedKernel(f"kernel {self.kernel.name}: integer {op} has no CUDA rendering")
        one = self.constant(1.0, kind)
        if op == "rsqrt":  # 1 / sqrt(x), rounded twice, as numpy computes it
            return f"({one} / {self._math('sqrt', kind)}({x}))"
        if op == "reciprocal":
            return f"({one} / {x})"
        if op == "sigmoid":
            return f"({one} / ({one} + {self._math('exp', kind)}(-{x})))"
        if op in _MATH:
            return f"{self._math(op, kind)}({x})"
        raise UnsupportedKernel(f"kernel {self.kernel.name}: {op} has no CUDA rendering yet")

    @staticmethod
    def _math(op: str, kind: dtypes.DType) -> str:
        name = _MATH[op]
        return name if kind is dtypes.float32 else name[:-1]


def _special(dtype: dtypes.DType, which: str) -> str:
    if dtype is dtypes.float32:
        return "__int_as_float(0x7f800000)" if which == "inf" else "__int_as_float(0x7fc00000)"
    return (
        "__longlong_as_double(0x7ff0000000000000LL)"
        if which == "inf"
        else "__longlong_as_double(0x7ff8000000000000LL)"
    )


def pointwise(kernel) -> bool:
    """Whether `kernel` is pointwise: out[point] = body at every point."""
    return (
        isinstance(kernel, Kernel) and kernel.reduce is None and not kernel.stages and kernel.row_out is None
    )


def supported(kernel) -> bool:
    """Whether `render_kernel` covers `kernel`: every kernel of the kernel IR but a convolution
    whose weight comes in the CPU's packed layout (the CUDA path passes weights as they are)."""
    if isinstance(kernel, Conv2d):
        return not kernel.w_packed
    return isinstance(kernel, (Kernel, Matmul, Pool2d, PoolBackward, ConvWeightGrad))


def operands(kernel) -> list[tuple[str, KernelInput]]:
    """(parameter name, input) of every array `kernel` reads, in argument order (the LLVM
    kernels' order: a matmul's in `Matmul.operands` order)."""
    k = kernel
    if isinstance(k, Matmul):
        names = ["a", "b", *(f"x{i}" for i in range(len(k.extras)))]
        names += [f"p{i}" for i in range(1, len(k.prologue_inputs))]
        if k.prologue is not None:
            names[0] = "p0"
        return list(zip(names, k.operands, strict=True))
    if isinstance(k, Conv2d):
        return [("x", k.x), ("w", k.w), *((f"x{i}", x) for i, x in enumerate(k.extras))]
    if isinstance(k, Pool2d):
        return [("x", k.x)]
    if isinstance(k, ConvWeightGrad):
        return [("x", k.x), ("g", k.g)]
    if isinstance(k, PoolBackward):
        return [("g", k.g), ("indices", KernelInput(k.g.shape, dtypes.int64))]
    return [(f"in{i}", x) for i, x in enumerate(k.inputs)]


def size_names(kernel) -> list[str]:
    """The names of `kernel`'s integer parameters, after its arrays (and a gather's status)."""
    if isinstance(kernel, Matmul):
        return ["M", "N", "K", "MB"]
    if isinstance(kernel, Kernel):
        return [c_name(s) for s in kernel.symbols]
    return ["images"]


def size_values(kernel, bindings: dict) -> list[int]:
    """The values of `size_names(kernel)` at these symbol sizes."""
    from ir.types import concrete_shape

    if isinstance(kernel, Matmul):
        return matmul_sizes(kernel, bindings)
    if isinstance(kernel, Kernel):
        return [int(bindings[s]) for s in kernel.symbols]
    shape = kernel.x.shape if isinstance(kernel, ConvWeightGrad) else kernel.out_shape  # (images first)
    return [int(concrete_shape(shape, bindings)[0])]


def parameters(kernel) -> list[tuple[str, str]]:
    """The kernel's parameters in order, (C type, name): the output, the arrays it reads
    (`operands`), the status word of a kernel that gathers, the sizes (`size_names`)."""
    out = "long long" if isinstance(kernel, Pool2d) and kernel.indices else _TYPES[kernel.dtype]
    params = [(f"{out}* __restrict__", "out")]
    params += [(f"const {_TYPES[x.dtype or kernel.dtype]}* __restrict__", n) for n, x in operands(kernel)]
    if isinstance(kernel, Kernel) and kernel.checked:
        params.append(("long long*", "status"))
    return params + [("long long", n) for n in size_names(kernel)]


def _coordinates(flat: str, dims: list[int], ranges: list[str], indent: str) -> list[str]:
    """Lines splitting `flat` into coordinates c<d> of `dims` (the last one moving fastest)."""
    if not dims:
        return []
    lines = [f"{indent}long long rest_{flat} = {flat};"]
    for d in reversed(dims[1:]):
        lines.append(f"{indent}const long long c{d} = rest_{flat} % {ranges[d]}; rest_{flat} /= {ranges[d]};")
    lines.append(f"{indent}const long long c{dims[0]} = rest_{flat};")
    return lines


def _loads(k: Kernel, indent: str) -> list[str]:
    """Lines reading every input at the coordinates c<d> into v<i>."""
    lines = []
    for i, x in enumerate(k.inputs):
        terms = [_product(t) for t in k.offset(i)]
        terms += [f"c{d} * {_product(s)}" for d, s in enumerate(k.strides(i)) if s != 0]
        where = " + ".join(terms) if terms else "0"
        kind = x.dtype or k.dtype
        load = f"in{i}[{where}]"
        if x.gather is not None:  # read where the index says (`Take`): its base only
            lines.append(f"{indent}const long long b{i} = {where};")
        elif kind is dtypes.bool_:
            lines.append(f"{indent}const bool v{i} = {load} != 0;")
        else:
            lines.append(f"{indent}const {_TYPES[kind]} v{i} = {load};")
    return lines


def render_kernel(kernel) -> str:
    """CUDA C source of `kernel` (with the prelude): one `extern "C" __global__` function named
    like the kernel."""
    if not supported(kernel):
        raise UnsupportedKernel(
            f"kernel {getattr(kernel, 'name', kernel)}: the CUDA renderer has pointwise kernels, "
            "reductions, row kernels, matmuls, convolutions (weights as given, not packed for the "
            "CPU), max pooling and their gradients"
        )
    if isinstance(kernel, ConvWeightGrad):
        return _weight_grad(kernel)
    if isinstance(kernel, PoolBackward):
        return _pool_backward(kernel)
    if isinstance(kernel, Pool2d):
        return _pool(kernel)
    if isinstance(kernel, Matmul):
        return _matmul(kernel)
    if isinstance(kernel, Conv2d):
        return _conv(kernel)
    k = kernel
    body = _Expr(k)(k.body)  # (raises UnsupportedKernel before any text is made)
    params = ", ".join(f"{t} {n}" for t, n in parameters(k))
    lines = [PRELUDE.strip(), "", f'extern "C" __global__ void {k.name}({params}) {{']
    ranges = [_size(d) for d in k.ranges]
    if pointwise(k):
        lines.append(f"  const long long total = {' * '.join(['1LL', *ranges])};")
        lines.append("  const long long step = (long long)gridDim.x * blockDim.x;")
        lines.append("  const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;")
        lines.append("  for (long long i = first; i < total; i += step) {")
        lines += _coordinates("i", list(range(len(ranges))), ranges, "    ")
        lines += _loads(k, "    ")
        value = f"(unsigned char)({body})" if k.dtype is dtypes.bool_ else body
        lines.append(f"    out[i] = {value};")
        lines.append("  }")
    else:
        lines += _rows(k, body, ranges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_module(kernels) -> str:
    """One CUDA C source with every kernel of `kernels` (the prelude once): a graph's kernels
    compile and load as one module."""
    return "\n".join(render_kernel(k) for k in kernels)


def _rows(k: Kernel, body: str, ranges: list[str]) -> list[str]:
    """Reductions and row kernels: a block per row (a point of the axes outside the reduced
    or row axes; grid-stride over them). For each stage (and a reduction's own combination)
    every thread combines strided parts of the row; each warp combines its 32 values with
    shuffles, its first lane puts the warp's result in shared memory, and after a barrier the
    first warp combines those the same way; after a second barrier the row's result is in
    `partial<n>[0]`. The body follows: stored once per row (a reduction, `row_out`) or at every
    point of the row. Blocks are whole warps (32 to BLOCK threads)."""
    expr = _Expr(k)
    axes = list(k.row_axes) if k.stages or k.row_out is not None else list(k.reduce.axes)
    outer = [d for d in range(len(ranges)) if d not in axes]
    combined = [(s.op, expr(s.body), s.dtype, s.mean) for s in k.stages]
    if k.reduce is not None:
        combined.append((k.reduce.op, body, k.dtype, k.reduce.mean))
    out_strides = k.out_strides()

    def out_index(dims):
        terms = [f"c{d} * {_product(out_strides[d])}" for d in dims if out_strides[d] != 0]
        return " + ".join(terms) if terms else "0"

    def warp_combine(op: str, t: str, value: str, indent: str) -> list[str]:
        shuffled = f"__shfl_down_sync(0xffffffffu, {value}, offset)"
        return [
            f"{indent}for (int offset = 16; offset > 0; offset /= 2)",
            f"{indent}  {value} = {_combine(op, t, value, shuffled)};",
        ]

    lines = [
        f"  GC_SHARED({_TYPES[dtype]}, partial{n}, {BLOCK // 32});"
        for n, (_, _, dtype, _) in enumerate(combined)
    ]
    lines += [
        f"  const long long rows = {' * '.join(['1LL', *(ranges[d] for d in outer)])};",
        f"  const long long count = {' * '.join(['1LL', *(ranges[d] for d in axes)])};",
        "  for (long long o = blockIdx.x; o < rows; o += gridDim.x) {",
    ]
    lines += _coordinates("o", outer, ranges, "    ")
    lines.append(f"    const long long at = {out_index(outer)};")
    for n, (op, value, dtype, mean) in enumerate(combined):
        t = _TYPES[dtype]
        identity = _identity(expr, op, dtype)
        lines.append(f"    {t} acc{n} = {identity};")
        lines.append("    for (long long j = threadIdx.x; j < count; j += blockDim.x) {")
        lines += _coordinates("j", axes, ranges, "      ")
        lines += _loads(k, "      ")
        lines.append(f"      acc{n} = {_combine(op, t, f'acc{n}', f'(({t}){value})')};")
        lines.append("    }")
        lines += warp_combine(op, t, f"acc{n}", "    ")
        lines.append(f"    if (threadIdx.x % 32 == 0) partial{n}[threadIdx.x / 32] = acc{n};")
        lines.append("    __syncthreads();")
        lines.append("    if (threadIdx.x < 32) {  // the first warp combines the warps' results")
        lines.append(f"      acc{n} = threadIdx.x < blockDim.x / 32 ? partial{n}[threadIdx.x] : {identity};")
        lines += warp_combine(op, t, f"acc{n}", "      ")
        lines.append(f"      if (threadIdx.x == 0) partial{n}[0] = acc{n};")
        lines.append("    }")
        lines.append("    __syncthreads();")
        if n < len(k.stages):  # every thread reads a stage's result
            result = f"partial{n}[0] / ({t})count" if mean else f"partial{n}[0]"
            lines.append(f"    const {t} row{n} = {result};")
    store = (lambda v: f"(unsigned char)({v})") if k.dtype is dtypes.bool_ else (lambda v: v)
    if k.reduce is not None:  # (thread 0 alone reads the result)
        last = len(combined) - 1
        t = _TYPES[k.dtype]
        result = f"partial{last}[0] / ({t})count" if k.reduce.mean else f"partial{last}[0]"
        lines.append(f"    if (threadIdx.x == 0) out[at] = {result};")
    elif k.row_out is not None:  # the body once per row, from the row's results
        lines.append("    if (threadIdx.x == 0) {")
        lines += [f"      const long long c{d} = 0;" for d in axes]
        lines += _loads(k, "      ")
        lines.append(f"      out[at] = {store(body)};")
        lines.append("    }")
    else:  # the body at every point of the row
        lines.append("    for (long long j = threadIdx.x; j < count; j += blockDim.x) {")
        lines += _coordinates("j", axes, ranges, "      ")
        lines += _loads(k, "      ")
        lines.append(f"      out[at + {out_index(axes)}] = {store(body)};")
        lines.append("    }")
    if k.stages and len(combined) == 1:
        # every thread reads the row's result from partial0[0]: the first warp may not write it
        # again (the next row) before all have. With two or more combinations the next row's
        # first ones have barriers enough; a plain reduction's result is read by thread 0 alone.
        lines.append("    __syncthreads();")
    lines.append("  }")
    return lines


TILE, TILE_K, MICRO = 64, 16, 4  # a block's tile of C, the K step staged in shared memory


def _matmul(k: Matmul) -> str:
    """C = epilogue(A @ B): a block of 256 threads (it must be launched with exactly that many:
    `launch_config`) per 64 x 64 tile of C (grid-stride over the
    tiles of every batch), each thread a 4 x 4 block of accumulators; A's and B's tiles for
    16 values of K at a time are staged in shared memory between two barriers. A is read in
    place (rows `lda` apart, columns `a_step` apart: views such as a transpose) or computed
    from the prologue's inputs as it is staged; B through its strides (views, batches)."""
    t = _TYPES[k.dtype]
    params = ", ".join(f"{ct} {n}" for ct, n in parameters(k))

    def ints(view):
        return [0 if term == 0 else math.prod(term) for term in view.strides]

    def offset(view):
        return sum(math.prod(term) for term in view.offset if term != 0) if view is not None else 0

    # a's element (row r, column c)
    if k.prologue is not None:
        expr = _Expr(k, k.prologue_inputs)
        loads = []
        for i, x in enumerate(k.prologue_inputs):
            rs, cs = k.prologue_strides(i)
            at = " + ".join([*([f"r * {'K' if rs == 'n' else '1LL'}"] if rs else []), *(["c"] if cs else [])])
            kind = x.dtype or k.dtype
            value = f"p{i}[{at or '0'}]"
            loads.append(
                f"const {'bool' if kind is dtypes.bool_ else _TYPES[kind]} v{i} = {value}"
                + (" != 0;" if kind is dtypes.bool_ else ";")
            )
        a_value = "{ " + " ".join(loads) + f" value = {expr(k.prologue)}; }}"
    else:
        lda, step = ("K", "1LL")
        if k.a.view is not None:
            strides = ints(k.a.view)
            lda, step = f"{strides[-2]}LL", f"{strides[-1]}LL"
        a_value = f"value = a[{offset(k.a.view)}LL + r * {lda} + c * {step}];"
    # b's element (batch, row kk, column n)
    if k.b.view is not None:
        strides = ints(k.b.view)
        ldb, col = f"{strides[-2]}LL", f"{strides[-1]}LL"
        batch = f"{strides[-3]}LL" if k.batched else "0LL"
    else:
        ldb, col, batch = "N", "1LL", "(K * N)" if k.batched else "0LL"
    b_value = f"b[{offset(k.b.view)}LL + batch * {batch} + kk * {ldb} + n * {col}]"

    epilogue = _Expr(k, k.extras)
    extras = []
    for i in range(len(k.extras)):
        rs, cs = k.extra_strides(i)
        at = " + ".join([*([f"row * {'N' if rs == 'n' else '1LL'}"] if rs else []), *(["col"] if cs else [])])
        extras.append(f"const {t} v{i} = x{i}[{at or '0'}];")
    setup = [
        "  const long long batches = MB > 0 ? M / MB : 1;",
        "  const long long per_batch = MB > 0 ? MB : M;",
    ]
    tile_start = [
        f"    const long long first_row = batch * per_batch + (tile / col_tiles % row_tiles) * {TILE};",
        "    const long long last_row = (batch + 1) * per_batch;",
    ]
    store = [
        f"        const {t} acc = sums[i][j];",
        *(f"        {line}" for line in extras),
        f"        out[row * N + col] = {epilogue(k.epilogue)};",
    ]
    return _tiled(k, params, setup, tile_start, a_value, f"value = {b_value};", store)


def _tiled(k, params: str, setup: list, tile_start: list, a_value: str, b_value: str, store: list) -> str:
    """The tiled product matmuls and convolutions both are: `setup` defines batches,
    per_batch (rows of A a batch), N and K; each tile of C (TILE x TILE, within one batch)
    starts with `tile_start` (first_row, last_row: global rows of A); `a_value` and `b_value`
    set `value` to A's element (r, c) and to B's (batch, kk, n) where they are inside;
    `store` writes C's element (row, col) from `sums[i][j]`."""
    t = _TYPES[k.dtype]
    zero = _Expr(k, ()).constant(0, k.dtype)
    lines = [
        PRELUDE.strip(),
        "",
        f'extern "C" __global__ void {k.name}({params}) {{',
        f"  GC_SHARED2({t}, As, {TILE_K}, {TILE});",
        f"  GC_SHARED2({t}, Bs, {TILE_K}, {TILE});",
        *setup,
        f"  const long long row_tiles = (per_batch + {TILE - 1}) / {TILE};",
        f"  const long long col_tiles = (N + {TILE - 1}) / {TILE};",
        "  const unsigned tx = threadIdx.x % 16, ty = threadIdx.x / 16;",
        "  for (long long tile = blockIdx.x; tile < batches * row_tiles * col_tiles; tile += gridDim.x) {",
        "    const long long batch = tile / (row_tiles * col_tiles);",
        *tile_start,
        f"    const long long first_col = tile % col_tiles * {TILE};",
        f"    {t} sums[{MICRO}][{MICRO}];",
        f"    for (int i = 0; i < {MICRO}; i++) for (int j = 0; j < {MICRO}; j++) sums[i][j] = {zero};",
        f"    for (long long k0 = 0; k0 < K; k0 += {TILE_K}) {{",
        f"      for (unsigned e = threadIdx.x; e < {TILE * TILE_K}; e += blockDim.x) {{",
        f"        const unsigned kk_a = e % {TILE_K}, m = e / {TILE_K};",
        "        const long long r = first_row + m, c = k0 + kk_a;",
        f"        {t} value = {zero};",
        f"        if (r < last_row && c < K) {a_value}",
        "        As[kk_a][m] = value;",
        f"        const unsigned nn = e % {TILE}, kk_b = e / {TILE};",
        "        const long long n = first_col + nn, kk = k0 + kk_b;",
        f"        value = {zero};",
        f"        if (n < N && kk < K) {{ {b_value} }}",
        "        Bs[kk_b][nn] = value;",
        "      }",
        "      __syncthreads();",
        f"      for (int kk = 0; kk < {TILE_K}; kk++) {{",
        f"        {t} a_part[{MICRO}], b_part[{MICRO}];",
        f"        for (int i = 0; i < {MICRO}; i++) a_part[i] = As[kk][ty * {MICRO} + i];",
        f"        for (int j = 0; j < {MICRO}; j++) b_part[j] = Bs[kk][tx * {MICRO} + j];",
        f"        for (int i = 0; i < {MICRO}; i++)",
        f"          for (int j = 0; j < {MICRO}; j++) sums[i][j] += a_part[i] * b_part[j];",
        "      }",
        "      __syncthreads();",
        "    }",
        f"    for (int i = 0; i < {MICRO}; i++) {{",
        f"      const long long row = first_row + ty * {MICRO} + i;",
        "      if (row >= last_row) continue;",
        f"      for (int j = 0; j < {MICRO}; j++) {{",
        f"        const long long col = first_col + tx * {MICRO} + j;",
        "        if (col >= N) continue;",
        *store,
        "      }",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _conv(k: Conv2d) -> str:
    """conv2d as the tiled product, per image and group, of the weight (CO / groups rows of
    C / groups * KH * KW values) with the image's columns, gathered from the input as B's
    tiles are staged (implicit im2col: nothing is stored); the epilogue with its operands."""
    t = _TYPES[k.dtype]
    _, c, h, w = k.x.shape
    co, cg, kh, kw = k.w.shape
    oh, ow = k.out_shape[2:]
    g = k.groups
    sh, sw = k.stride
    ph, pw = k.padding
    dh, dw = k.dilation
    params = ", ".join(f"{ct} {n}" for ct, n in parameters(k))
    setup = [
        f"  const long long batches = images * {g}, per_batch = {co // g};",
        f"  const long long N = {oh * ow}, K = {cg * kh * kw};",
    ]
    tile_start = [
        f"    const long long image = batch / {g}, group = batch % {g};",
        f"    const long long first_row = group * {co // g} + (tile / col_tiles % row_tiles) * {TILE};",
        f"    const long long last_row = (group + 1) * {co // g};",
    ]
    inside = f"y >= 0 && y < {h} && xx >= 0 && xx < {w}"
    b_value = (
        f"const long long ci = group * {cg} + kk / {kh * kw}, tap = kk % {kh * kw};"
        f" const long long y = n / {ow} * {sh} - {ph} + tap / {kw} * {dh};"
        f" const long long xx = n % {ow} * {sw} - {pw} + tap % {kw} * {dw};"
        f" if ({inside}) value = x[((image * {c} + ci) * {h} + y) * {w} + xx];"
    )
    epilogue = _Expr(k, k.extras)
    extras = []
    for i, (si, sc, sp) in enumerate(k.extra_strides):
        extras.append(f"const {t} v{i} = x{i}[image * {si}LL + row * {sc}LL + col * {sp}LL];")
    store = [
        f"        const {t} acc = sums[i][j];",
        *(f"        {line}" for line in extras),
        f"        out[(image * {co} + row) * N + col] = {epilogue(k.epilogue)};",
    ]
    return _tiled(k, params, setup, tile_start, "value = w[r * K + c];", b_value, store)


def _pool(k: Pool2d) -> str:
    """Max pooling, a thread per output pixel (grid-stride): the window's taps inside the
    input in order, a tap taken when it is the first, larger than the best so far, or a NaN
    where the best is not (PyTorch's: NaN wins, then the first maximum); the maximum, or with
    `indices` where it sits in its input plane."""
    t = _TYPES[k.dtype]
    _, channels, height, width = k.x.shape
    _, _, oh, ow = k.out_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k.kernel_size, k.stride, k.padding, k.dilation
    params = ", ".join(f"{ct} {n}" for ct, n in parameters(k))
    result = "where" if k.indices else "best"
    lines = [
        PRELUDE.strip(),
        "",
        f'extern "C" __global__ void {k.name}({params}) {{',
        f"  const long long total = images * {channels * oh * ow};",
        "  const long long step = (long long)gridDim.x * blockDim.x;",
        "  const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;",
        "  for (long long i = first; i < total; i += step) {",
        f"    const long long plane = i / {oh * ow}, r = i % {oh * ow} / {ow}, c = i % {ow};",
        f"    const {t}* source = x + plane * {height * width};",
        f"    {t} best = 0;",
        "    long long where = 0;",
        "    bool found = false;",
        f"    for (int ky = 0; ky < {kh}; ky++) {{",
        f"      const long long y = r * {sh} + ky * {dh} - {ph};",
        f"      if (y < 0 || y >= {height}) continue;",
        f"      for (int kx = 0; kx < {kw}; kx++) {{",
        f"        const long long xx = c * {sw} + kx * {dw} - {pw};",
        f"        if (xx < 0 || xx >= {width}) continue;",
        f"        const {t} value = source[y * {width} + xx];",
        "        if (!found || (!(value <= best) && best == best)) {",
        f"          best = value; where = y * {width} + xx; found = true;",
        "        }",
        "      }",
        "    }",
        f"    out[i] = {result};",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _weight_grad(k: ConvWeightGrad) -> str:
    """The weight gradient of a stride-1 convolution as the tiled product, per group, of the
    output gradient (CO / groups rows of images * OH * OW values) with the input's windows
    (gathered while B's tiles are staged), the sum running over images and pixels alike."""
    _, c, h, w = k.x.shape
    _, co, oh, ow = k.g.shape
    _, cg, kh, kw = k.out_shape
    g = k.groups
    ph, pw = k.padding
    dh, dw = k.dilation
    pixels = oh * ow
    params = ", ".join(f"{ct} {n}" for ct, n in parameters(k))
    setup = [
        f"  const long long batches = {g}, per_batch = {co // g};",
        f"  const long long N = {cg * kh * kw}, K = images * {pixels};",
    ]
    tile_start = [
        "    const long long group = batch;",
        f"    const long long first_row = group * {co // g} + (tile / col_tiles % row_tiles) * {TILE};",
        f"    const long long last_row = (group + 1) * {co // g};",
    ]
    a_value = f"value = g[(c / {pixels} * {co} + r) * {pixels} + c % {pixels}];"
    inside = f"y >= 0 && y < {h} && xx >= 0 && xx < {w}"
    b_value = (
        f"const long long image = kk / {pixels}, p = kk % {pixels};"
        f" const long long ci = group * {cg} + n / {kh * kw}, tap = n % {kh * kw};"
        f" const long long y = p / {ow} - {ph} + tap / {kw} * {dh};"
        f" const long long xx = p % {ow} - {pw} + tap % {kw} * {dw};"
        f" if ({inside}) value = x[((image * {c} + ci) * {h} + y) * {w} + xx];"
    )
    store = ["        out[row * N + col] = sums[i][j];"]
    return _tiled(k, params, setup, tile_start, a_value, b_value, store)


def _pool_backward(k: PoolBackward) -> str:
    """max_pool2d's backward: a block per plane (grid-stride) zeroes the plane, then its threads
    add each output gradient at its index (atomically: overlapping windows share inputs); an
    index outside the plane is skipped, as on the CPU."""
    t = _TYPES[k.dtype]
    _, channels, height, width = k.out_shape
    _, _, oh, ow = k.g.shape
    params = ", ".join(f"{ct} {n}" for ct, n in parameters(k))
    lines = [
        PRELUDE.strip(),
        "",
        f'extern "C" __global__ void {k.name}({params}) {{',
        f"  for (long long plane = blockIdx.x; plane < images * {channels}; plane += gridDim.x) {{",
        f"    {t}* target = out + plane * {height * width};",
        f"    for (long long i = threadIdx.x; i < {height * width}; i += blockDim.x) target[i] = 0;",
        "    __syncthreads();",
        f"    for (long long i = threadIdx.x; i < {oh * ow}; i += blockDim.x) {{",
        f"      const long long at = indices[plane * {oh * ow} + i];",
        f"      if (at >= 0 && at < {height * width}) atomicAdd(&target[at], g[plane * {oh * ow} + i]);",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _identity(expr: _Expr, op: str, dtype: dtypes.DType) -> str:
    """Where a combination with `op` starts."""
    if op == "sum":
        return expr.constant(0, dtype)
    if dtype in _FLOATS:
        return expr.constant(float("-inf") if op == "max" else float("inf"), dtype)
    return f"(({_TYPES[dtype]}){_limit(dtype, op == 'min')})"


def _combine(op: str, t: str, a: str, b: str) -> str:
    if op == "sum":
        return f"(({t})({a} + {b}))"
    return f"gc_{'maximum' if op == 'max' else 'minimum'}<{t}>({a}, {b})"


def _limit(dtype: dtypes.DType, high: bool) -> str:
    bits = dtype.itemsize * 8
    value = (1 << (bits - 1)) - 1 if high else -(1 << (bits - 1))
    return f"{value}LL" if value > -(1 << 63) else f"({value + 1}LL - 1)"


def launch_config(kernel, bindings: dict, max_blocks: int = 65535, threads: int = BLOCK) -> tuple[int, int]:
    """(blocks, threads per block) for `kernel` at these symbol sizes. Pointwise and max
    pooling: a point per thread, `threads` a block, up to `max_blocks` blocks (the grid-stride
    loop covers the rest). Reductions and row kernels: a block per row, of the power of two
    threads (32 to `threads`) nearest above the row's size. Max pooling's backward: a block of
    `threads` per plane. Matmuls and convolutions: a block of 256 threads per 64 x 64 tile."""
    from ir.types import concrete_shape

    def blocks(count: int) -> int:
        return max(1, min(max_blocks, count))

    if isinstance(kernel, PoolBackward):
        images, channels = concrete_shape(kernel.out_shape, bindings)[:2]
        return blocks(images * channels), threads
    if isinstance(kernel, ConvWeightGrad):
        co, cg, kh, kw = kernel.out_shape
        groups = kernel.groups
        return blocks(groups * -(-(co // groups) // TILE) * -(-(cg * kh * kw) // TILE)), 256
    if isinstance(kernel, Conv2d):
        images, channels, oh, ow = concrete_shape(kernel.out_shape, bindings)
        per_group = channels // kernel.groups
        return blocks(images * kernel.groups * -(-per_group // TILE) * -(-(oh * ow) // TILE)), 256
    if isinstance(kernel, Matmul):
        m, n, _, per_batch = matmul_sizes(kernel, bindings)
        batches = m // per_batch if per_batch else 1
        return blocks(batches * -(-per_batch // TILE) * -(-n // TILE)), 256
    if isinstance(kernel, Pool2d) or pointwise(kernel):
        shape = kernel.out_shape if isinstance(kernel, Pool2d) else kernel.ranges
        total = 1
        for d in concrete_shape(shape, bindings):
            total *= d
        return blocks(-(-total // threads)), threads
    axes = kernel.row_axes if kernel.stages or kernel.row_out is not None else kernel.reduce.axes
    rows = count = 1
    for d, size in enumerate(concrete_shape(kernel.ranges, bindings)):
        if d in axes:
            count *= size
        else:
            rows *= size
    per_row = 32
    while per_row < min(count, threads):
        per_row *= 2
    return blocks(rows), per_row


def matmul_sizes(kernel: Matmul, bindings: dict) -> list[int]:
    """A matmul kernel's size arguments M (all rows of a), N, K and MB (rows per matrix of b)."""
    from ir.types import concrete_shape

    a = concrete_shape(kernel.a.shape, bindings)
    depth, n = concrete_shape(kernel.b.shape, bindings)[-2:]
    rows = 1
    for d in a[:-1]:
        rows *= d
    return [rows, n, depth, a[-2] if len(a) > 1 else 1]
