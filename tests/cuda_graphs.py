"""Graphs that cover every kernel kind of the kernel IR, shared by the CUDA tests (the
renderer and its emulation in tests/codegen, the real GPU in tests/gpu), with their inputs."""

import numpy as np

from ir.parser import parse_graph

SPECIAL = np.array([0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 3.0])

GRAPHS = {
    "float chain with broadcasts": """
graph g(%x: f32[batch,8], %col: f32[8], %row: f32[batch,1], %s: f32[]) {
  %0: f32[batch,8] = mul(%x, %col)
  %1: f32[batch,8] = add(%0, %row)
  %2: f32[batch,8] = tanh(%1)
  %3: f32[batch,8] = maximum(%2, %s)
  %4: f32[batch,8] = sigmoid(%3)
  return %4
}""",
    "every float op": """
graph g(%x: f32[batch,6], %y: f32[batch,6]) {
  %0: f32[batch,6] = abs(%x)
  %1: f32[batch,6] = sqrt(%0)
  %2: f32[batch,6] = log(%1)
  %3: f32[batch,6] = exp(%2)
  %4: f32[batch,6] = rsqrt(%3)
  %5: f32[batch,6] = reciprocal(%4)
  %6: f32[batch,6] = floor(%5)
  %7: f32[batch,6] = ceil(%x)
  %8: f32[batch,6] = trunc(%y)
  %9: f32[batch,6] = erf(%x)
  %10: f32[batch,6] = sin(%y)
  %11: f32[batch,6] = cos(%x)
  %12: f32[batch,6] = exp2(%y)
  %13: f32[batch,6] = log2(%0)
  %14: f32[batch,6] = log10(%0)
  %15: f32[batch,6] = expm1(%y)
  %16: f32[batch,6] = log1p(%0)
  %17: f32[batch,6] = relu(%x)
  %18: f32[batch,6] = neg(%y)
  %19: f32[batch,6] = sub(%6, %7)
  %20: f32[batch,6] = div(%8, %9)
  %21: f32[batch,6] = minimum(%10, %11)
  %22: f32[batch,6] = add(%12, %13)
  %23: f32[batch,6] = mul(%14, %15)
  %24: f32[batch,6] = add(%16, %17)
  %25: f32[batch,6] = add(%18, %19)
  %26: f32[batch,6] = add(%20, %21)
  %27: f32[batch,6] = add(%22, %23)
  %28: f32[batch,6] = add(%24, %25)
  %29: f32[batch,6] = add(%26, %27)
  %30: f32[batch,6] = add(%28, %29)
  return %30
}""",
    "float64": """
graph g(%x: f64[batch,5], %y: f64[5]) {
  %0: f64[batch,5] = mul(%x, %y)
  %1: f64[batch,5] = tanh(%0)
  %2: f64[batch,5] = exp(%1)
  return %2
}""",
    # (x and y hold the same special values at the same places: equal pairs, NaN against NaN)
    "comparisons, logic, where and predicates": """
graph g(%x: f32[batch,8], %y: f32[batch,8]) {
  %0: bool[batch,8] = lt(%x, %y)
  %1: bool[batch,8] = ne(%x, %y)
  %2: bool[batch,8] = isnan(%x)
  %3: bool[batch,8] = isinf(%y)
  %4: bool[batch,8] = logical_or(%2, %3)
  %5: bool[batch,8] = logical_and(%0, %1)
  %6: bool[batch,8] = logical_not(%4)
  %7: bool[batch,8] = logical_and(%5, %6)
  %8: f32[batch,8] = where(%7, %x, %y)
  %9: bool[batch,8] = isfinite(%8)
  %10: bool[batch,8] = eq(%x, %y)
  %11: bool[batch,8] = le(%x, %y)
  %12: bool[batch,8] = gt(%x, %y)
  %13: bool[batch,8] = ge(%x, %y)
  return %0, %1, %2, %3, %4, %8, %9, %10, %11, %12, %13
}""",
    "casts from bytes, ints and bools": """
graph g(%q: u8[batch,4], %i: i32[batch,4], %b: bool[batch,4]) {
  %0: f32[batch,4] = cast[dtype="float32"](%q)
  %1: f32[batch,4] = cast[dtype="float32"](%i)
  %2: f32[batch,4] = cast[dtype="float32"](%b)
  %3: f32[batch,4] = add(%0, %1)
  %4: f32[batch,4] = add(%3, %2)
  %5: i64[batch,4] = cast[dtype="int64"](%q)
  %6: bool[batch,4] = cast[dtype="bool"](%4)
  return %4, %5, %6
}""",
    "integer arithmetic": """
graph g(%x: i64[batch,5], %y: i64[batch,5], %z: i32[batch,5]) {
  %0: i64[batch,5] = add(%x, %y)
  %1: i64[batch,5] = mul(%0, %x)
  %2: i64[batch,5] = maximum(%1, %y)
  %3: i64[batch,5] = neg(%2)
  %4: i64[batch,5] = abs(%3)
  %5: i32[batch,5] = relu(%z)
  %6: i32[batch,5] = minimum(%5, %z)
  %7: i32[batch,5] = sub(%6, %z)
  return %4, %7
}""",
    "sums, means and extremes": """
graph g(%x: f32[batch,7,9], %i: i32[batch,5]) {
  %0: f32[batch,7,9] = exp(%x)
  %1: f32[batch,9] = sum[dims=(1,), keepdim=False](%0)
  %2: f32[batch,1,1] = mean[dims=(1, 2), keepdim=True](%x)
  %3: f32[7] = amax[dims=(0, 2), keepdim=False](%x)
  %4: f32[batch,7] = amin[dims=(2,), keepdim=False](%x)
  %5: f32[] = sum(%x)
  %6: i64[batch] = sum[dims=(1,), keepdim=False](%i)
  %7: i32[5] = amax[dims=(0,), keepdim=False](%i)
  %8: f32[batch,7,9] = abs(%x)
  %9: f32[batch,7,9] = neg(%8)
  %10: f32[batch,7] = amax[dims=(2,), keepdim=False](%9)
  return %1, %2, %3, %4, %5, %6, %7, %10
}""",
    "softmax, log_softmax and a per-row quotient": """
graph g(%x: f32[batch,10], %y: f32[batch,10]) {
  %0: f32[batch,1] = amax[dims=(1,), keepdim=True](%x)
  %1: f32[batch,10] = sub(%x, %0)
  %2: f32[batch,10] = exp(%1)
  %3: f32[batch,1] = sum[dims=(1,), keepdim=True](%2)
  %4: f32[batch,10] = div(%2, %3)
  %5: f32[batch,10] = log_softmax[dim=1](%y)
  %6: f32[batch,1] = sum[dims=(1,), keepdim=True](%y)
  %7: f32[batch,1] = sum[dims=(1,), keepdim=True](%x)
  %8: f32[batch,1] = div(%6, %7)
  return %4, %5, %8
}""",
    "centering: one stage, then every point": """
graph g(%x: f32[batch,12]) {
  %0: f32[batch,1] = mean[dims=(1,), keepdim=True](%x)
  %1: f32[batch,12] = sub(%x, %0)
  return %1
}""",
    "layer norm over the last two axes": """
graph g(%x: f32[batch,6,40], %w: f32[6,40], %b: f32[6,40]) weights(%e: f32[]) {
  %0: f32[batch,1,1] = mean[dims=(1, 2), keepdim=True](%x)
  %1: f32[batch,6,40] = sub(%x, %0)
  %2: f32[batch,6,40] = mul(%1, %1)
  %3: f32[batch,1,1] = mean[dims=(1, 2), keepdim=True](%2)
  %4: f32[batch,1,1] = add(%3, %e)
  %5: f32[batch,1,1] = rsqrt(%4)
  %6: f32[batch,6,40] = mul(%1, %5)
  %7: f32[batch,6,40] = mul(%6, %w)
  %8: f32[batch,6,40] = add(%7, %b)
  return %8
}""",
    # (an input named %idxN holds indices in 0..N-1)
    "gathers": """
graph g(%x: f32[batch,7], %idx7: i64[batch,3], %m: f32[batch,3], %y: f32[5,6], %idx5: i64[batch,6]) {
  %0: f32[batch,3] = gather[dim=1](%x, %idx7)
  %1: f32[batch,3] = mul(%0, %m)
  %2: f32[batch,3] = exp(%1)
  %3: f32[batch,6] = gather[dim=0](%y, %idx5)
  %4: f32[batch,6] = neg(%3)
  return %2, %4
}""",
    "cross-entropy (log_softmax, then nll_loss with its mean)": """
graph g(%x: f32[batch,7], %idx7: i64[batch]) {
  %0: f32[batch,7] = log_softmax[dim=1](%x)
  %1: f32[] = nll_loss[ignore_index=-100, reduction="mean"](%0, %idx7, _)
  %2: f32[batch] = nll_loss[ignore_index=3, reduction="none"](%0, %idx7, _)
  return %1, %2
}""",
    "matmul with bias, relu and a residual add": """
graph g(%x: f32[batch,70], %r: f32[batch,130]) weights(%w: f32[70,130], %b: f32[130]) {
  %0: f32[batch,130] = matmul(%x, %w)
  %1: f32[batch,130] = add(%0, %b)
  %2: f32[batch,130] = relu(%1)
  %3: f32[batch,130] = add(%2, %r)
  return %3
}""",
    "matmul: batched, transposed operands, a computed left operand": """
graph g(%q: f32[b,2,9,8], %k: f32[b,2,9,8], %x: f32[20,b], %y: f32[20,6], %s: f32[20], %z: f32[20,7]) {
  %0: f32[b,2,8,9] = permute[dims=(0, 1, 3, 2)](%k)
  %1: f32[b,2,9,9] = matmul(%q, %0)
  %2: f32[b,20] = permute[dims=(1, 0)](%x)
  %3: f32[b,20] = mul(%2, %s)
  %4: f32[b,20] = tanh(%3)
  %5: f32[b,6] = matmul(%4, %y)
  %6: f32[7,20] = permute[dims=(1, 0)](%z)
  %7: f32[7,b] = matmul(%6, %x)
  return %1, %5, %7
}""",
    "convolutions with bias and relu (padding, stride, dilation, groups)": """
graph g(%x: f32[batch,6,13,11]) weights(%w: f32[8,6,3,3], %b: f32[8], %v: f32[6,2,2,3]) {
  %0: f32[batch,8,13,11] = conv2d[stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1](%x, %w, %b)
  %1: f32[batch,8,13,11] = relu(%0)
  %2: f32[batch,6,6,6] = conv2d[stride=(2, 2), padding=(0, 1), dilation=(2, 1), groups=3](%x, %v)
  return %1, %2
}""",
    "max pooling, values and indices (NaN wins, then the first maximum)": """
graph g(%x: f32[batch,3,9,8]) {
  %0: f32[batch,3,4,4], %1: i64[batch,3,4,4] = max_pool2d[kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False](%x)
  %2: f32[batch,3,4,4], %3: i64[batch,3,4,4] = max_pool2d[kernel_size=(3, 2), stride=(2, 2), padding=(1, 1), dilation=(2, 2), ceil_mode=False](%x)
  return %0, %1, %2, %3
}""",  # noqa: E501
    "gradients: a convolution's weight, max pooling's input": """
graph g(%x: f32[batch,4,9,8], %dy: f32[batch,6,9,6], %p: f32[batch,4,3,3], %idx72: i64[batch,4,3,3]) {
  %0: f32[6,2,3,3] = conv2d_weight_grad[weight_shape=(6, 2, 3, 3), stride=(1, 1), padding=(1, 0), dilation=(1, 1), groups=2](%x, %dy)
  %1: f32[batch,4,9,8] = max_pool2d_backward[height=9, width=8, overlapping=True](%p, %idx72)
  return %0, %1
}""",  # noqa: E501
    "views read in place": """
graph g(%x: f32[batch,3,4], %y: f32[4,3]) {
  %0: f32[batch,4,3] = permute[dims=(0, 2, 1)](%x)
  %1: f32[batch,4,3] = add(%0, %y)
  %2: f32[batch,4,3] = exp(%1)
  return %2
}""",
    "slices of a symbolic size (x[1:] - x[:-1], x[::2], x[-1:], pe[:batch])": """
graph g(%x: f32[batch,6], %pe: f32[1000,6]) {
  %0: f32[batch_minus_1,6] = slice[dim=0, start=1, stop=None, step=1](%x)
  %1: f32[batch_minus_1,6] = slice[dim=0, start=0, stop=-1, step=1](%x)
  %2: f32[batch_minus_1,6] = sub(%0, %1)
  %3: f32[batch_by_2,6] = slice[dim=0, start=0, stop=None, step=2](%x)
  %4: f32[1,6] = slice[dim=0, start=-1, stop=None, step=1](%x)
  %5: f32[batch_by_2,6] = mul(%3, %4)
  %6: f32[batch,6] = slice[dim=0, start=0, stop='batch', step=1](%pe)
  %7: f32[batch,6] = add(%x, %6)
  %8: f32[batch_minus_2_by_2,6] = slice[dim=0, start=1, stop=None, step=2](%0)
  return %2, %5, %7, %8
}""",
    "multiples of a symbolic size (repeat_interleave and its rows: batch_times_2)": """
graph g(%x: f32[batch,3], %y: f32[batch,2,3]) {
  %0: f32[batch,1,3] = unsqueeze[dim=1](%x)
  %1: f32[batch,2,3] = expand[shape=('batch', 2, 3)](%0)
  %2: f32[batch,2,3] = add(%1, %y)
  %3: f32[batch_times_2,3] = reshape[shape=('batch_times_2', 3)](%2)
  %4: f32[batch_times_2,3] = exp(%3)
  %5: f32[batch_times_2,3] = slice[dim=0, start=0, stop='batch_times_2', step=1](%4)
  %6: f32[batch,3] = slice[dim=0, start=1, stop=None, step=2](%5)
  return %5, %6
}""",
}


def inputs(graph, batch, seed=0, special=True):
    """Random inputs for `graph` with every symbol `batch`: floats with SPECIAL values spread
    through them (unless not `special`), inputs named %idxN drawing indices 0..N-1."""
    rng = np.random.default_rng(seed)
    out = []
    for v in graph.inputs:
        shape = tuple(batch if isinstance(d, str) else d for d in v.type.shape)
        kind = np.dtype(v.type.dtype.np)
        if kind.kind == "f":
            x = rng.standard_normal(shape).astype(kind)
            flat = x.reshape(-1)
            if special:
                flat[:: max(1, flat.size // 8)] = np.resize(SPECIAL, flat[:: max(1, flat.size // 8)].shape)
        elif kind.kind == "b":
            x = rng.random(shape) < 0.5
        elif v.name.startswith("idx"):
            x = rng.integers(0, int(v.name[3:]), shape).astype(kind)
        elif kind.kind == "u":
            x = rng.integers(0, 256, shape).astype(kind)
        else:
            x = rng.integers(-50, 50, shape).astype(kind)
        out.append(x)
    return out


def with_weights(text: str):
    """The graph of `text` with random weights of the declared shapes (the parser's are zeros)."""
    declared = parse_graph(text).weight_data
    rng = np.random.default_rng(7)
    return parse_graph(text, {n: rng.standard_normal(w.shape).astype(w.dtype) for n, w in declared.items()})


def products(name: str) -> bool:
    """Whether graph `name` multiplies and sums (matmuls, convolutions, their gradients): no
    inf or NaN goes in (BLAS, the reference's, does not always follow IEEE there), and sums
    in another order need a looser tolerance."""
    return "matmul" in name or "conv" in name or "gradients" in name
