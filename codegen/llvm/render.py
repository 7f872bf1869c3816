"""Render kernels as LLVM IR (llvmlite.ir).

A kernel becomes `void name(T* noalias out, T* noalias in0, ..., i64 sym0, ..., i64 lo, i64 hi)`:
a loop nest over its ranges, the outermost from lo to hi where the kernel is splittable (the
innermost is contiguous, so LLVM's loop vectorizer widens it); each input is read at
`offset + sum(i_k * stride_k)` with strides computed once from the sizes (0 where broadcast;
a view's own strides and offset); reductions combine into outputs that start at the identity,
and kernels with stages work row by row.
"""

from __future__ import annotations

import math

from llvmlite import ir

from codegen.host import matmul_tile
from codegen.kernel import (
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
    Load,
    Matmul,
    Pool2d,
    PoolBackward,
    Row,
    Take,
    Unary,
    Where,
    conv_direct_rows,
    conv_direct_segments,
    conv_path,
    expr_dtype,
    weight_grad_block,
)
from ir import dtypes

I64 = ir.IntType(64)
_FLOATS = (dtypes.float32, dtypes.float64)


def _memory_type(dtype: dtypes.DType):
    """How values of `dtype` are stored: floats as themselves, integers as iN, bools as i8."""
    if dtype in (dtypes.float32, dtypes.float64):
        return _float_type(dtype)
    if dtype is dtypes.bool_:
        return ir.IntType(8)
    if dtype in (dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.int8, dtypes.int16):
        return ir.IntType(dtype.itemsize * 8)
    raise NotImplementedError(f"the LLVM renderer has no kernels for {dtype}")


def _float_type(dtype: dtypes.DType):
    if dtype is dtypes.float32:
        return ir.FloatType()
    if dtype is dtypes.float64:
        return ir.DoubleType()
    raise NotImplementedError(f"the LLVM renderer handles float32 and float64 kernels, not {dtype}")


class _Code:
    """What every kernel's code needs: its function, scalar arithmetic in the kernel's dtype
    (with fast exp/tanh), expressions, and loops."""

    def __init__(self, module: ir.Module, name: str, dtype: dtypes.DType, args: list) -> None:
        self.module = module
        self.dtype = dtype
        self.t = _float_type(dtype)
        self.suffix = "f32" if dtype is dtypes.float32 else "f64"
        self.fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name=name)
        self.expr_inputs, self.expr_default = (), dtype  # for expr_dtype: Loads' and constants' dtypes
        self.expr_stages = ()
        self.rows: list[ir.Value] = []  # the values of Row(0), Row(1), ... for the current row

    def dtype_of(self, e: Expr) -> dtypes.DType:
        return expr_dtype(e, self.expr_inputs, self.expr_default, self.expr_stages)

    def size(self, b: ir.IRBuilder, d):
        return ir.Constant(I64, d) if isinstance(d, int) else self.sizes[d]

    def product(self, b: ir.IRBuilder, dims) -> ir.Value:
        value = ir.Constant(I64, 1)
        for d in dims:
            value = b.mul(value, self.size(b, d))
        return value

    def intrinsic(self, name: str, arity: int = 1, t=None):
        t = t or self.t
        scalar = t.element if isinstance(t, ir.VectorType) else t
        kind = "f32" if isinstance(scalar, ir.FloatType) else "f64"
        suffix = f"v{t.count}{kind}" if isinstance(t, ir.VectorType) else kind
        full = f"llvm.{name}.{suffix}"
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(t, [t] * arity), name=full)

    def libm(self, name: str, t):
        symbol = name + ("f" if isinstance(t, ir.FloatType) else "")
        existing = self.module.globals.get(symbol)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(t, [t]), name=symbol)

    def expr(self, b: ir.IRBuilder, e: Expr, load, acc: ir.Value | None = None) -> ir.Value:
        """The value of `e` at the current point; `load(i)` reads input i there, `acc` is the
        value of Acc()."""
        if isinstance(e, Load):
            return load(e.index)
        if isinstance(e, Take):
            return self.take(b, e, self.expr(b, e.at, load, acc), load)
        if isinstance(e, Row):
            return self.rows[e.index]
        if isinstance(e, Const):
            return ir.Constant(self.t, e.value)
        if isinstance(e, Index):
            return self.positions[e.axis]  # (set by the loop over that range)
        if isinstance(e, Acc):
            if acc is None:
                raise TypeError("Acc() outside a matmul epilogue")
            return acc
        if isinstance(e, Cast):
            return self.cast(b, self.expr(b, e.x, load, acc), self.dtype_of(e.x), e.dtype)
        if isinstance(e, Where):
            cond = self.expr(b, e.cond, load, acc)
            return b.select(cond, self.expr(b, e.a, load, acc), self.expr(b, e.b, load, acc))
        if isinstance(e, Unary):
            x = self.expr(b, e.x, load, acc)
            kind = self.dtype_of(e.x)
            if kind in _FLOATS:
                return self.predicate(b, e.op, x) if e.op in PREDICATES else self.unary(b, e.op, x)
            return self.integer_unary(b, e.op, x)
        if isinstance(e, Binary):
            a = self.expr(b, e.a, load, acc)
            c = self.expr(b, e.b, load, acc)
            kind = self.dtype_of(e.a)
            if e.op in COMPARE_OPS:
                return self.compare(b, e.op, a, c, kind)
            if e.op in LOGIC_OPS:
                return b.and_(a, c) if e.op == "logical_and" else b.or_(a, c)
            if kind in _FLOATS:
                return self.binary(b, e.op, a, c)
            return self.integer_binary(b, e.op, a, c)
        raise TypeError(f"unknown kernel expression {e!r}")

    def cast(self, b: ir.IRBuilder, x: ir.Value, source: dtypes.DType, target: dtypes.DType) -> ir.Value:
        """numpy's astype for the pairs the scheduler allows (not float to integer)."""
        if source is target:
            return x
        if target is dtypes.bool_:  # nonzero; NaN is True, as in numpy
            if source in _FLOATS:
                return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
            return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
        t = _memory_type(target)
        if target in _FLOATS and source in _FLOATS:
            return b.fpext(x, t) if target is dtypes.float64 else b.fptrunc(x, t)
        if target in _FLOATS:
            return b.uitofp(x, t) if not source.signed else b.sitofp(x, t)
        if not source.signed:  # bool, uint8
            return b.zext(x, t)
        return b.sext(x, t) if t.width > x.type.width else b.trunc(x, t)

    def predicate(self, b: ir.IRBuilder, op: str, x: ir.Value) -> ir.Value:
        if op == "isnan":
            return b.fcmp_unordered("uno", x, x)
        if op == "isinf":
            return b.fcmp_ordered(
                "==", b.call(self.intrinsic("fabs", 1, x.type), [x]), ir.Constant(x.type, float("inf"))
            )
        # isfinite: |x| < inf, false for NaN (an ordered comparison)
        return b.fcmp_ordered(
            "<", b.call(self.intrinsic("fabs", 1, x.type), [x]), ir.Constant(x.type, float("inf"))
        )

    def compare(self, b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, kind: dtypes.DType) -> ir.Value:
        symbol = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
        if kind in _FLOATS:  # NaN compares unequal to everything, as in numpy
            return b.fcmp_unordered(symbol, x, y) if op == "ne" else b.fcmp_ordered(symbol, x, y)
        if kind is dtypes.bool_:
            return b.icmp_unsigned(symbol, x, y)
        return b.icmp_signed(symbol, x, y)

    def integer_unary(self, b: ir.IRBuilder, op: str, x: ir.Value) -> ir.Value:
        zero = ir.Constant(x.type, 0)
        if op == "logical_not":
            return b.not_(x)
        if op == "neg":
            return b.sub(zero, x)
        if op == "abs":
            return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x)
        if op == "relu":
            return b.select(b.icmp_signed(">", x, zero), x, zero)
        raise NotImplementedError(f"integer op {op} in a kernel")

    def integer_binary(self, b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
        if op in ("add", "sub", "mul"):
            return getattr(b, op)(x, y)
        if op in ("maximum", "minimum"):
            return b.select(b.icmp_signed(">" if op == "maximum" else "<", x, y), x, y)
        if op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
            return {"bitwise_and": b.and_, "bitwise_or": b.or_, "bitwise_xor": b.xor}[op](x, y)
        if op in ("left_shift", "right_shift"):
            # numpy's: a count past the width (or negative: unsigned, past it) shifts everything
            # out, to 0 or, right, to the sign; LLVM's shifts are poison there
            bits = ir.Constant(x.type, x.type.width)
            inside = b.icmp_unsigned("<", y, bits)
            if op == "left_shift":
                return b.select(inside, b.shl(x, y), ir.Constant(x.type, 0))
            return b.select(inside, b.ashr(x, y), b.ashr(x, ir.Constant(x.type, x.type.width - 1)))
        raise NotImplementedError(f"integer op {op} in a kernel")

    def unary(self, b: ir.IRBuilder, op: str, x: ir.Value) -> ir.Value:
        """A float op on x (float or double: the helpers follow their operand's type)."""
        t = x.type
        zero, one = ir.Constant(t, 0.0), ir.Constant(t, 1.0)
        if op == "neg":
            return b.fneg(x)
        if op == "exp":
            return self.exp(b, x)
        if op == "log":
            return self.log(b, x)
        if op == "erf":
            return self.erf(b, x)
        if op in ("expm1", "log1p"):  # libm's (scalar calls): accurate near 0 where exp, log are not
            return b.call(self.libm(op, t), [x])
        if op in ("abs", "sqrt", "floor", "ceil", "trunc", "exp2", "log2", "log10", "sin", "cos"):
            # exact (floor, ceil, trunc, sqrt) or libm's (the others: scalar calls, not vectorized)
            return b.call(self.intrinsic("fabs" if op == "abs" else op, 1, t), [x])
        if op == "rsqrt":  # 1 / sqrt(x), rounded twice as numpy computes it
            return b.fdiv(one, b.call(self.intrinsic("sqrt", 1, t), [x]))
        if op == "reciprocal":
            return b.fdiv(one, x)
        if op == "tanh":
            return self.tanh(b, x)
        if op == "sigmoid":
            return b.fdiv(one, b.fadd(one, self.exp(b, b.fneg(x))))
        if op == "relu":  # numpy's maximum(x, 0): NaN stays NaN
            return b.call(self.intrinsic("maximum", 2, t), [x, zero])
        raise NotImplementedError(f"unary op {op} in a kernel")

    def masked(self, kind: str, vector: ir.VectorType) -> ir.Function:
        """LLVM's masked vector 'load' or 'store' of `vector`s (lanes past the mask are neither
        read nor written: no fault past an array's end)."""
        element = "i64" if vector.element == I64 else ("f32" if vector.element == ir.FloatType() else "f64")
        name = f"llvm.masked.{kind}.v{vector.count}{element}.p0"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        i32, mask = ir.IntType(32), ir.VectorType(ir.IntType(1), vector.count)
        if kind == "load":
            function_type = ir.FunctionType(vector, [vector.as_pointer(), i32, mask, vector])
        else:
            function_type = ir.FunctionType(ir.VoidType(), [vector, vector.as_pointer(), i32, mask])
        return ir.Function(self.module, function_type, name=name)

    def const(self, value: float, t=None) -> ir.Constant:
        return ir.Constant(t or self.t, value)

    def poly(self, b: ir.IRBuilder, x: ir.Value, coefficients: tuple[float, ...]) -> ir.Value:
        """Horner's rule, highest power first, each step one fused multiply-add."""
        acc = self.const(coefficients[0], x.type)
        for c in coefficients[1:]:
            acc = self.muladd(b, acc, x, self.const(c, x.type))
        return acc

    def muladd(self, b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
        """x * y + z, which LLVM may fuse into one FMA (one rounding instead of two): for the
        math helpers' own arithmetic only, never a graph's mul and add."""
        product = b.fmul(x, y)
        product.flags.append("contract")
        total = b.fadd(product, z)
        total.flags.append("contract")
        return total

    def exp(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        """float32: Cephes' expf in straight-line arithmetic (range reduction by ln 2, a degree-5
        polynomial, scaling by 2^n through the exponent bits), so the loop vectorizes instead of
        calling libm per element; about 1 ulp. float64 keeps LLVM's exp."""
        t = x.type
        if not isinstance(t, ir.FloatType):
            return b.call(self.intrinsic("exp", 1, t), [x])
        i32 = ir.IntType(32)
        clamped = b.call(
            self.intrinsic("minnum", 2, t),
            [b.call(self.intrinsic("maxnum", 2, t), [x, self.const(-104.0, t)]), self.const(89.0, t)],
        )
        n = b.call(
            self.intrinsic("floor", 1, t),
            [self.muladd(b, clamped, self.const(1.44269504088896341, t), self.const(0.5, t))],
        )
        # x - n ln 2, with ln 2 in two parts (Cody and Waite): the first n * part is exact
        r = self.muladd(b, n, self.const(-0.693359375, t), clamped)
        r = self.muladd(b, n, self.const(2.12194440e-4, t), r)
        p = self.poly(
            b,
            r,
            (
                1.9875691500e-4,
                1.3981999507e-3,
                8.3334519073e-3,
                4.1665795894e-2,
                1.6666665459e-1,
                5.0000001201e-1,
            ),
        )
        y = b.fadd(self.muladd(b, p, b.fmul(r, r), r), self.const(1.0, t))
        k = b.fptosi(n, i32)  # in [-150, 128]: scale in two halves so neither leaves float range
        k1 = b.ashr(k, ir.Constant(i32, 1))
        k2 = b.sub(k, k1)
        for part in (k1, k2):
            bits = b.shl(b.add(part, ir.Constant(i32, 127)), ir.Constant(i32, 23))
            y = b.fmul(y, b.bitcast(bits, t))
        return b.select(b.fcmp_unordered("uno", x, x), x, y)

    def log(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        """float32: Cephes' logf in straight-line arithmetic (x = m 2^e with m in [sqrt(1/2),
        sqrt(2)) from the exponent bits, then log(m) by a degree-8 polynomial in m - 1), so the
        loop vectorizes; about 1 ulp. Zero gives -inf, negatives NaN, subnormals are scaled
        first. float64 keeps LLVM's log."""
        t = x.type
        if not isinstance(t, ir.FloatType):
            return b.call(self.intrinsic("log", 1, t), [x])
        i32 = ir.IntType(32)
        c32 = lambda v: ir.Constant(i32, v)  # noqa: E731
        tiny = b.fcmp_ordered("<", x, self.const(1.17549435e-38, t))  # subnormal (or zero, negative)
        scaled = b.select(tiny, b.fmul(x, self.const(8388608.0, t)), x)  # 2^23
        bits = b.bitcast(scaled, i32)
        exponent = b.sub(b.lshr(bits, c32(23)), b.select(tiny, c32(126 + 23), c32(126)))
        m = b.bitcast(b.or_(b.and_(bits, c32(0x007FFFFF)), c32(0x3F000000)), t)  # in [0.5, 1)
        low = b.fcmp_ordered("<", m, self.const(0.707106781186547524, t))
        e = b.sitofp(b.sub(exponent, b.zext(low, i32)), t)
        f = b.fsub(b.select(low, b.fadd(m, m), m), self.const(1.0, t))
        z = b.fmul(f, f)
        p = self.poly(
            b,
            f,
            (
                7.0376836292e-2,
                -1.1514610310e-1,
                1.1676998740e-1,
                -1.2420140846e-1,
                1.4249322787e-1,
                -1.6668057665e-1,
                2.0000714765e-1,
                -2.4999993993e-1,
                3.3333331174e-1,
            ),
        )
        y = self.muladd(b, e, self.const(-2.12194440e-4, t), b.fmul(b.fmul(f, z), p))
        y = self.muladd(b, z, self.const(-0.5, t), y)
        y = self.muladd(b, e, self.const(0.693359375, t), b.fadd(f, y))
        zero, inf = self.const(0.0, t), self.const(float("inf"), t)
        y = b.select(b.fcmp_ordered("==", x, inf), inf, y)
        y = b.select(b.fcmp_ordered("<", x, zero), self.const(float("nan"), t), y)
        y = b.select(b.fcmp_ordered("==", x, zero), self.const(float("-inf"), t), y)
        return b.select(b.fcmp_unordered("uno", x, x), x, y)

    def erf(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        """float32: erf(x) = x + x P(x^2) below 1, 1 - exp(-x^2) Q(1/|x|) from 1 to 4 (with the
        sign of x), 1 beyond (erfc(4) is below half an ulp of 1); minimax-style fits made for
        graphc (Chebyshev nodes, least squares) against the interpreter's fdlibm erf, within 2 ulp
        measured over [0, 5] in float32 (tested). Both branches are computed and one selected,
        so the loop vectorizes. float64 calls libm's erf."""
        t = x.type
        if not isinstance(t, ir.FloatType):
            return b.call(self.libm("erf", t), [x])
        ax = b.call(self.intrinsic("fabs", 1, t), [x])
        square = b.fmul(x, x)
        p = self.poly(
            b,
            square,
            (
                7.933493907330558e-05,
                -0.0008034846396185458,
                0.005191218573600054,
                -0.02685539983212948,
                0.11283625662326813,
                -0.3761262893676758,
                0.12837916612625122,
            ),
        )
        small = self.muladd(b, x, p, x)
        one = self.const(1.0, t)
        u = b.fdiv(one, b.call(self.intrinsic("maxnum", 2, t), [ax, one]))
        q = self.poly(
            b,
            u,
            (
                -0.008870461955666542,
                0.02566220797598362,
                0.029909562319517136,
                -0.24920636415481567,
                0.5021981596946716,
                -0.47395259141921997,
                0.04260836914181709,
                0.5589597225189209,
                0.000274948455626145,
            ),
        )
        large = self.muladd(b, b.fneg(self.exp(b, b.fneg(square))), q, one)
        large = b.select(b.fcmp_ordered(">=", ax, self.const(4.0, t)), one, large)
        large = b.call(self.intrinsic("copysign", 2, t), [large, x])
        result = b.select(b.fcmp_ordered("<", ax, one), small, large)
        return b.select(b.fcmp_unordered("uno", x, x), x, result)

    def tanh(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        """float32: the odd rational minimax approximation of Eigen (and ONNX Runtime's MLAS, and
        XLA): x P(x^2) / Q(x^2) of degrees 13 and 6 for |x| < 7.9053, +-1 beyond — 11 fused
        multiply-adds and a division, no exp (twice as fast as 1 - 2/(e^2x + 1)); within 2.8e-7
        absolute and relative (5 ulp), odd, so tiny x keep their relative accuracy. NaN stays
        NaN. float64 calls libm's tanh."""
        t = x.type
        if not isinstance(t, ir.FloatType):
            return b.call(self.libm("tanh", t), [x])
        bound = 7.90531110763549805
        clamped = b.call(
            self.intrinsic("minnum", 2, t),
            [b.call(self.intrinsic("maxnum", 2, t), [x, self.const(-bound, t)]), self.const(bound, t)],
        )
        s = b.fmul(clamped, clamped)
        p = self.poly(
            b,
            s,
            (
                -2.76076847742355e-16,
                2.00018790482477e-13,
                -8.60467152213735e-11,
                5.12229709037114e-08,
                1.48572235717979e-05,
                6.37261928875436e-04,
                4.89352455891786e-03,
            ),
        )
        q = self.poly(
            b, s, (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
        )
        result = b.fdiv(b.fmul(clamped, p), q)
        # past the bound the quotient stays 4 ulp short of 1: tanh is +-1 there (and at inf)
        one = b.call(self.intrinsic("copysign", 2, t), [self.const(1.0, t), x])
        result = b.select(
            b.fcmp_ordered(">=", b.call(self.intrinsic("fabs", 1, t), [x]), self.const(bound, t)), one, result
        )
        return b.select(b.fcmp_unordered("uno", x, x), x, result)

    def combine(self, b: ir.IRBuilder, op: str, acc: ir.Value, value: ir.Value) -> ir.Value:
        """One step of a reduction. Sums may be reassociated (so they vectorize: the order of
        additions differs from numpy's pairwise sum by rounding); max and min propagate NaN."""
        if isinstance(acc.type, ir.IntType):
            if op == "sum":
                return b.add(acc, value)
            return b.select(b.icmp_signed(">" if op == "max" else "<", acc, value), acc, value)
        if op == "sum":
            total = b.fadd(acc, value)
            total.flags.append("reassoc")
            return total
        return b.call(self.intrinsic("maximum" if op == "max" else "minimum", 2, acc.type), [acc, value])

    def binary(self, b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
        if op == "add":
            return b.fadd(x, y)
        if op == "sub":
            return b.fsub(x, y)
        if op == "mul":
            return b.fmul(x, y)
        if op == "div":
            return b.fdiv(x, y)
        if op in ("maximum", "minimum"):  # NaN-propagating, like numpy
            return b.call(self.intrinsic(op, 2, x.type), [x, y])
        raise NotImplementedError(f"binary op {op} in a kernel")

    def _flat_loop(self, b: ir.IRBuilder, start, stop, label: str, body, step=1) -> None:
        """for i in range(start, stop, step): body(b, i); leaves `b` after the loop."""
        head = self.fn.append_basic_block(f"{label}_loop")
        inner = self.fn.append_basic_block(f"{label}_body")
        done = self.fn.append_basic_block(f"{label}_done")
        before = b.block
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=f"{label}_i")
        i.add_incoming(start, before)
        b.cbranch(b.icmp_signed("<", i, stop), inner, done)
        b.position_at_end(inner)
        body(b, i)
        i.add_incoming(b.add(i, step if isinstance(step, ir.Value) else ir.Constant(I64, step)), b.block)
        b.branch(head)
        b.position_at_end(done)


class _Emitter(_Code):
    """An elementwise or reduction `Kernel`, or one that works row by row through stages."""

    def __init__(self, module: ir.Module, kernel: Kernel) -> None:
        # the one float dtype the kernel computes in (the scheduler allows one), float32 if none
        floats = [d for d in (kernel.dtype, *(x.dtype for x in kernel.inputs)) if d in _FLOATS]
        compute = floats[0] if floats else dtypes.float32
        stored = [kernel.dtype, *(x.dtype or kernel.dtype for x in kernel.inputs)]
        # then `lo, hi`: the part of the outermost range this call covers (calls on disjoint parts
        # may run on different threads)
        # (a kernel that reads by index also takes a status word: set when an index is out of range)
        status = [I64.as_pointer()] if kernel.checked else []
        args = [_memory_type(d).as_pointer() for d in stored] + status + [I64] * (len(kernel.symbols) + 2)
        super().__init__(module, kernel.name, compute, args)
        self.kernel = kernel
        self.expr_inputs, self.expr_default, self.expr_stages = kernel.inputs, kernel.dtype, kernel.stages
        for a in self.fn.args[: 1 + len(kernel.inputs)]:
            a.add_attribute("noalias")
        self.out = self.fn.args[0]
        self.ins = self.fn.args[1 : 1 + len(kernel.inputs)]
        self.status = self.fn.args[1 + len(kernel.inputs)] if kernel.checked else None
        first_size = 1 + len(kernel.inputs) + len(status)
        self.sizes = dict(zip(kernel.symbols, self.fn.args[first_size:-2], strict=True))
        self.lo, self.hi = self.fn.args[-2:]
        self.positions: dict[int, ir.Value] = {}  # the loop counter of each range, in its loop

    def take(self, b: ir.IRBuilder, e: Take, at: ir.Value, load) -> ir.Value:
        """Input e.index moved along its gathered axis to index `at`; an index outside the axis
        reads its first element and sets the status word."""
        stride, size = self.kernel.inputs[e.index].gather
        kind = self.dtype_of(e.at)
        if at.type.width < 64:
            at = b.zext(at, I64) if kind.np.kind == "u" else b.sext(at, I64)
        inside = b.icmp_unsigned("<", at, self.size(b, size))
        with b.if_then(b.not_(inside), likely=False):
            b.store_atomic(ir.Constant(I64, 1), self.status, "monotonic", 8)
        at = b.select(inside, at, ir.Constant(I64, 0))
        if stride == 0:  # (an input expanded along the axis: every index reads the same value)
            return load(e.index, None)
        return load(e.index, b.mul(at, self.product(b, stride)))

    def identity(self, op: str, dtype: dtypes.DType) -> ir.Constant:
        """Where a combination with `op` starts."""
        if dtype in _FLOATS:
            return ir.Constant(
                _float_type(dtype), {"sum": 0.0, "max": float("-inf"), "min": float("inf")}[op]
            )
        bits = dtype.itemsize * 8
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return ir.Constant(ir.IntType(bits), {"sum": 0, "max": low, "min": high}[op])

    def emit(self) -> None:
        k = self.kernel
        entry = self.fn.append_basic_block("entry")
        b = ir.IRBuilder(entry)
        bounds = [self.size(b, d) for d in k.ranges]
        strides = []
        for i in range(len(k.inputs)):
            strides.append([0 if s == 0 else self.product(b, s) for s in k.strides(i)])
        out_strides = [0 if s == 0 else self.product(b, s) for s in k.out_strides()]
        strides.append(out_strides)
        base = []  # where each buffer's first element is: views start at their offset
        for i in range(len(k.inputs)):
            offset = ir.Constant(I64, 0)
            for term in k.offset(i):
                offset = b.add(offset, self.product(b, term))
            base.append(offset)
        base.append(ir.Constant(I64, 0))
        if k.stages:
            self._rows(b, bounds, strides, base)
            b.ret_void()
            return
        if k.splittable:  # this call's outputs: the rows lo..hi of the outermost range
            first, last = b.mul(self.lo, out_strides[0]), b.mul(self.hi, out_strides[0])
        else:
            first, last = ir.Constant(I64, 0), self.product(b, k.out_shape)
        if k.reduce is not None:  # start every output at the combination's identity
            identity = self.identity(k.reduce.op, k.dtype)
            self._flat_loop(b, first, last, "init", lambda b, i: b.store(identity, b.gep(self.out, [i])))

        def point(b, offsets):
            value = self.expr(b, k.body, lambda i, extra=None: self._load(b, i, offsets[i], extra))
            slot = b.gep(self.out, [offsets[-1]], inbounds=True)
            if k.reduce is not None:
                value = self.cast(b, value, self.dtype_of(k.body), k.dtype)  # int32 sums into int64
                value = self.combine(b, k.reduce.op, b.load(slot), value)
            self._store(b, value, slot)

        self._loops(b, list(range(len(bounds))), bounds, strides, point, k.splittable, base)
        if k.reduce is not None and k.reduce.mean:
            combined = self.product(b, [k.ranges[a] for a in k.reduce.axes])
            scale = b.fdiv(self.const(1.0), b.sitofp(combined, self.t))  # 0 values: inf, and 0 * inf is NaN

            def divide(b, i):
                slot = b.gep(self.out, [i])
                b.store(b.fmul(b.load(slot), scale), slot)

            self._flat_loop(b, first, last, "mean", divide)
        b.ret_void()

    def _load(self, b: ir.IRBuilder, i: int, offset, extra=None) -> ir.Value:
        """Input i at `offset` (plus `extra`: a gather's move; bools: i8 in memory, i1 in
        registers)."""
        if extra is not None:
            offset = b.add(offset, extra)
        value = b.load(b.gep(self.ins[i], [offset], inbounds=True))
        if (self.kernel.inputs[i].dtype or self.kernel.dtype) is dtypes.bool_:
            value = b.icmp_unsigned("!=", value, ir.Constant(ir.IntType(8), 0))
        return value

    def _store(self, b: ir.IRBuilder, value: ir.Value, slot) -> None:
        if self.kernel.dtype is dtypes.bool_:
            value = b.zext(value, ir.IntType(8))
        b.store(value, slot)

    def _loops(self, b, dims: list[int], bounds, strides, body, split: bool, base) -> None:
        """Loops over `dims` of the ranges, outermost first (the first from lo to hi where
        `split`), calling body(b, offsets) with each buffer's offset (inputs, then the output)
        from `base` on; leaves `b` after the loops."""
        if not dims:
            body(b, base)
            return
        d = dims[0]

        def step(b, i):
            self.positions[d] = i  # (Index(d) in the body)
            pairs = zip(strides, base, strict=True)
            offsets = [start if s[d] == 0 else b.add(start, b.mul(i, s[d])) for s, start in pairs]
            self._loops(b, dims[1:], bounds, strides, body, False, offsets)

        start, stop = (self.lo, self.hi) if split else (ir.Constant(I64, 0), bounds[d])
        self._flat_loop(b, start, stop, f"dim{d}", step)

    def _rows(self, b: ir.IRBuilder, bounds, strides, base) -> None:
        """The loops of a kernel with stages: per row, each stage's combination over the row,
        then the body over the row (or its combination, stored once per row)."""
        k = self.kernel
        axes = list(k.row_axes)
        outer = [d for d in range(len(k.ranges)) if d not in axes]
        size = self.product(b, [k.ranges[a] for a in axes])
        combined = [*((s.op, s.body, s.dtype, s.mean) for s in k.stages)]
        if k.reduce is not None:
            combined.append((k.reduce.op, k.body, k.dtype, k.reduce.mean))
        # accumulators in the entry block, where LLVM turns them into registers
        slots = [b.alloca(_memory_type(dtype)) for _, _, dtype, _ in combined]

        def row(b, base):
            self.rows = []
            for (op, body, dtype, mean), slot in zip(combined, slots, strict=True):
                b.store(self.identity(op, dtype), slot)

                def point(b, offsets, op=op, body=body, dtype=dtype, slot=slot):
                    value = self.expr(b, body, lambda i, extra=None: self._load(b, i, offsets[i], extra))
                    value = self.cast(b, value, self.dtype_of(body), dtype)  # int32 sums into int64
                    b.store(self.combine(b, op, b.load(slot), value), slot)

                self._loops(b, axes, bounds, strides, point, False, base)
                for a in axes:  # (the row's loop counters end with its loops)
                    self.positions.pop(a, None)
                value = b.load(slot)
                if mean:
                    value = b.fdiv(value, b.sitofp(size, value.type))
                self.rows.append(value)
            if k.reduce is not None:  # the last combination is the output
                self._store(b, self.rows.pop(), b.gep(self.out, [base[-1]], inbounds=True))
                return
            if k.row_out is not None:  # the body once, from the row's results
                value = self.expr(b, k.body, lambda i, extra=None: self._load(b, i, base[i], extra))
                self._store(b, value, b.gep(self.out, [base[-1]], inbounds=True))
                return

            def point(b, offsets):
                value = self.expr(b, k.body, lambda i, extra=None: self._load(b, i, offsets[i], extra))
                self._store(b, value, b.gep(self.out, [offsets[-1]], inbounds=True))

            self._loops(b, axes, bounds, strides, point, False, base)

        self._loops(b, outer, bounds, strides, row, k.splittable, base)


# Cache blocking of the matmul: KC values of the reduced dim per pass (a B panel, KC x NR, stays
# in L2), MC rows per block (the A rows a panel is reused for).
MATMUL_KC = 256
MATMUL_MC = 120


class _Gemm(_Code):
    """Blocked matrix products: `gemm` emits C = epilogue(A @ B) for row-major A (rows of `lda`
    values), B packed in panels of NR columns ([panels][K][NR], zero-padded) and C with rows
    of `ldc` values.

    Loops: KC-slices of K, MC-blocks of rows, NR-panels of columns, MR-blocks of rows; the
    micro-kernel keeps an MR x NR block of accumulators in vector registers (one broadcast of
    `a` and NR/lanes vector loads of `b` per MR*NR/lanes fused multiply-adds; a variant for
    each row count below MR, so a single row costs one row), writes it to a tile on the stack,
    and a merge loop adds it to C — through the epilogue after the last slice."""

    SIZES = 0  # the i64 arguments after the pointers (out, two operands, the epilogue's extras)

    def __init__(self, module: ir.Module, kernel, vector_bits: int) -> None:
        t = _float_type(kernel.dtype)
        self.pointers = self.pointer_types(kernel, t)
        super().__init__(module, kernel.name, kernel.dtype, [*self.pointers, *[I64] * self.SIZES])
        self.kernel = kernel
        self.expr_inputs = kernel.extras  # the epilogue's operands
        for a in self.fn.args[: len(self.pointers)]:
            a.add_attribute("noalias")
        self.setup(vector_bits)

    def pointer_types(self, kernel, t) -> list:
        """The types of the pointer arguments: out, the two operands, the epilogue's extras."""
        return [t.as_pointer()] * (3 + len(kernel.extras))

    def setup(self, vector_bits: int) -> None:
        self.mr, self.lanes, self.nv = matmul_tile(self.dtype, vector_bits)
        assert MATMUL_MC % self.mr == 0  # (a block of rows is at most MC: gemm's buffer for A)
        self.nr = self.lanes * self.nv
        self.vec = ir.VectorType(self.t, self.lanes)
        self.item = 4 if self.dtype is dtypes.float32 else 8

    def entry(self) -> ir.IRBuilder:
        b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        tile = b.alloca(ir.ArrayType(self.t, self.mr * self.nr), name="tile")
        tile.align = 64
        i32 = ir.IntType(32)
        self.tile = b.gep(tile, [ir.Constant(i32, 0), ir.Constant(i32, 0)])
        return b

    def _helper(self, name: str, args: list) -> ir.Function:
        """An internal, never inlined `void name(args)` (a micro-kernel: optimized once, kept
        out of line), its pointer arguments marked noalias."""
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), args), name=name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        for a in fn.args:
            if isinstance(a.type, ir.PointerType):
                a.add_attribute("noalias")
        return fn

    def _libc(self, name: str, ret, args) -> ir.Function:
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(ret, args), name=name)

    def _aligned(self, b: ir.IRBuilder, count) -> tuple[ir.Value, ir.Value]:
        """A buffer of `count` (an i64 value) elements on 64-byte boundaries (vector loads of a
        packed panel never straddle two cache lines): (the raw pointer to free, the typed one)."""
        bytes_ = ir.IntType(8).as_pointer()
        size = b.mul(b.add(count, ir.Constant(I64, 64 // self.item - 1)), ir.Constant(I64, self.item))
        size = b.and_(size, ir.Constant(I64, -64))  # (aligned_alloc wants a multiple of the alignment)
        raw = b.call(self._libc("aligned_alloc", bytes_, [I64, I64]), [ir.Constant(I64, 64), size])
        return raw, b.bitcast(raw, self.t.as_pointer())

    def _masked(self) -> tuple[ir.Function, ir.Function]:
        """LLVM's masked vector load and store for this kernel's vectors (lanes past the mask
        are neither read nor written: no fault past an array's end)."""
        return self.masked("load", self.vec), self.masked("store", self.vec)

    def _broadcast(self, b: ir.IRBuilder, value: ir.Value) -> ir.Value:
        """A vector of `value` in every lane."""
        i32 = ir.IntType(32)
        undef = ir.Constant(self.vec, ir.Undefined)
        lane0 = b.insert_element(undef, value, ir.Constant(i32, 0))
        return b.shuffle_vector(lane0, undef, ir.Constant(ir.VectorType(i32, self.lanes), [0] * self.lanes))

    def _accumulate(self, fn: ir.Function, b: ir.IRBuilder, count: int, depth, step) -> list:
        """The micro-kernels' loop: k from 0 to `depth` carrying `count` vector accumulators from
        zero, step(b, k, accumulators) giving their next values; leaves `b` after the loop and
        returns the accumulators' final values."""
        zero = ir.Constant(self.vec, [0.0] * self.lanes)
        before = b.block
        head = fn.append_basic_block("k_loop")
        body = fn.append_basic_block("k_body")
        done = fn.append_basic_block("k_done")
        b.branch(head)
        b.position_at_end(head)
        kk = b.phi(I64, name="k")
        kk.add_incoming(ir.Constant(I64, 0), before)
        accs = []
        for _ in range(count):
            acc = b.phi(self.vec)
            acc.add_incoming(zero, before)
            accs.append(acc)
        b.cbranch(b.icmp_signed("<", kk, depth), body, done)
        b.position_at_end(body)
        updated = step(b, kk, accs)
        kk.add_incoming(b.add(kk, ir.Constant(I64, 1)), b.block)
        for acc, new in zip(accs, updated, strict=True):
            acc.add_incoming(new, b.block)
        b.branch(head)
        b.position_at_end(done)
        return accs

    def _masked_copy(self, b: ir.IRBuilder, dest, source, count) -> None:
        """dest[0:count] = source[0:count] (zeros where source is None), a vector of lanes at a
        time with masked loads and stores for the last: no libc memcpy/memset call per run."""
        vec = self.vec
        i32 = ir.IntType(32)
        load, store = self._masked()
        iota = ir.Constant(ir.VectorType(I64, self.lanes), list(range(self.lanes)))
        zero = ir.Constant(vec, [0.0] * self.lanes)
        align = ir.Constant(i32, self.item)
        undef = ir.Constant(ir.VectorType(I64, self.lanes), ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, self.lanes), [0] * self.lanes)

        def chunk(b, t):
            left = b.insert_element(undef, b.sub(count, t), ir.Constant(i32, 0))
            mask = b.icmp_signed("<", iota, b.shuffle_vector(left, undef, splat))
            to = b.bitcast(b.gep(dest, [t], inbounds=True), vec.as_pointer())
            value = zero
            if source is not None:
                value = b.call(load, [b.bitcast(b.gep(source, [t]), vec.as_pointer()), align, mask, zero])
            b.call(store, [value, to, align, mask])

        self._flat_loop(b, ir.Constant(I64, 0), count, "chunk", chunk, step=self.lanes)

    def _pad_image(self, b: ir.IRBuilder, padded, x, img, image_shape, padding, rows=None) -> None:
        """Image `img` of x (N, C, H, W) into the middle of the zeroed planes `padded`
        (C, H + 2 * ph, W + 2 * pw): their borders stay zero. `rows`: (first, end) of the
        image's rows to copy (default: all)."""
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        channels, h, w = image_shape
        ph, pw = padding
        height, width = h + 2 * ph, w + 2 * pw
        first, end = rows or (c64(0), c64(h))

        def channel_(b, channel):
            def copy_row(b, y):
                row = b.add(b.mul(channel, c64(height)), b.add(y, c64(ph)))
                start = b.mul(b.add(b.mul(b.add(b.mul(img, c64(channels)), channel), c64(h)), y), c64(w))
                to = b.add(b.mul(row, c64(width)), c64(pw))
                self._masked_copy(b, b.gep(padded, [to]), b.gep(x, [start]), c64(w))

            self._flat_loop(b, first, end, "pad_rows", copy_row)

        self._flat_loop(b, c64(0), c64(channels), "pad_channels", channel_)

    def gemm(
        self, b: ir.IRBuilder, *, a, lda, lo, hi, bp, n, k, c, ldc, epilogue, extra, a_step=1, fill_a=None
    ) -> None:
        """Rows lo..hi of C (n columns) = epilogue(A @ B) over k; `extra(b, i, row, col)` reads
        epilogue operand i at a point of C. A's rows are `lda` apart, its columns `a_step` (an
        int: 1 for rows in place, else a view such as a transpose). With `fill_a(b, dest,
        first, last, pc, kc)` A is not read but computed: that call writes A's rows
        first..last, columns pc..pc+kc, into `dest` (rows of kc values), once per block of rows
        and slice of K, and every panel reads them there."""
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        block_a = None
        if fill_a is not None:  # a block of A's rows, computed (MC x KC values at most)
            raw, block_a = self._aligned(b, c64(MATMUL_MC * MATMUL_KC))

        def smaller(b, x, y):
            return b.select(b.icmp_signed("<", x, y), x, y)

        # row blocks of at most MC rows, as even as multiples of MR allow
        count = b.sub(hi, lo)
        blocks = b.sdiv(b.add(count, c64(MATMUL_MC - 1)), c64(MATMUL_MC))
        blocks = b.select(b.icmp_signed(">", blocks, c64(0)), blocks, c64(1))
        mc = b.sdiv(b.add(count, b.sub(blocks, c64(1))), blocks)
        mc = b.mul(b.sdiv(b.add(mc, c64(self.mr - 1)), c64(self.mr)), c64(self.mr))
        mc = b.select(b.icmp_signed(">", mc, c64(0)), mc, c64(self.mr))

        def slice_(b, pc):
            kc = smaller(b, c64(MATMUL_KC), b.sub(k, pc))
            first = b.icmp_signed("==", pc, c64(0))
            last = b.icmp_signed("==", b.add(pc, kc), k)

            def block(b, ic):
                end = smaller(b, b.add(ic, mc), hi)
                if block_a is not None:
                    fill_a(b, block_a, ic, end, pc, kc)

                def panel(b, jr):
                    panel_b = b.gep(bp, [b.add(b.mul(jr, k), b.mul(pc, c64(self.nr)))], inbounds=True)
                    cols = smaller(b, c64(self.nr), b.sub(n, jr))

                    def rows_(b, row0):
                        rows = smaller(b, c64(self.mr), b.sub(end, row0))
                        if block_a is None:
                            self.micro(b, a, lda, row0, rows, pc, kc, panel_b, a_step)
                        else:
                            self.micro(b, block_a, kc, b.sub(row0, ic), rows, c64(0), kc, panel_b)
                        self.merge(b, c, ldc, row0, rows, jr, cols, first, last, epilogue, extra)

                    self._flat_loop(b, ic, end, "ir", rows_, step=self.mr)

                self._flat_loop(b, c64(0), n, "jr", panel, step=self.nr)

            self._flat_loop(b, lo, hi, "ic", block, step=mc)

        # K = 0 still makes one pass: the product is zeros, and the epilogue runs
        stop = b.select(b.icmp_signed(">", k, c64(0)), k, c64(1))
        self._flat_loop(b, c64(0), stop, "pc", slice_, step=MATMUL_KC)
        if block_a is not None:
            b.call(self._libc("free", ir.VoidType(), [ir.IntType(8).as_pointer()]), [raw])

    def micro(self, b: ir.IRBuilder, a, lda, row0, rows, pc, kc, bp, a_step: int = 1) -> None:
        """Rows row0..row0+rows (at most MR) x NR columns, summed over kc values from pc, into
        the tile: one variant per row count, picked by a switch."""
        after = self.fn.append_basic_block("micro_done")
        variants = [self.fn.append_basic_block(f"micro{r}") for r in range(1, self.mr + 1)]
        switch = b.switch(rows, variants[-1])
        for r, block in enumerate(variants[:-1], start=1):
            switch.add_case(ir.Constant(I64, r), block)
        for r, block in enumerate(variants, start=1):
            b.position_at_end(block)
            b.call(self.micro_function(r, a_step), [a, lda, row0, pc, kc, bp, self.tile])
            b.branch(after)
        b.position_at_end(after)

    def micro_function(self, count: int, a_step: int = 1) -> ir.Function:
        """The micro-kernel for `count` rows, shared by every kernel of the module (and kept out
        of line, so it is optimized once): (a, lda, row0, pc, kc, b panel, tile); A's columns
        `a_step` apart."""
        strided = "" if a_step == 1 else f".s{a_step}"
        name = f"graphc.micro.{self.suffix}.{self.lanes}x{self.nv}.r{count}{strided}"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        ptr = self.t.as_pointer()
        fn = self._helper(name, [ptr, I64, I64, I64, I64, ptr, ptr])
        a, lda, row0, pc, kc, bp, tile = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        rows = []
        step_ = ir.Constant(I64, a_step)
        for i in range(count):
            r = b.add(row0, ir.Constant(I64, i))
            rows.append(b.gep(a, [b.add(b.mul(r, lda), b.mul(pc, step_))], inbounds=True))
        fma = self.intrinsic("fma", 3, self.vec)
        vptr = self.vec.as_pointer()

        def step(b, kk, accs):
            at = b.mul(kk, ir.Constant(I64, self.nr))
            bvecs = []
            for v in range(self.nv):
                slot = b.gep(bp, [b.add(at, ir.Constant(I64, v * self.lanes))], inbounds=True)
                bvecs.append(b.load(b.bitcast(slot, vptr), align=self.item))
            updated = []
            for i in range(count):
                at = kk if a_step == 1 else b.mul(kk, step_)
                broadcast = self._broadcast(b, b.load(b.gep(rows[i], [at], inbounds=True)))
                for v in range(self.nv):
                    updated.append(b.call(fma, [broadcast, bvecs[v], accs[i * self.nv + v]]))
            return updated

        accs = self._accumulate(fn, b, count * self.nv, kc, step)
        for i in range(count):
            for v in range(self.nv):
                slot = b.gep(tile, [ir.Constant(I64, i * self.nr + v * self.lanes)], inbounds=True)
                b.store(accs[i * self.nv + v], b.bitcast(slot, vptr), align=64)
        b.ret_void()
        return fn

    def merge(self, b: ir.IRBuilder, c, ldc, row0, rows, col0, cols, first, last, epilogue, extra) -> None:
        """C[rows, cols] = tile (first slice) or C + tile, through the epilogue after the last."""
        final = self.fn.append_basic_block("final")
        partial = self.fn.append_basic_block("partial")
        joined = self.fn.append_basic_block("merged")
        b.cbranch(last, final, partial)
        for block, apply in ((final, True), (partial, False)):
            b.position_at_end(block)

            def row(b, i, apply=apply):
                r = b.add(row0, i)
                out = b.gep(c, [b.add(b.mul(r, ldc), col0)], inbounds=True)
                tile = b.gep(self.tile, [b.mul(i, ir.Constant(I64, self.nr))], inbounds=True)

                def column(b, j):
                    slot = b.gep(out, [j], inbounds=True)
                    value = b.load(b.gep(tile, [j], inbounds=True))
                    value = b.select(first, value, b.fadd(value, b.load(slot)))
                    if apply:
                        col = b.add(col0, j)
                        value = self.expr(b, epilogue, lambda x: extra(b, x, r, col), value)
                    b.store(value, slot)

                self._flat_loop(b, ir.Constant(I64, 0), cols, "j", column)

            self._flat_loop(b, ir.Constant(I64, 0), rows, "i", row)
            b.branch(joined)
        b.position_at_end(joined)


class _MatmulEmitter(_Gemm):
    """`void name(T* out, T* a, T* b, T* extras..., i64 M, i64 N, i64 K, i64 MB, i64 lo, i64 hi)`:
    rows lo..hi (of all M rows) of epilogue(a @ b), a read in place (rows of K values); b packed
    by the caller (`pack_matmul_b`), or with `pack_b` read as it is ((..., K, N), a matrix per
    MB rows when batched) and packed by the kernel into a buffer of its own, per batch, the
    columns this call computes."""

    SIZES = 6  # M, N, K, rows per batch, lo, hi

    def pointer_types(self, kernel, t) -> list:
        """out, then the operands in `kernel.operands` order (a prologue's inputs in their dtypes)."""
        return [
            t.as_pointer(),
            *(_memory_type(x.dtype or kernel.dtype).as_pointer() for x in kernel.operands),
        ]

    def emit(self) -> None:
        self._emit(by_columns=False)
        # `<name>.cols`: the same arguments, but lo..hi are panels of NR columns and every row
        # is computed: the split for few rows (a batch of one is a matrix-vector product)
        self.fn = ir.Function(self.module, self.fn.function_type, name=f"{self.kernel.name}.cols")
        for a in self.fn.args[: len(self.pointers)]:
            a.add_attribute("noalias")
        self._emit(by_columns=True)

    def _fill_a(self, inputs: list, k):
        """`gemm`'s fill_a for the kernel's prologue: A's values computed from `inputs` (pointer
        arguments), rows of `k` values, one element at a time along a row (a loop LLVM's
        vectorizer widens)."""
        kernel = self.kernel
        strides = [kernel.prologue_strides(i) for i in range(len(inputs))]

        def fill(b, dest, first, last, pc, kc):
            def row(b, r):
                at = b.gep(dest, [b.mul(b.sub(r, first), kc)], inbounds=True)

                def column(b, j):
                    col = b.add(pc, j)

                    def load(i):
                        rs, cs = strides[i]
                        offset = ir.Constant(I64, 0)
                        if rs:
                            offset = b.mul(r, k if rs == "n" else ir.Constant(I64, 1))
                        if cs:
                            offset = b.add(offset, col)
                        value = b.load(b.gep(inputs[i], [offset], inbounds=True))
                        if kernel.prologue_inputs[i].dtype is dtypes.bool_:  # (i8 in memory)
                            value = b.icmp_unsigned("!=", value, ir.Constant(ir.IntType(8), 0))
                        return value

                    saved, self.expr_inputs = self.expr_inputs, kernel.prologue_inputs
                    value = self.expr(b, kernel.prologue, load)
                    self.expr_inputs = saved
                    b.store(value, b.gep(at, [j], inbounds=True))

                self._flat_loop(b, ir.Constant(I64, 0), kc, "a_col", column)

            self._flat_loop(b, first, last, "a_row", row)

        return fill

    def _emit(self, by_columns: bool) -> None:
        b = self.entry()
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        c, a, bp = self.fn.args[:3]
        extras = self.fn.args[3 : 3 + len(self.kernel.extras)]
        m, n, k, per_batch, lo, hi = self.fn.args[-6:]
        fill_a = None
        if self.kernel.prologue is not None:
            fill_a = self._fill_a([a, *self.fn.args[3 + len(extras) : len(self.pointers)]], k)
        first_col = c64(0)
        if by_columns:
            first_col = b.mul(lo, c64(self.nr))
            last_col = b.mul(hi, c64(self.nr))
            last_col = b.select(b.icmp_signed("<", last_col, n), last_col, n)
            if not self.kernel.pack_b:
                bp = b.gep(bp, [b.mul(first_col, k)], inbounds=True)
            c = b.gep(c, [first_col], inbounds=True)
            cols, lo, hi = b.sub(last_col, first_col), c64(0), m
        else:
            cols = n

        def extra(b, index, row, col):
            rs, cs = self.kernel.extra_strides(index)
            offset = c64(0)
            if rs:
                offset = b.add(offset, b.mul(row, n if rs == "n" else c64(1)))
            if cs:
                offset = b.add(offset, b.add(col, first_col))
            return b.load(b.gep(extras[index], [offset], inbounds=True))

        epilogue = self.kernel.epilogue
        lda, a_step = k, 1
        if self.kernel.a.view is not None:  # rows and columns of a view (a transpose: x.T @ y)
            view = self.kernel.a.view
            value = [0 if t == 0 else math.prod(t) for t in view.strides]
            lda, a_step = c64(value[-2]), value[-1]
            a = b.gep(a, [c64(sum(math.prod(t) for t in view.offset if t != 0))])
        operands = {
            "a": a,
            "lda": lda,
            "a_step": a_step,
            "n": cols,
            "k": k,
            "c": c,
            "ldc": n,
            "epilogue": epilogue,
            "extra": extra,
            "fill_a": fill_a,
        }
        if not self.kernel.pack_b:
            self.gemm(b, lo=lo, hi=hi, bp=bp, **operands)
            b.ret_void()
            return
        # the panels of this call's columns of one b, zero-padded to whole panels
        bytes_ = ir.IntType(8).as_pointer()
        panels = b.sdiv(b.add(cols, c64(self.nr - 1)), c64(self.nr))
        size = b.mul(b.mul(panels, c64(self.nr)), b.select(b.icmp_signed(">", k, c64(0)), k, c64(1)))
        raw, packed = self._aligned(b, size)
        batched = self.kernel.batched
        if batched:  # the batches rows lo..hi belong to
            per_batch = b.select(b.icmp_signed(">", per_batch, c64(0)), per_batch, c64(1))
            first_batch = b.sdiv(lo, per_batch)
            last_batch = b.sdiv(b.add(hi, b.sub(per_batch, c64(1))), per_batch)
        else:
            first_batch, last_batch = c64(0), c64(1)

        # where b's elements are: row-major (K, N) matrices, or through a view of another buffer
        view = self.kernel.b.view
        if view is None:
            row_stride, column_stride, batch_stride, offset = n, c64(1), b.mul(k, n), c64(0)
        else:
            value = [0 if t == 0 else math.prod(t) for t in view.strides]
            row_stride, column_stride = c64(value[-2]), c64(value[-1])
            batch_stride = c64(value[-3] if batched else 0)
            offset = c64(sum(math.prod(t) for t in view.offset if t != 0))

        def batch(b, index):
            first = b.add(offset, b.mul(first_col, column_stride))
            if batched:
                first = b.add(first, b.mul(index, batch_stride))
            source = b.gep(bp, [first])

            def panel_row(b, i):  # i = panel * K + k: NR values of a row of b, zeros past its end
                p, kk = b.sdiv(i, k), b.srem(i, k)
                start = b.mul(p, c64(self.nr))
                count = b.sub(cols, start)
                count = b.select(b.icmp_signed("<", count, c64(self.nr)), count, c64(self.nr))
                dest = b.gep(packed, [b.mul(i, c64(self.nr))], inbounds=True)
                row = b.gep(source, [b.add(b.mul(kk, row_stride), b.mul(start, column_stride))])
                if view is None or view.strides[-1] == ():  # contiguous rows: vector copies
                    self._masked_copy(b, dest, row, count)
                else:  # one element at a time, along the view's stride

                    def element(b, j):
                        value = b.load(b.gep(row, [b.mul(j, column_stride)]))
                        b.store(value, b.gep(dest, [j], inbounds=True))

                    self._flat_loop(b, c64(0), count, "gather", element)
                self._masked_copy(b, b.gep(dest, [count]), None, b.sub(c64(self.nr), count))

            self._flat_loop(b, c64(0), b.mul(panels, k), "pack", panel_row)
            start, stop = lo, hi
            if batched:  # this batch's rows among lo..hi
                start = b.mul(index, per_batch)
                stop = b.add(start, per_batch)
                start = b.select(b.icmp_signed(">", start, lo), start, lo)
                stop = b.select(b.icmp_signed("<", stop, hi), stop, hi)
            self.gemm(b, lo=start, hi=stop, bp=packed, **operands)

        self._flat_loop(b, first_batch, last_batch, "batch", batch)
        b.call(self._libc("free", ir.VoidType(), [bytes_]), [raw])
        b.ret_void()


# Columns of the image matrix (output pixels) packed per pass: NR-wide panels, this many. One
# keeps the buffer (K x NR values) in L1/L2 and, for K up to ~500, under glibc's mmap threshold:
# a larger buffer was mmapped and page-faulted on every call, and two threads doing that at once
# ran 60% slower than one.
CONV_PANELS = 1


def _tap(b: ir.IRBuilder, table: ir.GlobalVariable, index) -> ir.Value:
    """Entry `index` of a taps table (`_taps_table`), as an i64 offset."""
    i32 = ir.IntType(32)
    return b.sext(b.load(b.gep(table, [ir.Constant(i32, 0), index], inbounds=True)), I64)


def _taps_table(
    module: ir.Module, name: str, window: tuple, plane: tuple, dilation: tuple
) -> ir.GlobalVariable:
    """`<name>.taps`: where each of the K taps of a (channels, KH, KW) window (channel, window
    row, window column) sits from the window's corner in (height, width) planes: one i32
    table per kernel."""
    table = module.globals.get(f"{name}.taps")
    if table is not None:
        return table
    (cg, kh, kw), (height, width), (dh, dw) = window, plane, dilation
    offsets = [
        ci * height * width + y * dh * width + xx * dw
        for ci in range(cg)
        for y in range(kh)
        for xx in range(kw)
    ]
    i32 = ir.IntType(32)
    table = ir.GlobalVariable(module, ir.ArrayType(i32, len(offsets)), name=f"{name}.taps")
    table.global_constant = True
    table.linkage = "internal"
    table.initializer = ir.Constant(ir.ArrayType(i32, len(offsets)), offsets)
    return table


class _ConvEmitter(_Gemm):
    """`void name(T* out, T* x, T* w, T* extras..., i64 lo, i64 hi)`: units lo..hi (images
    and their pieces, `Conv2d.pieces` per image) of epilogue(conv2d(x, w)). Per image, group
    and chunk of CONV_PANELS * NR output pixels, the image's columns (im2col) are packed
    straight into the panel layout the matrix product reads
    (zeros where the window leaves the padded image), in a buffer from malloc; then the weight
    rows times the panels, through the epilogue, into the output in place."""

    SIZES = 2  # lo, hi

    def _pack_runs(self, b: ir.IRBuilder, plane, dest, valid, start_row, start_col, dy, taps) -> None:
        """One row of a panel: dest[j] = the input at tap (dy, dx) of the window of output pixel
        first + j, for j < valid (from output row start_row, column start_col); zeros where the
        tap falls in the padding and past `valid`. Walks runs of pixels along one output row:
        their taps lie along one input row (contiguous for stride 1), so each run is a zero
        fill, a copy and a zero fill. `taps`: (dx, row) pairs sharing dy, written to the panel
        rows dest + row * NR in one walk over the runs (a window row's taps at once)."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        _, _, height, width = k.x.shape
        _, _, _, ow = k.out_shape
        (sh, sw), (ph, pw) = k.stride, k.padding

        def smaller(x, y):
            return b.select(b.icmp_signed("<", x, y), x, y)

        def larger(x, y):
            return b.select(b.icmp_signed(">", x, y), x, y)

        before = b.block
        head = self.fn.append_basic_block("run")
        body = self.fn.append_basic_block("run_body")
        done = self.fn.append_basic_block("run_done")
        b.branch(head)
        b.position_at_end(head)
        j = b.phi(I64, name="run_j")
        row = b.phi(I64, name="run_row")
        col = b.phi(I64, name="run_col")
        j.add_incoming(c64(0), before)
        row.add_incoming(start_row, before)
        col.add_incoming(start_col, before)
        b.cbranch(b.icmp_signed("<", j, valid), body, done)
        b.position_at_end(body)
        length = smaller(b.sub(c64(ow), col), b.sub(valid, j))
        y = b.add(b.sub(b.mul(row, c64(sh)), c64(ph)), dy)
        row_inside = b.icmp_unsigned("<", y, c64(height))
        line = b.gep(plane, [b.mul(b.select(row_inside, y, c64(0)), c64(width))])
        for dx, at in taps:
            target = b.gep(dest, [c64(at * self.nr)], inbounds=True)
            left = b.add(b.sub(b.mul(col, c64(sw)), c64(pw)), dx)  # the input column at t = 0
            # taps t in [lo, hi) lie inside the input: 0 <= left + t * sw < width
            lo = larger(c64(0), b.sdiv(b.add(b.sub(c64(0), left), c64(sw - 1)), c64(sw)))
            room = b.sub(c64(width), left)
            hi = b.select(b.icmp_signed(">", room, c64(0)), b.sdiv(b.add(room, c64(sw - 1)), c64(sw)), c64(0))
            hi = smaller(hi, length)
            hi = b.select(row_inside, hi, c64(0))
            lo = smaller(lo, hi)
            self._masked_copy(b, b.gep(target, [j], inbounds=True), None, lo)
            source = b.gep(line, [left])
            if sw == 1:  # contiguous: vector copies (a copy loop would become a memcpy call per run)
                start = b.gep(target, [b.add(j, lo)], inbounds=True)
                self._masked_copy(b, start, b.gep(source, [lo]), b.sub(hi, lo))
            else:

                def copy(b, t, source=source, target=target):
                    value = b.load(b.gep(source, [b.mul(t, c64(sw))]))
                    b.store(value, b.gep(target, [b.add(j, t)], inbounds=True))

                self._flat_loop(b, lo, hi, "copy", copy)
            self._masked_copy(b, b.gep(target, [b.add(j, hi)], inbounds=True), None, b.sub(length, hi))
        j.add_incoming(b.add(j, length), b.block)
        row.add_incoming(b.add(row, c64(1)), b.block)
        col.add_incoming(c64(0), b.block)
        b.branch(head)
        b.position_at_end(done)
        for _, at in taps:
            target = b.gep(dest, [c64(at * self.nr)], inbounds=True)
            self._masked_copy(b, b.gep(target, [valid], inbounds=True), None, b.sub(c64(self.nr), valid))

    def direct_rows(self) -> int:
        return conv_direct_rows(self.kernel, self.lanes, self.nv)

    def direct_segments(self) -> int:
        return conv_direct_segments(self.kernel, self.lanes, self.nv)

    def direct_plane(self) -> tuple[int, int]:
        """(height, width) of the planes the direct path reads: the input's, or with padding
        the padded copy it makes of each image."""
        _, _, height, width = self.kernel.x.shape
        ph, pw = self.kernel.padding
        return height + 2 * ph, width + 2 * pw

    def channel_block(self) -> tuple[int, int]:
        """(pixels, vectors of output channels) per block of the channels path, where output
        channels are the vector lanes and pixels the broadcast rows: as many accumulators as
        the matmul's micro-kernel."""
        k = self.kernel
        vectors = min(-(-(k.w.shape[0] // k.groups) // self.lanes), self.nv)
        return self.mr * self.nv // vectors, vectors

    def path(self) -> str:
        return conv_path(self.kernel, self.mr, self.lanes, self.nv)

    def emit(self) -> None:
        {"direct": self._emit_direct, "channels": self._emit_channels, "packed": self._emit_packed}[
            self.path()
        ]()

    def _over_planes(self, b: ir.IRBuilder, body, out_rows) -> None:
        """body(b, img, g, plane, first_channel, piece) for each unit lo..hi (image and piece:
        `Conv2d.pieces`) and group, `plane` the group's first input plane: the input's, or with
        padding a zeroed copy of the image with room for it (made once per call; per unit,
        the input rows that its output rows, out_rows(b, piece) = (first, end), read)."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        channels = k.x.shape[1]
        cg = k.w.shape[1]
        cog = k.w.shape[0] // k.groups
        height, width = self.direct_plane()
        ph, pw = k.padding
        x = self.fn.args[1]
        lo, hi = self.fn.args[-2:]
        padded = None
        bytes_ = ir.IntType(8).as_pointer()
        if (ph, pw) != (0, 0):
            calloc = self._libc("calloc", bytes_, [I64, I64])
            raw = b.call(calloc, [c64(channels * height * width), c64(self.item)])
            padded = b.bitcast(raw, self.t.as_pointer())

        def unit(b, u):
            img, piece = b.sdiv(u, c64(k.pieces)), b.srem(u, c64(k.pieces))
            if padded is not None:
                first, end = out_rows(b, piece)
                sh, dh, h = k.stride[0], k.dilation[0], k.x.shape[2]
                first = b.sub(b.mul(first, c64(sh)), c64(ph))
                first = b.select(b.icmp_signed(">", first, c64(0)), first, c64(0))
                end = b.add(b.mul(b.sub(end, c64(1)), c64(sh)), c64(dh * (k.w.shape[2] - 1) + 1 - ph))
                end = b.select(b.icmp_signed("<", end, c64(h)), end, c64(h))
                self._pad_image(b, padded, x, img, k.x.shape[1:], k.padding, (first, end))

            def group(b, g):
                first = b.mul(g, c64(cg))  # the group's first channel among the planes read
                if padded is None:
                    first = b.add(b.mul(img, c64(channels)), first)
                plane = b.gep(x if padded is None else padded, [b.mul(first, c64(height * width))])
                body(b, img, g, plane, b.mul(g, c64(cog)), piece)

            self._flat_loop(b, c64(0), c64(k.groups), "group", group)

        self._flat_loop(b, lo, hi, "unit", unit)
        if padded is not None:
            b.call(self._libc("free", ir.VoidType(), [bytes_]), [raw])

    def _share(self, b: ir.IRBuilder, piece, total: int, block: int):
        """(start, end) of unit `piece`'s share of 0..total, in whole blocks of `block` (the
        last block cut at total): the blocks split as evenly as Conv2d.pieces allows."""
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        pieces = self.kernel.pieces
        blocks = -(-total // block)
        start = b.mul(b.sdiv(b.mul(piece, c64(blocks)), c64(pieces)), c64(block))
        end = b.mul(b.sdiv(b.mul(b.add(piece, c64(1)), c64(blocks)), c64(pieces)), c64(block))
        return start, b.select(b.icmp_signed("<", end, c64(total)), end, c64(total))

    def _extra(self, img, first_channel):
        """extra(b, index, channel within the group, pixel): epilogue operand `index` there."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        extras = self.fn.args[3 : 3 + len(k.extras)]

        def extra(b, index, row, col):
            si, sc, sp = k.extra_strides[index]
            offset = b.add(
                b.add(b.mul(img, c64(si)), b.mul(b.add(first_channel, row), c64(sc))), b.mul(col, c64(sp))
            )
            return b.load(b.gep(extras[index], [offset], inbounds=True))

        return extra

    def _emit_direct(self) -> None:
        """Per image, group, block of MR output channels and block of output rows: the
        micro-kernel sums weight x input over K = C/groups * KH * KW, its vectors loading
        input pixels at a tap's offset (from a table) from the rows the block's output rows
        read; then the epilogue merges the block into the output (the rows' pixels are
        contiguous there)."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        co, cg, kh, kw = k.w.shape
        _, _, oh, ow = k.out_shape
        pixels, depth, cog = oh * ow, cg * kh * kw, co // k.groups
        rows_per_block, segments = self.direct_rows(), self.direct_segments()

        def rows_of(b, piece):  # a unit's output rows
            return self._share(b, piece, oh, rows_per_block)

        b = self.entry()
        out, _, w = self.fn.args[:3]
        true = ir.Constant(ir.IntType(1), 1)

        def body(b, img, g, plane, first_channel, piece):
            weights = b.gep(w, [b.mul(first_channel, c64(depth))])
            c = b.gep(out, [b.mul(b.add(b.mul(img, c64(co)), first_channel), c64(pixels))])
            extra = self._extra(img, first_channel)
            first_row, end_row = rows_of(b, piece)

            def channels_(b, row0):  # a block of at most MR output channels
                count = b.sub(c64(cog), row0)
                count = b.select(b.icmp_signed("<", count, c64(self.mr)), count, c64(self.mr))

                def rows_(b, oy):  # a block of output rows (or one row, in segments)
                    if segments == 1:
                        self.direct_micro(b, weights, row0, count, plane, oy, 0)
                        valid = b.sub(c64(oh), oy)
                        block = c64(rows_per_block)
                        valid = b.select(b.icmp_signed("<", valid, block), valid, block)
                        cols = b.mul(valid, c64(ow))
                        col0 = b.mul(oy, c64(ow))
                        self.merge(b, c, c64(pixels), row0, count, col0, cols, true, true, k.epilogue, extra)
                        return
                    for segment in range(segments):
                        self.direct_micro(b, weights, row0, count, plane, oy, segment)
                        first = segment * self.nr
                        col0 = b.add(b.mul(oy, c64(ow)), c64(first))
                        cols = c64(min(self.nr, ow - first))
                        self.merge(b, c, c64(pixels), row0, count, col0, cols, true, true, k.epilogue, extra)

                self._flat_loop(b, first_row, end_row, "rows", rows_, step=rows_per_block)

            self._flat_loop(b, c64(0), c64(cog), "channels", channels_, step=self.mr)

        self._over_planes(b, body, rows_of)
        b.ret_void()

    def _emit_channels(self) -> None:
        """Output channels along the vector lanes: the weight transposed once per call into
        [group][K][channels, padded to whole vectors]; per image, group, block of channels and
        block of output pixels, the micro-kernel broadcasts each pixel's input at a tap (the
        window's corner plus the tap's offset from the table) against a vector of weights;
        the merge transposes the block into the output through the epilogue."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        co, cg, kh, kw = k.w.shape
        _, _, oh, ow = k.out_shape
        pixels, depth, cog = oh * ow, cg * kh * kw, co // k.groups
        block_pixels, vectors = self.channel_block()
        width = vectors * self.lanes  # channels per block
        padded_channels = -(-cog // self.lanes) * self.lanes
        b = self.entry()
        out, _, w = self.fn.args[:3]
        bytes_ = ir.IntType(8).as_pointer()
        wt = w
        if not k.w_packed:  # transposed here, on every call (a weight is packed once, outside)
            size = c64(k.groups * depth * padded_channels)
            raw = b.call(self._libc("calloc", bytes_, [I64, I64]), [size, c64(self.item)])
            wt = b.bitcast(raw, self.t.as_pointer())

            def transpose(b, i):  # i = (group * cog + channel) * K + k over w's layout
                g_c, kk = b.sdiv(i, c64(depth)), b.srem(i, c64(depth))
                g, channel = b.sdiv(g_c, c64(cog)), b.srem(g_c, c64(cog))
                at = b.add(b.mul(b.add(b.mul(g, c64(depth)), kk), c64(padded_channels)), channel)
                b.store(b.load(b.gep(w, [i], inbounds=True)), b.gep(wt, [at], inbounds=True))

            self._flat_loop(b, c64(0), c64(co * depth), "transpose", transpose)

        def body(b, img, g, plane, first_channel, piece):
            weights = b.gep(wt, [b.mul(g, c64(depth * padded_channels))])
            extra = self._extra(img, first_channel)
            first_pixel, end_pixel = self._share(b, piece, pixels, block_pixels)

            def channels_(b, c0):
                def pixels_(b, p0):
                    block = b.gep(weights, [c0])
                    b.call(self.channels_function(), [plane, block, p0, self.tile])
                    self._merge_transposed(b, out, img, first_channel, c0, p0, extra)

                self._flat_loop(b, first_pixel, end_pixel, "pixels", pixels_, step=block_pixels)

            self._flat_loop(b, c64(0), c64(cog), "channel_blocks", channels_, step=width)

        def rows_of(b, piece):  # the output rows of a unit's pixels
            first, end = self._share(b, piece, pixels, block_pixels)
            return b.sdiv(first, c64(ow)), b.sdiv(b.add(end, c64(ow - 1)), c64(ow))

        self._over_planes(b, body, rows_of)
        if not k.w_packed:
            b.call(self._libc("free", ir.VoidType(), [bytes_]), [raw])
        b.ret_void()

    def _merge_transposed(self, b: ir.IRBuilder, out, img, first_channel, c0, p0, extra) -> None:
        """out[img, group's channel c0 + j, pixel p0 + i] = epilogue(tile[i][j]) for the valid
        channels and pixels of a block of the channels path."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        co = k.w.shape[0]
        cog = co // k.groups
        _, _, oh, ow = k.out_shape
        pixels = oh * ow
        block_pixels, vectors = self.channel_block()
        width = vectors * self.lanes
        count = b.sub(c64(cog), c0)
        count = b.select(b.icmp_signed("<", count, c64(width)), count, c64(width))
        valid = b.sub(c64(pixels), p0)
        valid = b.select(b.icmp_signed("<", valid, c64(block_pixels)), valid, c64(block_pixels))

        def channel(b, j):
            row = b.add(c0, j)  # the channel within the group
            plane = b.add(b.mul(img, c64(co)), b.add(first_channel, row))
            target = b.gep(out, [b.add(b.mul(plane, c64(pixels)), p0)], inbounds=True)

            def pixel(b, i):
                value = b.load(b.gep(self.tile, [b.add(b.mul(i, c64(width)), j)], inbounds=True))
                col = b.add(p0, i)
                value = self.expr(b, k.epilogue, lambda x: extra(b, x, row, col), value)
                b.store(value, b.gep(target, [i], inbounds=True))

            self._flat_loop(b, c64(0), valid, "pixel", pixel)

        self._flat_loop(b, c64(0), count, "channel", channel)

    def channels_function(self) -> ir.Function:
        """(first input plane, weights at the block's first channel, first pixel, tile): the
        block's pixels (past the last: the last again) x its channels, summed over K."""
        k = self.kernel
        name = f"{k.name}.channels"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        height, width = self.direct_plane()
        co, cg, kh, kw = k.w.shape
        _, _, oh, ow = k.out_shape
        (sh, sw) = k.stride
        depth, cog = cg * kh * kw, co // k.groups
        padded_channels = -(-cog // self.lanes) * self.lanes
        block_pixels, vectors = self.channel_block()
        table = self.taps_table()
        ptr = self.t.as_pointer()
        fn = self._helper(name, [ptr, ptr, I64, ptr])
        plane, weights, p0, tile = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        corners = []
        for i in range(block_pixels):
            p = b.add(p0, c64(i))
            p = b.select(b.icmp_signed("<", p, c64(oh * ow)), p, c64(oh * ow - 1))
            oy, ox = b.sdiv(p, c64(ow)), b.srem(p, c64(ow))
            corners.append(b.gep(plane, [b.add(b.mul(oy, c64(sh * width)), b.mul(ox, c64(sw)))]))
        fma = self.intrinsic("fma", 3, self.vec)
        vptr = self.vec.as_pointer()

        def step(b, kk, accs):
            tap = _tap(b, table, kk)
            row = b.gep(weights, [b.mul(kk, c64(padded_channels))])
            wvecs = [
                b.load(b.bitcast(b.gep(row, [c64(v * self.lanes)]), vptr), align=self.item)
                for v in range(vectors)
            ]
            updated = []
            for i in range(block_pixels):
                broadcast = self._broadcast(b, b.load(b.gep(corners[i], [tap])))
                for v in range(vectors):
                    updated.append(b.call(fma, [broadcast, wvecs[v], accs[i * vectors + v]]))
            return updated

        accs = self._accumulate(fn, b, block_pixels * vectors, c64(depth), step)
        for i in range(block_pixels):
            for v in range(vectors):
                slot = b.gep(tile, [c64((i * vectors + v) * self.lanes)], inbounds=True)
                b.store(accs[i * vectors + v], b.bitcast(slot, vptr), align=self.item)
        b.ret_void()
        return fn

    def taps_table(self) -> ir.GlobalVariable:
        """Where each of the K taps sits from a window's corner in the planes the direct and
        channels paths read."""
        _, cg, kh, kw = self.kernel.w.shape
        return _taps_table(
            self.module, self.kernel.name, (cg, kh, kw), self.direct_plane(), self.kernel.dilation
        )

    def direct_micro(self, b: ir.IRBuilder, weights, row0, rows, plane, oy, segment: int) -> None:
        """The direct micro-kernel for `rows` (at most MR) output channels from row0, output
        rows from oy (or `segment` of row oy), into the tile: one variant per channel count,
        picked by a switch."""
        after = self.fn.append_basic_block("direct_done")
        variants = [self.fn.append_basic_block(f"direct{r}") for r in range(1, self.mr + 1)]
        switch = b.switch(rows, variants[-1])
        for r, block in enumerate(variants[:-1], start=1):
            switch.add_case(ir.Constant(I64, r), block)
        for r, block in enumerate(variants, start=1):
            b.position_at_end(block)
            last = segment == self.direct_segments() - 1
            column = ir.Constant(I64, segment * self.nr)
            b.call(self.direct_function(r, last), [weights, row0, plane, oy, column, self.tile])
            b.branch(after)
        b.position_at_end(after)

    def direct_function(self, count: int, last: bool) -> ir.Function:
        """(weights, first channel, input plane, first output row, first output column, tile):
        `count` output channels x the block's output rows (each in chunks of lanes pixels, the
        row's last masked), or where rows are in segments x a segment (`last`: the row's last),
        summed over K, written to the tile with the block's pixels contiguous in each row."""
        k = self.kernel
        segments = self.direct_segments()
        name = f"{k.name}.direct.r{count}" + (".last" if last and segments > 1 else "")
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        i32 = ir.IntType(32)
        height, width = self.direct_plane()
        _, cg, kh, kw = k.w.shape
        _, _, oh, ow = k.out_shape
        sh = k.stride[0]
        dh, dw = k.dilation
        depth = cg * kh * kw
        rows_per_block = self.direct_rows()
        chunks = -(-ow // self.lanes)  # (in the whole row)
        here = chunks - (segments - 1) * self.nv if last else self.nv  # (in this block's rows)
        # where each of the K taps (channel, window row, window column) sits from a window's corner
        table = self.taps_table()
        ptr = self.t.as_pointer()
        fn = self._helper(name, [ptr, I64, ptr, I64, I64, ptr])
        weights, row0, plane, oy, column, tile = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        mask_type = ir.VectorType(ir.IntType(1), self.lanes)
        load, store = self._masked()
        tail = ow - (chunks - 1) * self.lanes  # pixels in a row's last chunk
        tail_mask = ir.Constant(mask_type, [1 if j < tail else 0 for j in range(self.lanes)])
        zero = ir.Constant(self.vec, [0.0] * self.lanes)
        align = ir.Constant(i32, self.item)
        # the first input of each vector: rows past the output's last read its last row (their
        # results are not merged), so every load stays inside the image
        starts = []
        for r in range(rows_per_block):
            row = b.add(oy, c64(r))
            row = b.select(b.icmp_signed("<", row, c64(oh)), row, c64(oh - 1))
            line = b.gep(plane, [b.add(b.mul(row, c64(sh * width)), column)])
            starts += [(b.gep(line, [c64(ch * self.lanes)]), last and ch == here - 1) for ch in range(here)]
        channel_rows = [b.gep(weights, [b.mul(b.add(row0, c64(i)), c64(depth))]) for i in range(count)]
        fma = self.intrinsic("fma", 3, self.vec)
        vptr = self.vec.as_pointer()

        def step(b, kk, accs):
            tap = _tap(b, table, kk)
            vectors = []
            for start, masked in starts:
                at = b.bitcast(b.gep(start, [tap]), vptr)
                if masked and tail < self.lanes:
                    vectors.append(b.call(load, [at, align, tail_mask, zero]))
                else:
                    vectors.append(b.load(at, align=self.item))
            updated = []
            for i in range(count):
                broadcast = self._broadcast(b, b.load(b.gep(channel_rows[i], [kk], inbounds=True)))
                for v in range(len(starts)):
                    updated.append(b.call(fma, [broadcast, vectors[v], accs[i * len(starts) + v]]))
            return updated

        accs = self._accumulate(fn, b, count * len(starts), c64(depth), step)
        for i in range(count):
            for v, (_, masked) in enumerate(starts):
                r, ch = divmod(v, here)
                slot = b.bitcast(
                    b.gep(tile, [c64(i * self.nr + r * ow + ch * self.lanes)], inbounds=True), vptr
                )
                if masked and tail < self.lanes:  # (the next row's pixels follow the valid ones)
                    b.call(store, [accs[i * len(starts) + v], slot, align, tail_mask])
                else:
                    b.store(accs[i * len(starts) + v], slot, align=self.item)
        b.ret_void()
        return fn

    def _emit_packed(self) -> None:
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        _, channels, height, width = k.x.shape
        co, cg, kh, kw = k.w.shape
        _, _, oh, ow = k.out_shape
        pixels, depth, cog = oh * ow, cg * kh * kw, co // k.groups
        chunk = CONV_PANELS * self.nr
        b = self.entry()
        out, x, w = self.fn.args[:3]
        extras = self.fn.args[3 : 3 + len(k.extras)]
        lo, hi = self.fn.args[-2:]
        bytes_ = ir.IntType(8).as_pointer()
        raw, packed = self._aligned(b, c64(max(depth, 1) * chunk))
        dh, dw = k.dilation

        def unit(b, u):
            img, piece = b.sdiv(u, c64(k.pieces)), b.srem(u, c64(k.pieces))
            first_pixel, end_pixel = self._share(b, piece, pixels, chunk)

            def group(b, g):
                source = b.gep(
                    x, [b.mul(b.add(b.mul(img, c64(channels)), b.mul(g, c64(cg))), c64(height * width))]
                )

                def chunk_(b, c0):
                    count = b.sub(c64(pixels), c0)
                    count = b.select(b.icmp_signed("<", count, c64(chunk)), count, c64(chunk))

                    def panel(b, p):
                        first_col = b.add(c0, b.mul(p, c64(self.nr)))
                        valid = b.sub(b.add(c0, count), first_col)
                        valid = b.select(b.icmp_signed("<", valid, c64(self.nr)), valid, c64(self.nr))
                        start_row, start_col = b.sdiv(first_col, c64(ow)), b.srem(first_col, c64(ow))
                        panel_base = b.mul(p, c64(depth * self.nr))

                        def window_row(b, kr):  # kr = ci * KH + kh: the KW taps of one window row
                            ci = b.sdiv(kr, c64(kh))
                            dy = b.mul(b.srem(kr, c64(kh)), c64(dh))
                            plane = b.gep(source, [b.mul(ci, c64(height * width))])
                            dest = b.gep(packed, [b.add(panel_base, b.mul(kr, c64(kw * self.nr)))])
                            taps = [(c64(x * dw), x) for x in range(kw)]
                            self._pack_runs(b, plane, dest, valid, start_row, start_col, dy, taps)

                        self._flat_loop(b, c64(0), c64(cg * kh), "window_row", window_row)

                    panels = b.sdiv(b.add(count, c64(self.nr - 1)), c64(self.nr))
                    self._flat_loop(b, c64(0), panels, "panel", panel)
                    first_channel = b.mul(g, c64(cog))
                    c = b.gep(out, [b.add(b.mul(b.add(b.mul(img, c64(co)), first_channel), c64(pixels)), c0)])

                    def extra(b, index, row, col):
                        si, sc, sp = k.extra_strides[index]
                        offset = b.add(
                            b.add(b.mul(img, c64(si)), b.mul(b.add(first_channel, row), c64(sc))),
                            b.mul(b.add(c0, col), c64(sp)),
                        )
                        return b.load(b.gep(extras[index], [offset], inbounds=True))

                    self.gemm(
                        b,
                        a=b.gep(w, [b.mul(first_channel, c64(depth))]),
                        lda=c64(depth),
                        lo=c64(0),
                        hi=c64(cog),
                        bp=packed,
                        n=count,
                        k=c64(depth),
                        c=c,
                        ldc=c64(pixels),
                        epilogue=k.epilogue,
                        extra=extra,
                    )

                self._flat_loop(b, first_pixel, end_pixel, "chunk", chunk_, step=chunk)

            self._flat_loop(b, c64(0), c64(k.groups), "group", group)

        self._flat_loop(b, lo, hi, "unit", unit)
        b.call(self._libc("free", ir.VoidType(), [bytes_]), [raw])
        b.ret_void()


class _WeightGradEmitter(_Gemm):
    """`void name(T* out, T* x, T* g, i64 batch, i64 lo, i64 hi)`: output channels lo..hi of
    conv2d_weight_grad(x, g) (stride 1). The reduction runs along the vector lanes: per image,
    block of output channels and block of taps, each vector holds a chunk of an output row of
    g and, loaded at the tap's offset (from a table) in the input planes (or a zeroed padded
    copy of the image), the input pixels it multiplies: no im2col. The accumulators' lanes are
    added to vector partial sums (from calloc) after each image, and summed across lanes into
    the output at the end."""

    SIZES = 3  # batch, lo, hi

    def emit(self) -> None:
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        co, cg, kh, kw = k.out_shape
        channels, h, w = k.x.shape[1:]
        oh, ow = k.g.shape[2:]
        ph, pw = k.padding
        height, width = h + 2 * ph, w + 2 * pw
        depth, cog = cg * kh * kw, co // k.groups
        block, taps = weight_grad_block(k, self.lanes * 8 * self.item)
        out, x, g, batch, lo, hi = self.fn.args
        b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        bytes_ = ir.IntType(8).as_pointer()
        calloc = self._libc("calloc", bytes_, [I64, I64])
        free = self._libc("free", ir.VoidType(), [bytes_])
        # a vector of partial sums per (output channel lo.., tap)
        raw_partial = b.call(calloc, [b.mul(b.sub(hi, lo), c64(depth * self.lanes)), c64(self.item)])
        partial = b.bitcast(raw_partial, self.t.as_pointer())
        padded = raw_padded = None
        if (ph, pw) != (0, 0):
            raw_padded = b.call(calloc, [c64(channels * height * width), c64(self.item)])
            padded = b.bitcast(raw_padded, self.t.as_pointer())

        def image(b, img):
            if padded is not None:
                self._pad_image(b, padded, x, img, (channels, h, w), k.padding)

            def group(b, gi):
                first = b.mul(gi, c64(cg))  # the group's first input channel
                if padded is None:
                    first = b.add(b.mul(img, c64(channels)), first)
                plane = b.gep(x if padded is None else padded, [b.mul(first, c64(height * width))])
                start = b.mul(gi, c64(cog))
                start = b.select(b.icmp_signed(">", lo, start), lo, start)
                stop = b.mul(b.add(gi, c64(1)), c64(cog))
                stop = b.select(b.icmp_signed("<", hi, stop), hi, stop)

                def channels_(b, o0):  # a block of at most `block` output channels of the group
                    count = b.sub(stop, o0)
                    count = b.select(b.icmp_signed("<", count, c64(block)), count, c64(block))
                    rows = b.gep(g, [b.mul(b.add(b.mul(img, c64(co)), o0), c64(oh * ow))])
                    sums = b.gep(partial, [b.mul(b.sub(o0, lo), c64(depth * self.lanes))])

                    def taps_(b, t0):
                        self._micro(b, count, block, taps, rows, plane, t0, sums)

                    self._flat_loop(b, c64(0), c64(depth), "taps", taps_, step=taps)

                self._flat_loop(b, start, stop, "channels", channels_, step=block)

            self._flat_loop(b, c64(0), c64(k.groups), "group", group)

        self._flat_loop(b, c64(0), batch, "image", image)

        def reduce(b, i):  # i = (o - lo) * K + tap: the partial sum's lanes, in order
            vector = b.gep(partial, [b.mul(i, c64(self.lanes))])
            total = ir.Constant(self.t, 0.0)
            for lane in range(self.lanes):
                total = b.fadd(total, b.load(b.gep(vector, [c64(lane)], inbounds=True)))
            b.store(total, b.gep(out, [b.add(b.mul(lo, c64(depth)), i)], inbounds=True))

        self._flat_loop(b, c64(0), b.mul(b.sub(hi, lo), c64(depth)), "reduce", reduce)
        b.call(free, [raw_partial])
        if raw_padded is not None:
            b.call(free, [raw_padded])
        b.ret_void()

    def _micro(self, b: ir.IRBuilder, count, block: int, taps: int, rows, plane, t0, sums) -> None:
        """The micro-kernel for `count` (at most `block`) output channels: one variant per
        count, picked by a switch."""
        after = self.fn.append_basic_block("micro_done")
        variants = [self.fn.append_basic_block(f"micro{r}") for r in range(1, block + 1)]
        switch = b.switch(count, variants[-1])
        for r, target in enumerate(variants[:-1], start=1):
            switch.add_case(ir.Constant(I64, r), target)
        for r, target in enumerate(variants, start=1):
            b.position_at_end(target)
            b.call(self._micro_function(r, taps), [rows, plane, t0, sums])
            b.branch(after)
        b.position_at_end(after)

    def _micro_function(self, count: int, taps: int) -> ir.Function:
        """(g rows, input planes, first tap, partial sums): for `count` output channels x
        `taps` taps from the first, the products of the image's g and input summed over the
        output rows (each in chunks of lanes pixels, the last masked) in vector accumulators,
        then added to the partial sums."""
        k = self.kernel
        name = f"{k.name}.wgrad.r{count}"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        i32 = ir.IntType(32)
        _, cg, kh, kw = k.out_shape
        oh, ow = k.g.shape[2:]
        ph, pw = k.padding
        width = k.x.shape[3] + 2 * pw
        depth = cg * kh * kw
        chunks = -(-ow // self.lanes)
        tail = ow - (chunks - 1) * self.lanes
        ptr = self.t.as_pointer()
        fn = self._helper(name, [ptr, ptr, I64, ptr])
        rows, plane, t0, sums = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        table = _taps_table(self.module, k.name, (cg, kh, kw), (k.x.shape[2] + 2 * ph, width), k.dilation)
        starts = [b.gep(plane, [_tap(b, table, b.add(t0, c64(t)))]) for t in range(taps)]
        grads = [b.gep(rows, [c64(i * oh * ow)]) for i in range(count)]
        load, _ = self._masked()
        mask_type = ir.VectorType(ir.IntType(1), self.lanes)
        tail_mask = ir.Constant(mask_type, [1 if j < tail else 0 for j in range(self.lanes)])
        zero = ir.Constant(self.vec, [0.0] * self.lanes)
        align = ir.Constant(i32, self.item)
        fma = self.intrinsic("fma", 3, self.vec)
        vptr = self.vec.as_pointer()

        def vector(b, at, last):
            at = b.bitcast(at, vptr)
            if last and tail < self.lanes:  # (lanes past the row are zeros, never read)
                return b.call(load, [at, align, tail_mask, zero])
            return b.load(at, align=self.item)

        def step(b, y, accs):  # output row y
            g_row, x_row = b.mul(y, c64(ow)), b.mul(y, c64(width))
            for ch in range(chunks):
                last = ch == chunks - 1
                gv = [
                    vector(b, b.gep(grads[i], [b.add(g_row, c64(ch * self.lanes))]), last)
                    for i in range(count)
                ]
                xv = [
                    vector(b, b.gep(starts[t], [b.add(x_row, c64(ch * self.lanes))]), last)
                    for t in range(taps)
                ]
                accs = [
                    b.call(fma, [gv[i], xv[t], accs[i * taps + t]]) for i in range(count) for t in range(taps)
                ]
            return accs

        accs = self._accumulate(fn, b, count * taps, c64(oh), step)
        for i in range(count):
            for t in range(taps):
                slot = b.bitcast(
                    b.gep(sums, [b.mul(b.add(c64(i * depth), b.add(t0, c64(t))), c64(self.lanes))]), vptr
                )
                b.store(b.fadd(b.load(slot, align=self.item), accs[i * taps + t]), slot, align=self.item)
        b.ret_void()
        return fn


class _PoolEmitter(_Code):
    """`void name(T* out, T* x, i64 lo, i64 hi)`: images lo..hi of max_pool2d(x). Per output
    row, first the maximum down the window's input rows into a row buffer (contiguous: it
    vectorizes), then across each window's columns. Taps outside the input count as -inf
    (rows by a check per row; columns read a valid address and select)."""

    def __init__(self, module: ir.Module, kernel: Pool2d, vector_bits: int = 256) -> None:
        t = _float_type(kernel.dtype)
        out = I64 if kernel.indices else t
        super().__init__(module, kernel.name, kernel.dtype, [out.as_pointer(), t.as_pointer()] + [I64] * 2)
        self.kernel = kernel
        self.lanes = max(2, vector_bits // (8 * kernel.dtype.itemsize))
        for a in self.fn.args[:2]:
            a.add_attribute("noalias")

    def emit(self) -> None:
        k = self.kernel
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k.kernel_size, k.stride, k.padding, k.dilation
        _, _, oh, ow = k.out_shape
        rows_inside = (oh - 1) * sh + (kh - 1) * dh < k.x.shape[2]
        columns_inside = 2 * ow <= k.x.shape[3]  # (ceil mode may leave the input)
        if (kw, sw, dw, pw, ph) == (2, 2, 1, 0, 0) and rows_inside and columns_inside:
            self._emit_in_pairs()
        elif k.indices:
            self._emit_indices()
        else:
            self._emit_values()

    def _emit_values(self) -> None:
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        _, channels, height, width = k.x.shape
        _, _, oh, ow = k.out_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k.kernel_size, k.stride, k.padding, k.dilation
        b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        out, x, lo, hi = self.fn.args
        low = ir.Constant(self.t, float("-inf"))
        buffer = b.alloca(ir.ArrayType(self.t, width), name="column_max")
        i32 = ir.IntType(32)
        buffer = b.gep(buffer, [ir.Constant(i32, 0), ir.Constant(i32, 0)])
        maximum = self.intrinsic("maximum", 2)
        columns_inside = pw == 0 and (ow - 1) * sw + (kw - 1) * dw < width
        rows_inside = ph == 0 and (oh - 1) * sh + (kh - 1) * dh < height

        def plane(b, p):  # p = image * C + channel
            source = b.gep(x, [b.mul(p, c64(height * width))])
            target = b.gep(out, [b.mul(p, c64(oh * ow))])

            def row(b, r):
                tops = [b.add(b.mul(r, c64(sh)), c64(i * dh - ph)) for i in range(kh)]

                def down(b, col):  # the maximum down the window rows, per input column
                    value = low
                    for y in tops:
                        if rows_inside:
                            tap = b.load(b.gep(source, [b.add(b.mul(y, c64(width)), col)], inbounds=True))
                        else:
                            inside = b.icmp_unsigned("<", y, c64(height))
                            line = b.gep(source, [b.mul(b.select(inside, y, c64(0)), c64(width))])
                            tap = b.select(inside, b.load(b.gep(line, [col], inbounds=True)), low)
                        value = b.call(maximum, [value, tap])
                    b.store(value, b.gep(buffer, [col], inbounds=True))

                self._flat_loop(b, c64(0), c64(width), "down", down)

                def across(b, c):
                    value = low
                    for j in range(kw):
                        xx = b.add(b.mul(c, c64(sw)), c64(j * dw - pw))
                        if columns_inside:
                            tap = b.load(b.gep(buffer, [xx], inbounds=True))
                        else:
                            inside = b.icmp_unsigned("<", xx, c64(width))
                            at = b.select(inside, xx, c64(0))
                            tap = b.select(inside, b.load(b.gep(buffer, [at], inbounds=True)), low)
                        value = b.call(maximum, [value, tap])
                    b.store(value, b.gep(target, [b.add(b.mul(r, c64(ow)), c)], inbounds=True))

                self._flat_loop(b, c64(0), c64(ow), "across", across)

            self._flat_loop(b, c64(0), c64(oh), "row", row)

        self._flat_loop(b, b.mul(lo, c64(channels)), b.mul(hi, c64(channels)), "plane", plane)
        b.ret_void()

    def _emit_in_pairs(self) -> None:
        """Windows two columns wide at a stride of two (the common 2x2 pool), a vector of
        output pixels at a time: each window row's 2L inputs in two vector loads, split into
        the windows' left and right columns by shuffles; then the scalar kernel's rule (the
        first maximum, a NaN first) with vector selects, storing the maxima or their indices."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        i32 = ir.IntType(32)
        lanes = self.lanes
        _, channels, height, width = k.x.shape
        _, _, oh, ow = k.out_shape
        kh, sh, dh = k.kernel_size[0], k.stride[0], k.dilation[0]
        b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        out, x, lo, hi = self.fn.args
        vec, ivec = ir.VectorType(self.t, lanes), ir.VectorType(I64, lanes)

        stored_type = ivec if k.indices else vec
        load, store = self.masked("load", vec), self.masked("store", stored_type)
        iota = ir.Constant(ivec, list(range(lanes)))
        undef = ir.Constant(ivec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

        def broadcast(value):
            return b.shuffle_vector(b.insert_element(undef, value, ir.Constant(i32, 0)), undef, splat)

        zero = ir.Constant(vec, [0.0] * lanes)
        evens = ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2)))
        odds = ir.Constant(ir.VectorType(i32, lanes), list(range(1, 2 * lanes, 2)))
        align = ir.Constant(i32, self.dtype.itemsize)

        def plane(b, p):  # p = image * C + channel
            source = b.gep(x, [b.mul(p, c64(height * width))])
            target = b.gep(out, [b.mul(p, c64(oh * ow))])

            def row(b, r):
                def chunk(b, c0):
                    valid = broadcast(b.sub(c64(ow), c0))  # output pixels left from c0
                    # lanes of the loads: input columns 2 * c0 + lane, valid below 2 * pixels left
                    left_mask = b.icmp_signed("<", iota, b.add(valid, valid))
                    right_mask = b.icmp_signed(
                        "<", b.add(iota, ir.Constant(ivec, [lanes] * lanes)), b.add(valid, valid)
                    )
                    columns = b.add(broadcast(b.mul(c0, c64(2))), b.add(iota, iota))  # left column
                    found = None
                    best = zero
                    where = ir.Constant(ivec, [0] * lanes)
                    for i in range(kh):
                        y = b.add(b.mul(r, c64(sh)), c64(i * dh))
                        line = b.gep(source, [b.add(b.mul(y, c64(width)), b.mul(c0, c64(2)))])
                        low = b.call(load, [b.bitcast(line, vec.as_pointer()), align, left_mask, zero])
                        high_at = b.bitcast(b.gep(line, [c64(lanes)]), vec.as_pointer())
                        high = b.call(load, [high_at, align, right_mask, zero])
                        base = b.add(broadcast(b.mul(y, c64(width))), columns)
                        for j, order in enumerate((evens, odds)):
                            value = b.shuffle_vector(low, high, order)
                            position = b.add(base, ir.Constant(ivec, [j] * lanes))
                            if found is None:  # the window's first tap
                                best, where, found = value, position, True
                                continue
                            better = b.and_(
                                b.fcmp_unordered(">", value, best), b.fcmp_ordered("ord", best, best)
                            )
                            best = b.select(better, value, best)
                            where = b.select(better, position, where)
                    stored = b.icmp_signed("<", iota, valid)
                    slot = b.bitcast(
                        b.gep(target, [b.add(b.mul(r, c64(ow)), c0)], inbounds=True), stored_type.as_pointer()
                    )
                    result, size = (where, 8) if k.indices else (best, self.dtype.itemsize)
                    b.call(store, [result, slot, ir.Constant(i32, size), stored])

                self._flat_loop(b, c64(0), c64(ow), "chunk", chunk, step=lanes)

            self._flat_loop(b, c64(0), c64(oh), "row", row)

        self._flat_loop(b, b.mul(lo, c64(channels)), b.mul(hi, c64(channels)), "plane", plane)
        b.ret_void()

    def _emit_indices(self) -> None:
        """Per output pixel, the window's taps in order: a tap is taken when it is the first
        inside the input, or larger than the best so far, or a NaN where the best is not (an
        unordered comparison, unless the best is itself NaN); branch-free selects."""
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        _, channels, height, width = k.x.shape
        _, _, oh, ow = k.out_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k.kernel_size, k.stride, k.padding, k.dilation
        b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        out, x, lo, hi = self.fn.args
        bit = ir.IntType(1)
        true, false = ir.Constant(bit, 1), ir.Constant(bit, 0)

        def plane(b, p):  # p = image * C + channel
            source = b.gep(x, [b.mul(p, c64(height * width))])
            target = b.gep(out, [b.mul(p, c64(oh * ow))])

            def row(b, r):
                def column(b, c):
                    found, best, where = false, ir.Constant(self.t, 0.0), c64(0)
                    for i in range(kh):
                        y = b.add(b.mul(r, c64(sh)), c64(i * dh - ph))
                        row_inside = (
                            b.icmp_unsigned("<", y, c64(height))
                            if ph or (oh - 1) * sh + i * dh >= height
                            else true
                        )
                        for j in range(kw):
                            xx = b.add(b.mul(c, c64(sw)), c64(j * dw - pw))
                            inside = row_inside
                            if pw or (ow - 1) * sw + j * dw >= width:
                                inside = b.and_(inside, b.icmp_unsigned("<", xx, c64(width)))
                            at = b.select(inside, b.add(b.mul(y, c64(width)), xx), c64(0))
                            value = b.load(b.gep(source, [at], inbounds=True))
                            better = b.and_(
                                b.fcmp_unordered(">", value, best), b.fcmp_ordered("ord", best, best)
                            )
                            take = b.and_(inside, b.or_(b.not_(found), better))
                            best = b.select(take, value, best)
                            where = b.select(take, at, where)
                            found = b.or_(found, inside)
                    b.store(where, b.gep(target, [b.add(b.mul(r, c64(ow)), c)], inbounds=True))

                self._flat_loop(b, c64(0), c64(ow), "column", column)

            self._flat_loop(b, c64(0), c64(oh), "row", row)

        self._flat_loop(b, b.mul(lo, c64(channels)), b.mul(hi, c64(channels)), "plane", plane)
        b.ret_void()


class _PoolBackwardEmitter(_Code):
    """`void name(T* out, T* g, i64* indices, i64 lo, i64 hi)`: images lo..hi of
    max_pool2d_backward: each plane zeroed, then every gradient value added at its index in
    order (an index outside the plane adds nothing)."""

    def __init__(self, module: ir.Module, kernel: PoolBackward) -> None:
        t = _float_type(kernel.dtype)
        super().__init__(
            module, kernel.name, kernel.dtype, [t.as_pointer(), t.as_pointer(), I64.as_pointer(), I64, I64]
        )
        self.kernel = kernel
        for a in self.fn.args[:3]:
            a.add_attribute("noalias")

    def emit(self) -> None:
        k = self.kernel
        c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
        _, channels, height, width = k.out_shape
        _, _, oh, ow = k.g.shape
        plane_size, pooled = height * width, oh * ow
        b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        out, g, indices, lo, hi = self.fn.args
        zero = ir.Constant(self.t, 0.0)

        def plane(b, p):  # p = image * C + channel
            target = b.gep(out, [b.mul(p, c64(plane_size))])
            grads = b.gep(g, [b.mul(p, c64(pooled))])
            where = b.gep(indices, [b.mul(p, c64(pooled))])
            self._flat_loop(
                b, c64(0), c64(plane_size), "zero", lambda b, i: b.store(zero, b.gep(target, [i]))
            )

            def scatter(b, q):
                at = b.load(b.gep(where, [q], inbounds=True))
                valid = b.icmp_unsigned("<", at, c64(plane_size))
                slot = b.gep(target, [b.select(valid, at, c64(0))], inbounds=True)
                value = b.select(valid, b.load(b.gep(grads, [q], inbounds=True)), zero)
                b.store(b.fadd(b.load(slot), value), slot)

            self._flat_loop(b, c64(0), c64(pooled), "scatter", scatter)

        self._flat_loop(b, b.mul(lo, c64(channels)), b.mul(hi, c64(channels)), "plane", plane)
        b.ret_void()


def _packed_entry(module: ir.Module, fn: ir.Function) -> None:
    """`void <name>.packed(i64* args, i64 lo, i64 hi)`: `fn` with its arguments (all but lo, hi)
    read from an array, the one signature the worker pool calls."""
    ptr = I64.as_pointer()
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, I64, I64]), name=f"{fn.name}.packed")
    args, lo, hi = entry.args
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    values = []
    for i, a in enumerate(fn.args[:-2]):
        value = b.load(b.gep(args, [ir.Constant(I64, i)], inbounds=True))
        values.append(b.inttoptr(value, a.type) if isinstance(a.type, ir.PointerType) else value)
    b.call(fn, [*values, lo, hi])
    b.ret_void()


def render_entry(module: ir.Module, counts: list[int], name: str = "graph_entry") -> None:
    """`void graph_entry(i64* table, i64 pool_state, i64 dispatch)`: kernel calls in order, call
    i reading `counts[i]` arguments, then the address of the `.packed` entry to run them with,
    its range and its number of parts, from consecutive words of `table`. A call of more than
    one part goes to the worker pool through `dispatch` (graphc_dispatch's address); the others
    run directly over their whole range. The whole graph in one call from Python."""
    ptr = I64.as_pointer()
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, I64, I64]), name=name)
    table, state, dispatch = entry.args
    dispatch_type = ir.FunctionType(ir.VoidType(), [ptr, I64, ptr, I64, I64]).as_pointer()
    packed_type = ir.FunctionType(ir.VoidType(), [ptr, I64, I64]).as_pointer()
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    at = 0
    for i, count in enumerate(counts):
        words = b.gep(table, [ir.Constant(I64, at)], inbounds=True)
        target = b.load(b.gep(table, [ir.Constant(I64, at + count)], inbounds=True))
        extent = b.load(b.gep(table, [ir.Constant(I64, at + count + 1)], inbounds=True))
        parts = b.load(b.gep(table, [ir.Constant(I64, at + count + 2)], inbounds=True))
        split = entry.append_basic_block(f"split{i}")
        direct = entry.append_basic_block(f"direct{i}")
        after = entry.append_basic_block(f"after{i}")
        b.cbranch(b.icmp_signed(">", parts, ir.Constant(I64, 1)), split, direct)
        b.position_at_end(split)
        b.call(b.inttoptr(dispatch, dispatch_type), [b.inttoptr(state, ptr), target, words, extent, parts])
        b.branch(after)
        b.position_at_end(direct)
        b.call(b.inttoptr(target, packed_type), [words, ir.Constant(I64, 0), extent])
        b.branch(after)
        b.position_at_end(after)
        at += count + 3
    b.ret_void()


def render(kernels: list, name: str = "graphc", vector_bits: int = 256) -> ir.Module:
    """An LLVM module with one function per kernel (`Kernel`, `Matmul`, `Conv2d`, `Pool2d`),
    each also as `<name>.packed` (arguments in an array, for the worker pool); matmuls and
    convolutions are blocked for `vector_bits`-wide vector registers."""
    module = ir.Module(name=name)
    for kernel in kernels:
        if isinstance(kernel, Matmul):
            _MatmulEmitter(module, kernel, vector_bits).emit()
        elif isinstance(kernel, Conv2d):
            _ConvEmitter(module, kernel, vector_bits).emit()
        elif isinstance(kernel, Pool2d):
            _PoolEmitter(module, kernel, vector_bits).emit()
        elif isinstance(kernel, PoolBackward):
            _PoolBackwardEmitter(module, kernel).emit()
        elif isinstance(kernel, ConvWeightGrad):
            _WeightGradEmitter(module, kernel, vector_bits).emit()
        else:
            _Emitter(module, kernel).emit()
        _packed_entry(module, module.globals[kernel.name])
        if isinstance(kernel, Matmul):
            _packed_entry(module, module.globals[f"{kernel.name}.cols"])
    return module


def render_data(module: ir.Module, name: str, data: bytes) -> None:
    """Constants `name` (the bytes `data`) and `name`_size (their length, an i64), exported
    from the library (the graph's execution plan rides with its code)."""
    array = ir.ArrayType(ir.IntType(8), len(data))
    for symbol, kind, value in ((name, array, bytearray(data)), (f"{name}_size", I64, len(data))):
        constant = ir.GlobalVariable(module, kind, name=symbol)
        constant.global_constant = True
        constant.initializer = ir.Constant(kind, value)
