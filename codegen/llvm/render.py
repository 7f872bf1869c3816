"""Render kernels as LLVM IR (llvmlite.ir).

A kernel becomes `void name(T* noalias out, T* noalias in0, ..., i64 sym0, ..., i64 lo, i64 hi)`:
a loop nest over its ranges, the outermost from lo to hi where the kernel is splittable (the
innermost is contiguous, so LLVM's loop vectorizer widens it); each input is read at
`sum(i_k * stride_k)` with strides computed once from the sizes (0 where broadcast); reductions
combine into outputs that start at the identity.
"""

from __future__ import annotations

from llvmlite import ir

from codegen.kernel import Binary, Const, Expr, Kernel, Load, Unary
from ir import dtypes

I64 = ir.IntType(64)


def _float_type(dtype: dtypes.DType):
    if dtype is dtypes.float32:
        return ir.FloatType()
    if dtype is dtypes.float64:
        return ir.DoubleType()
    raise NotImplementedError(f"the LLVM renderer handles float32 and float64 kernels, not {dtype}")


class _Emitter:
    def __init__(self, module: ir.Module, kernel: Kernel) -> None:
        self.module = module
        self.kernel = kernel
        self.t = _float_type(kernel.dtype)
        self.suffix = "f32" if kernel.dtype is dtypes.float32 else "f64"
        ptr = self.t.as_pointer()
        # then `lo, hi`: the part of the outermost range this call covers (calls on disjoint parts
        # may run on different threads)
        args = [ptr] * (1 + len(kernel.inputs)) + [I64] * (len(kernel.symbols) + 2)
        self.fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name=kernel.name)
        for a in self.fn.args[: 1 + len(kernel.inputs)]:
            a.add_attribute("noalias")
        self.out = self.fn.args[0]
        self.ins = self.fn.args[1 : 1 + len(kernel.inputs)]
        self.sizes = dict(zip(kernel.symbols, self.fn.args[1 + len(kernel.inputs) : -2], strict=True))
        self.lo, self.hi = self.fn.args[-2:]

    def size(self, b: ir.IRBuilder, d):
        return ir.Constant(I64, d) if isinstance(d, int) else self.sizes[d]

    def product(self, b: ir.IRBuilder, dims) -> ir.Value:
        value = ir.Constant(I64, 1)
        for d in dims:
            value = b.mul(value, self.size(b, d))
        return value

    def intrinsic(self, name: str, arity: int = 1):
        full = f"llvm.{name}.{self.suffix}"
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(self.t, [self.t] * arity), name=full)

    def libm(self, name: str):
        symbol = name + ("f" if self.kernel.dtype is dtypes.float32 else "")
        existing = self.module.globals.get(symbol)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(self.t, [self.t]), name=symbol)

    def expr(self, b: ir.IRBuilder, e: Expr, offsets: list) -> ir.Value:
        if isinstance(e, Load):
            return b.load(b.gep(self.ins[e.index], [offsets[e.index]], inbounds=True))
        if isinstance(e, Const):
            return ir.Constant(self.t, e.value)
        if isinstance(e, Unary):
            x = self.expr(b, e.x, offsets)
            return self.unary(b, e.op, x)
        if isinstance(e, Binary):
            a = self.expr(b, e.a, offsets)
            c = self.expr(b, e.b, offsets)
            return self.binary(b, e.op, a, c)
        raise TypeError(f"unknown kernel expression {e!r}")

    def unary(self, b: ir.IRBuilder, op: str, x: ir.Value) -> ir.Value:
        zero, one = ir.Constant(self.t, 0.0), ir.Constant(self.t, 1.0)
        if op == "neg":
            return b.fneg(x)
        if op == "exp":
            return self.exp(b, x)
        if op in ("abs", "log", "sqrt"):
            return b.call(self.intrinsic("fabs" if op == "abs" else op), [x])
        if op == "tanh":
            return self.tanh(b, x)
        if op == "sigmoid":
            return b.fdiv(one, b.fadd(one, self.exp(b, b.fneg(x))))
        if op == "relu":  # numpy's maximum(x, 0): NaN stays NaN
            return b.call(self.intrinsic("maximum", 2), [x, zero])
        raise NotImplementedError(f"unary op {op} in a kernel")

    def const(self, value: float) -> ir.Constant:
        return ir.Constant(self.t, value)

    def poly(self, b: ir.IRBuilder, x: ir.Value, coefficients: tuple[float, ...]) -> ir.Value:
        """Horner's rule, highest power first."""
        acc = self.const(coefficients[0])
        for c in coefficients[1:]:
            acc = b.fadd(b.fmul(acc, x), self.const(c))
        return acc

    def exp(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        """float32: Cephes' expf in straight-line arithmetic (range reduction by ln 2, a degree-5
        polynomial, scaling by 2^n through the exponent bits), so the loop vectorizes instead of
        calling libm per element; about 1 ulp. float64 keeps LLVM's exp."""
        if self.kernel.dtype is not dtypes.float32:
            return b.call(self.intrinsic("exp"), [x])
        i32 = ir.IntType(32)
        clamped = b.call(
            self.intrinsic("minnum", 2),
            [b.call(self.intrinsic("maxnum", 2), [x, self.const(-104.0)]), self.const(89.0)],
        )
        n = b.call(
            self.intrinsic("floor"),
            [b.fadd(b.fmul(clamped, self.const(1.44269504088896341)), self.const(0.5))],
        )
        r = b.fsub(b.fsub(clamped, b.fmul(n, self.const(0.693359375))), b.fmul(n, self.const(-2.12194440e-4)))
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
        y = b.fadd(b.fadd(b.fmul(p, b.fmul(r, r)), r), self.const(1.0))
        k = b.fptosi(n, i32)  # in [-150, 128]: scale in two halves so neither leaves float range
        k1 = b.ashr(k, ir.Constant(i32, 1))
        k2 = b.sub(k, k1)
        for part in (k1, k2):
            bits = b.shl(b.add(part, ir.Constant(i32, 127)), ir.Constant(i32, 23))
            y = b.fmul(y, b.bitcast(bits, self.t))
        return b.select(b.fcmp_unordered("uno", x, x), x, y)

    def tanh(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        """float32: Cephes' tanhf (an odd polynomial below 0.625, 1 - 2/(e^2|x| + 1) above), both
        computed and selected so the loop vectorizes. float64 calls libm's tanh."""
        if self.kernel.dtype is not dtypes.float32:
            return b.call(self.libm("tanh"), [x])
        z = b.call(self.intrinsic("fabs"), [x])
        two = self.const(2.0)
        large = b.fsub(self.const(1.0), b.fdiv(two, b.fadd(self.exp(b, b.fmul(two, z)), self.const(1.0))))
        large = b.call(self.intrinsic("copysign", 2), [large, x])
        s = b.fmul(x, x)
        p = self.poly(
            b,
            s,
            (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1),
        )
        small = b.fadd(b.fmul(b.fmul(p, s), x), x)
        return b.select(b.fcmp_ordered(">", z, self.const(0.625)), large, small)

    def combine(self, b: ir.IRBuilder, op: str, acc: ir.Value, value: ir.Value) -> ir.Value:
        """One step of a reduction. Sums may be reassociated (so they vectorize: the order of
        additions differs from numpy's pairwise sum by rounding); max and min propagate NaN."""
        if op == "sum":
            total = b.fadd(acc, value)
            total.flags.append("reassoc")
            return total
        return b.call(self.intrinsic("maximum" if op == "max" else "minimum", 2), [acc, value])

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
            return b.call(self.intrinsic(op, 2), [x, y])
        raise NotImplementedError(f"binary op {op} in a kernel")

    def emit(self) -> None:
        k = self.kernel
        entry = self.fn.append_basic_block("entry")
        b = ir.IRBuilder(entry)
        bounds = [self.size(b, d) for d in k.ranges]
        strides = []
        for i in range(len(k.inputs)):
            strides.append([0 if s == 0 else self.product(b, s) for s in k.strides(i)])
        out_strides = [0 if s == 0 else self.product(b, s) for s in k.out_strides()]
        if k.splittable:  # this call's outputs: the rows lo..hi of the outermost range
            first, last = b.mul(self.lo, out_strides[0]), b.mul(self.hi, out_strides[0])
        else:
            first, last = ir.Constant(I64, 0), self.product(b, k.out_shape)
        if k.reduce is not None:  # start every output at the combination's identity
            identity = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}[k.reduce.op]
            self._flat_loop(
                b, first, last, "init", lambda b, i: b.store(self.const(identity), b.gep(self.out, [i]))
            )
        base = [ir.Constant(I64, 0)] * (len(k.inputs) + 1)
        self._nest(b, 0, bounds, strides, out_strides, base)
        if k.reduce is not None and k.reduce.mean:
            combined = self.product(b, [k.ranges[a] for a in k.reduce.axes])
            scale = b.fdiv(self.const(1.0), b.sitofp(combined, self.t))  # 0 values: inf, and 0 * inf is NaN

            def divide(b, i):
                slot = b.gep(self.out, [i])
                b.store(b.fmul(b.load(slot), scale), slot)

            self._flat_loop(b, first, last, "mean", divide)
        b.ret_void()

    def _flat_loop(self, b: ir.IRBuilder, start: ir.Value, stop: ir.Value, label: str, body) -> None:
        """for i in range(start, stop): body(b, i); leaves `b` after the loop."""
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
        i.add_incoming(b.add(i, ir.Constant(I64, 1)), b.block)
        b.branch(head)
        b.position_at_end(done)

    def _nest(self, b, depth, bounds, strides, out_strides, base) -> None:
        """The loops from `depth` inwards; `base` holds the offsets of the enclosing loops per
        buffer (inputs, then the output). Leaves `b` after the loops."""
        k = self.kernel
        if depth == len(bounds):  # the loop body
            value = self.expr(b, k.body, base[:-1])
            slot = b.gep(self.out, [base[-1]], inbounds=True)
            if k.reduce is not None:
                value = self.combine(b, k.reduce.op, b.load(slot), value)
            b.store(value, slot)
            return
        outer = depth == 0 and k.splittable

        def body(b, i):
            offsets = []
            for s, start in zip([*strides, out_strides], base, strict=True):
                step = s[depth]
                offsets.append(start if step == 0 else b.add(start, b.mul(i, step)))
            self._nest(b, depth + 1, bounds, strides, out_strides, offsets)

        start = self.lo if outer else ir.Constant(I64, 0)
        self._flat_loop(b, start, self.hi if outer else bounds[depth], f"loop{depth}", body)


def render(kernels: list[Kernel], name: str = "graphc") -> ir.Module:
    """An LLVM module with one function per kernel."""
    module = ir.Module(name=name)
    for kernel in kernels:
        _Emitter(module, kernel).emit()
    return module
