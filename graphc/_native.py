"""Compiled kernels for eager ops: the CPU compiler runs eager float32 convolutions (forward,
input and weight gradients), max pooling (values, indices, backward), and softmax and layer
norm over the last dims (forward and backward).

An eager call large enough to pay for it runs through a one-node graph compiled by `codegen`
(the batch symbolic, so one compilation serves every batch size of a layer), instead of numpy's
im2col, per-sample GEMMs and strided views. The op's `OpDef` stays its definition: the compiled
graphs are checked against it by the tests, and every case the kernels do not cover (other
dtypes, strides of a transposed convolution, small work) returns None here, so the reference
implementation runs. The first call of a new geometry compiles it (0.1-0.3 s, then
milliseconds from the disk cache); a geometry that does not compile to a native entry is
remembered and left to numpy.

`GRAPHC_EAGER_KERNELS=0` turns this off.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ir import dtypes
from ir.graph import Graph
from ir.ops.registry import OPS
from ir.types import TensorType

# multiply-adds (about: input pixels for output pixels) below which numpy's call is as fast
# (a native call costs ~5 us more in Python)
MIN_WORK = 500_000
_compiled: dict[tuple, object] = {}  # geometry -> CompiledGraph or PlannedGraph, or None where none is native
_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get("GRAPHC_EAGER_KERNELS", "1") != "0"


# False while a model is traced (graphc.script): the example runs through the reference unless
# its kernel is already compiled, since compiling one for it would cost more than it saves
# (the scripted module is compiled as a whole anyway)
compile_new = True


def _compiled_or_none(key: tuple, build) -> object | None:
    """The compiled graph of `key`, built by `build()` on its first use; None where its graph
    does not run natively. Runs single-threaded: eager work is interleaved with numpy's BLAS,
    whose threads keep spinning after each call and would fight a second pool for the cores
    (measured: LeNet's batch-64 step 8.5 ms with one thread, 12.8 ms with the worker pool)."""
    found = _compiled.get(key, False)
    if found is not False:
        return found
    if not compile_new:
        return None
    with _lock:
        if key not in _compiled:
            from codegen import ready

            compiled = ready(build())  # (the cache's code runs from its plan: no scheduling)
            if compiled.native is not None:
                compiled.native.workers = 1
            _compiled[key] = compiled if compiled.native is not None else None
    return _compiled[key]


def _attrs_key(attrs: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()))


def _conv_graph(op: str, x, w, b, attrs: dict) -> Graph:
    """A graph of one `op` node (conv2d, conv_transpose2d) over inputs x (batch symbolic), w
    (and b)."""
    t = dtypes.from_numpy(x.dtype)
    g = Graph(f"eager_{op}")
    ins = [
        g.add_input("x", TensorType(t, ("batch", *x.shape[1:]))),
        g.add_input("w", TensorType(t, tuple(w.shape))),
    ]
    if b is not None:
        ins.append(g.add_input("b", TensorType(t, tuple(b.shape))))
    g.set_outputs(g.add_node(op, ins, attrs))
    return g


def _fits(x, w, b) -> bool:
    return (
        type(x) is np.ndarray
        and x.dtype == np.float32
        and x.ndim == 4
        and type(w) is np.ndarray
        and w.dtype == np.float32
        and w.ndim == 4
        and (b is None or (type(b) is np.ndarray and b.dtype == np.float32))
    )


def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """conv2d through the compiled kernel, or None where the reference should run it."""
    if not _fits(x, w, b) or x.shape[0] == 0:
        return None
    o, cg, kh, kw = w.shape
    if x.shape[1] != cg * groups or o % groups:
        return None  # the reference names the mismatch
    work = x.shape[0] * o * x.shape[2] * x.shape[3] * cg * kh * kw
    if work < MIN_WORK:
        return None
    attrs = {
        "stride": tuple(stride),
        "padding": tuple(padding),
        "dilation": tuple(dilation),
        "groups": groups,
    }
    key = ("conv2d", x.shape[1:], w.shape, b is not None, _attrs_key(attrs))
    compiled = _compiled_or_none(key, lambda: _conv_graph("conv2d", x, w, b, attrs))
    if compiled is None:
        return None
    return compiled.run([x, w] if b is None else [x, w, b])[0]


def conv_transpose2d(x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1):
    """A transposed convolution through compiled kernels: the graph of one `conv_transpose2d`
    node, which the compiler decomposes into convolutions (ir.passes.rewrite); None where the
    reference should run it (other dtypes, little work, or shapes the reference refuses)."""
    if not _fits(x, w, None) or x.shape[0] == 0:
        return None
    ci, cog, kh, kw = w.shape
    if x.shape[1] != ci or ci % groups or min(stride) < 1 or min(dilation) < 1:
        return None  # the reference names the mismatch
    out = [
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(
            x.shape[2:], stride, padding, dilation, (kh, kw), output_padding, strict=True
        )
    ]
    if min(out) <= 0 or x.shape[0] * cog * x.shape[2] * x.shape[3] * ci * kh * kw < MIN_WORK:
        return None
    attrs = {
        "stride": tuple(stride),
        "padding": tuple(padding),
        "output_padding": tuple(output_padding),
        "dilation": tuple(dilation),
        "groups": groups,
    }

    key = ("conv_transpose2d", x.shape[1:], w.shape, _attrs_key(attrs))
    compiled = _compiled_or_none(key, lambda: _conv_graph("conv_transpose2d", x, w, None, attrs))
    if compiled is None:
        return None
    return compiled.run([x, w])[0]


def conv2d_weight_grad(x, g, weight_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """conv2d's weight gradient through the compiled kernel (stride 1), or None where the
    reference should run it."""
    if not _fits(x, g, None) or tuple(stride) != (1, 1) or x.shape[0] != g.shape[0]:
        return None
    o, cg, kh, kw = weight_shape
    if x.shape[1] != cg * groups or g.shape[1] != o or o % groups:
        return None  # the reference names the mismatch
    if x.shape[0] * o * cg * kh * kw * g.shape[2] * g.shape[3] < MIN_WORK:
        return None
    attrs = {
        "weight_shape": tuple(weight_shape),
        "stride": (1, 1),
        "padding": tuple(padding),
        "dilation": tuple(dilation),
        "groups": groups,
    }

    def build():
        t = dtypes.from_numpy(x.dtype)
        graph = Graph("eager_conv2d_weight_grad")
        xv = graph.add_input("x", TensorType(t, ("batch", *x.shape[1:])))
        gv = graph.add_input("g", TensorType(t, ("batch", *g.shape[1:])))
        (y,) = graph.add_node("conv2d_weight_grad", [xv, gv], attrs)
        graph.set_outputs([y])
        return graph

    key = ("conv2d_weight_grad", x.shape[1:], g.shape[1:], _attrs_key(attrs))
    compiled = _compiled_or_none(key, build)
    return None if compiled is None else compiled.run([x, g])[0]


# input elements below which numpy's pooling is as fast as a compiled call
MIN_POOL = 1 << 16


def max_pool2d(x, kernel_size, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """(values, indices) of max_pool2d through compiled kernels, or None where the reference
    should run it."""
    kh, kw = kernel_size
    if type(x) is not np.ndarray or x.dtype != np.float32 or x.ndim != 4 or x.size < MIN_POOL or kh * kw > 64:
        return None
    if padding[0] * 2 > kh or padding[1] * 2 > kw:
        return None  # the reference names the error
    attrs = {
        "kernel_size": tuple(kernel_size),
        "stride": tuple(stride),
        "padding": tuple(padding),
        "dilation": tuple(dilation),
        "ceil_mode": bool(ceil_mode),
    }

    def build():
        graph = Graph("eager_max_pool2d")
        xv = graph.add_input("x", TensorType(dtypes.float32, ("batch", *x.shape[1:])))
        graph.set_outputs(graph.add_node("max_pool2d", [xv], attrs))
        return graph

    compiled = _compiled_or_none(("max_pool2d", x.shape[1:], _attrs_key(attrs)), build)
    return None if compiled is None else tuple(compiled.run([x]))


def max_pool2d_backward(g, indices, height, width, overlapping=True):
    """max_pool2d's input gradient through a compiled kernel, or None where the reference
    should run it."""
    if (
        type(g) is not np.ndarray
        or g.dtype != np.float32
        or g.ndim != 4
        or g.shape[0] * g.shape[1] * height * width < MIN_POOL
    ):
        return None
    if type(indices) is not np.ndarray or indices.dtype != np.int64 or indices.shape != g.shape:
        return None

    def build():
        graph = Graph("eager_max_pool2d_backward")
        gv = graph.add_input("g", TensorType(dtypes.float32, ("batch", *g.shape[1:])))
        iv = graph.add_input("indices", TensorType(dtypes.int64, ("batch", *g.shape[1:])))
        attrs = {"height": height, "width": width, "overlapping": bool(overlapping)}
        graph.set_outputs(graph.add_node("max_pool2d_backward", [gv, iv], attrs))
        return graph

    compiled = _compiled_or_none(("max_pool2d_backward", g.shape[1:], height, width), build)
    return None if compiled is None else compiled.run([g, indices])[0]


# elements below which numpy's row-wise ops (softmax, layer norm) are as fast as a compiled call
MIN_ROWS = 1 << 14


def _rows(op_name: str, arrays: list, attrs: dict, trailing: int):
    """Run `op_name` on float32 arrays through a graph of their (rows, n) views, rows symbolic
    and n the product of the last `trailing` dims (None entries stay None: optional inputs);
    None where the reference should run it. The first array sets the shape; the others of its
    shape are viewed as rows too, the rest (weights) flattened."""
    x = arrays[0]
    if x.size < MIN_ROWS or x.ndim < trailing:
        return None
    for a in arrays:
        if a is not None and (type(a) is not np.ndarray or a.dtype != np.float32):
            return None
    n = int(np.prod(x.shape[x.ndim - trailing :]))
    flat = [None if a is None else a.reshape(-1, n) if a.shape == x.shape else a.reshape(n) for a in arrays]
    kinds = tuple(None if a is None else a.ndim for a in flat)

    def build():
        graph = Graph(f"eager_{op_name}")
        inputs = [
            None if k is None else graph.add_input(f"x{i}", TensorType(dtypes.float32, ("rows", n)[2 - k :]))
            for i, k in enumerate(kinds)
        ]
        graph.set_outputs(graph.add_node(op_name, inputs, attrs))
        return graph

    compiled = _compiled_or_none((op_name, n, kinds, _attrs_key(attrs)), build)
    if compiled is None:
        return None
    return compiled.run([a for a in flat if a is not None])[0].reshape(x.shape)


def softmax(x, dim):
    return _rows("softmax", [x], {"dim": 1}, 1) if dim == x.ndim - 1 else None


def softmax_backward(y, g, dim):
    if dim != y.ndim - 1 or getattr(g, "shape", None) != y.shape:
        return None
    return _rows("softmax_backward", [y, g], {"dim": 1}, 1)


def _last(dims, ndim) -> bool:
    return tuple(dims) == tuple(range(ndim - len(dims), ndim)) and len(dims) > 0


def layer_norm(x, w=None, b=None, dims=(-1,), eps=1e-5):
    if not _last(dims, x.ndim):
        return None
    shape = x.shape[x.ndim - len(dims) :]
    if any(t is not None and getattr(t, "shape", None) != shape for t in (w, b)):
        return None  # the reference names the mismatch
    return _rows("layer_norm", [x, w, b], {"dims": (1,), "eps": float(eps)}, len(dims))


def layer_norm_backward(x, w, g, dims=(-1,), eps=1e-5):
    if not _last(dims, x.ndim) or getattr(g, "shape", None) != x.shape:
        return None
    if w is not None and getattr(w, "shape", None) != x.shape[x.ndim - len(dims) :]:
        return None
    return _rows("layer_norm_backward", [x, w, g], {"dims": (1,), "eps": float(eps)}, len(dims))


def bernoulli(p, seed):
    """A float32 or float64 mask through a compiled kernel computing the counter-based
    generator in place (no counter in memory), or None where the reference should run it."""
    if type(p) is not np.ndarray or p.dtype not in (np.float32, np.float64) or p.size < MIN_ROWS:
        return None
    t = dtypes.from_numpy(p.dtype)

    def build():
        from ir.ops.creation import GraphArrays, counter_uniform

        graph = Graph("eager_bernoulli")
        probability = graph.add_input("p", TensorType(t, ("n",)))
        key = graph.add_input("key", TensorType(dtypes.int64, ()))
        (index,) = graph.add_node("arange", [], {"start": 0, "end": "n", "step": 1, "dtype": "int64"})
        arrays = GraphArrays(
            lambda op, inputs, attrs: graph.add_node(op, inputs, attrs)[0],
            lambda array: graph.add_weight(f"c{len(graph.weights)}", array),
        )
        u = counter_uniform(arrays, index, key, p.dtype)
        (keep,) = graph.add_node("lt", [u, probability])  # (the reference's `u < p`)
        graph.set_outputs(graph.add_node("cast", [keep], {"dtype": t.name}))
        return graph

    compiled = _compiled_or_none(("bernoulli", t.name), build)
    if compiled is None:
        return None
    from ir.ops.creation import stream_key

    key = np.array(stream_key(seed), dtype=np.int64)
    return compiled.run([p.reshape(-1), key])[0].reshape(p.shape)


# op -> its compiled implementation, which returns None for the cases it leaves to the reference
ACCELERATED = {
    OPS["conv2d"]: conv2d,
    OPS["conv_transpose2d"]: conv_transpose2d,
    OPS["conv2d_weight_grad"]: conv2d_weight_grad,
    OPS["max_pool2d"]: max_pool2d,
    OPS["max_pool2d_backward"]: max_pool2d_backward,
    OPS["softmax"]: softmax,
    OPS["softmax_backward"]: softmax_backward,
    OPS["layer_norm"]: layer_norm,
    OPS["layer_norm_backward"]: layer_norm_backward,
    OPS["bernoulli"]: bernoulli,
}
