"""Autograd behaviour: graph structure, retention, in-place safety, hooks, grad(), Function."""

import math

import pytest

import graphc
from graphc.autograd import AutogradError


def test_tutorial_gradient_is_4_5_everywhere():
    x = graphc.ones(2, 2, requires_grad=True)
    out = ((x + 2) * (x + 2) * 3).mean()
    out.backward()
    assert x.grad.tolist() == [[4.5, 4.5], [4.5, 4.5]]


def test_doubling_example_gives_powers_of_two():
    x = graphc.randn(3, requires_grad=True)
    y = x * 2
    while y.data.norm() < 1000:
        y = y * 2
    y.backward(graphc.tensor([0.1, 1.0, 0.0001]))
    factor = (y / x).detach()[0].item()
    assert math.log2(factor) == int(math.log2(factor))
    assert graphc.allclose(x.grad, graphc.tensor([0.1, 1.0, 0.0001]) * factor)


def test_grad_fn_names_and_next_functions():
    a = graphc.linspace(0.0, 2 * math.pi, steps=25, requires_grad=True)
    d = 2 * graphc.sin(a) + 1
    assert d.grad_fn.name() == "AddBackward0"
    (mul, _), (none, _) = d.grad_fn.next_functions
    assert mul.name() == "MulBackward0" and none is None
    sin = mul.next_functions[0][0]
    assert sin.name() == "SinBackward0"
    acc = sin.next_functions[0][0]
    assert acc.name() == "AccumulateGrad" and acc.variable is a and acc.next_functions == ()
    assert repr(d.grad_fn).startswith("<AddBackward0 object at 0x")
    assert a.grad_fn is None and a.is_leaf and not d.is_leaf
    assert graphc.rand(2, requires_grad=True)[0:1].grad_fn.name() == "SliceBackward0"
    assert graphc.rand(2, 2, requires_grad=True)[0].grad_fn.name() == "SelectBackward0"
    assert graphc.rand(2, requires_grad=True).sum().grad_fn.name() == "SumBackward0"
    assert graphc.rand(2, requires_grad=True).view(2, 1).grad_fn.name() == "ViewBackward0"


def test_gradients_accumulate_and_only_leaves_keep_them():
    x = graphc.ones(3, requires_grad=True)
    y = x * 2
    y.sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0, 5.0]
    assert y.grad is None


def test_backward_needs_a_gradient_for_non_scalars():
    y = graphc.ones(3, requires_grad=True) * 2
    with pytest.raises(AutogradError, match="only for scalar outputs"):
        y.backward()
    with pytest.raises(AutogradError, match="mismatch in shape"):
        y.backward(graphc.ones(2))


def test_graph_is_freed_after_backward_unless_retained():
    x = graphc.ones(2, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 4.0]
    with pytest.raises(AutogradError, match="backward through the graph a second time"):
        y.backward()


def test_modified_saved_tensor_makes_backward_raise():
    x = graphc.ones(3, requires_grad=True)
    y = x * 1
    z = y * y  # saves y
    y.add_(1)
    with pytest.raises(AutogradError, match="inplace operation.*version 1; expected version 0"):
        z.sum().backward()


def test_inplace_on_leaf_requiring_grad_is_refused_but_allowed_under_no_grad():
    a = graphc.linspace(0.0, 1.0, 5, requires_grad=True)
    with pytest.raises(AutogradError, match="leaf Variable that requires grad"):
        graphc.sin_(a)
    with pytest.raises(AutogradError, match="leaf Variable"):
        a[0] = 3.0
    with graphc.no_grad():
        a.mul_(2)
    assert a.requires_grad and a.grad_fn is None


def test_inplace_ops_on_non_leaves_are_differentiated():
    x = graphc.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y.mul_(3).add_(1)
    assert y.grad_fn.name() == "AddBackward0"
    y.exp_()
    y.sum().backward()
    assert graphc.allclose(x.grad, 3 * graphc.exp(3 * x.detach() + 1))


def test_retain_grad_and_hooks():
    x = graphc.ones(2, requires_grad=True)
    y = x * 3
    y.retain_grad()
    seen = []
    y.register_hook(lambda g: seen.append(g.tolist()))
    handle = x.register_hook(lambda g: g * 10)
    (y * y).sum().backward()
    assert y.grad.tolist() == [6.0, 6.0] and seen == [[6.0, 6.0]]
    assert x.grad.tolist() == [180.0, 180.0]
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_grad_returns_without_accumulating_and_supports_higher_order():
    x = graphc.tensor(3.0, requires_grad=True)
    y = x**3
    (g,) = graphc.autograd.grad(y, x, create_graph=True)
    assert g.item() == 27.0 and x.grad is None
    (g2,) = graphc.autograd.grad(g, x)
    assert g2.item() == 18.0
    z = graphc.tensor(1.0, requires_grad=True)
    with pytest.raises(AutogradError, match="not have been used"):
        graphc.autograd.grad((x * 2), [x, z])
    assert graphc.autograd.grad(x * 2, [x, z], allow_unused=True)[1] is None


def test_backward_with_inputs_accumulates_only_into_them():
    a, b = graphc.ones(2, requires_grad=True), graphc.ones(2, requires_grad=True)
    (a * b * 2).sum().backward(inputs=[a])
    assert a.grad.tolist() == [2.0, 2.0] and b.grad is None


def test_grad_modes_as_context_managers_and_decorators():
    x = graphc.ones(2, requires_grad=True)
    with graphc.no_grad():
        assert not (x * 2).requires_grad
        with graphc.enable_grad():
            assert (x * 2).requires_grad

    @graphc.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad and graphc.is_grad_enabled()
    with graphc.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert graphc.is_grad_enabled()
    graphc.set_grad_enabled(False)
    assert not graphc.is_grad_enabled()
    graphc.set_grad_enabled(True)
    with graphc.inference_mode():
        assert not (x * 2).requires_grad
    with graphc.inference_mode(False):
        assert (x * 2).requires_grad


def test_requires_grad_flags():
    a = graphc.ones(2, 3, requires_grad=True)
    assert (2 * a).requires_grad
    a.requires_grad = False
    assert not (2 * a).requires_grad
    with pytest.raises(AutogradError, match="floating point"):
        graphc.tensor([1, 2]).requires_grad_()
    with pytest.raises(AutogradError, match="leaf variables"):
        (graphc.ones(1, requires_grad=True) * 2).requires_grad = False


def test_detach_shares_memory_and_detach_inplace():
    x = graphc.rand(3, requires_grad=True)
    y = x.detach()
    assert not y.requires_grad and y.grad_fn is None
    with graphc.no_grad():
        y[0] = 5.0
    assert x[0].item() == 5.0
    z = x * 2
    z.detach_()
    assert z.grad_fn is None and not z.requires_grad
    with pytest.raises(AutogradError, match="requires grad"):
        x.numpy()
    assert x.detach().numpy().shape == (3,)


def test_custom_function():
    class Exp(graphc.autograd.Function):
        @staticmethod
        def forward(ctx, i):
            result = i.exp()
            ctx.save_for_backward(result)
            return result

        @staticmethod
        def backward(ctx, grad_output):
            (result,) = ctx.saved_tensors
            return grad_output * result

    x = graphc.tensor([0.0, 1.0], requires_grad=True)
    y = Exp.apply(x)
    assert y.grad_fn.name() == "ExpBackward"
    y.sum().backward()
    assert graphc.allclose(x.grad, graphc.exp(x.detach()))

    class Twice(graphc.autograd.Function):
        @staticmethod
        def forward(ctx, a, scale):
            ctx.scale = scale
            assert ctx.needs_input_grad == (True, False)
            return a * scale

        @staticmethod
        def backward(ctx, g):
            return g * ctx.scale, None

    x.grad = None
    Twice.apply(x, 3.0).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_functional_jacobian_hessian_vjp_jvp_hvp():
    def exp_adder(x, y):
        return 2 * x.exp() + 3 * y

    x, y = graphc.rand(3, dtype=graphc.float64), graphc.rand(3, dtype=graphc.float64)
    jx, jy = graphc.autograd.functional.jacobian(exp_adder, (x, y))
    assert graphc.allclose(jx, 2 * graphc.eye(3, dtype=graphc.float64) * x.exp())
    assert graphc.allclose(jy, 3 * graphc.eye(3, dtype=graphc.float64))
    one = graphc.tensor([0.5])
    assert graphc.autograd.functional.jacobian(lambda t: 2 * t.exp(), one).shape == (1, 1)

    def cube(t):
        return (t**3).sum()

    p = graphc.tensor([1.0, 2.0], dtype=graphc.float64)
    assert graphc.autograd.functional.hessian(cube, p).tolist() == [[6.0, 0.0], [0.0, 12.0]]
    v = graphc.tensor([1.0, 1.0], dtype=graphc.float64)
    out, hv = graphc.autograd.functional.hvp(cube, p, v)
    assert out.item() == 9.0 and hv.tolist() == [6.0, 12.0]
    assert graphc.autograd.functional.vhp(cube, p, v)[1].tolist() == [6.0, 12.0]
    _, jv = graphc.autograd.functional.jvp(lambda t: t**2, p, v)
    assert jv.tolist() == [2.0, 4.0]
    _, vj = graphc.autograd.functional.vjp(lambda t: t**2, p, v)
    assert vj.tolist() == [2.0, 4.0]


def test_profiler_counts_ops():
    x, y = graphc.randn(2, 3), graphc.rand(2, 3)
    z = graphc.ones(2, 3)
    with graphc.autograd.profiler.profile() as prof:
        for _ in range(10):
            z = (z / x) * y
    table = prof.key_averages().table(sort_by="self_cpu_time_total")
    rows = {e.key: e.count for e in prof.key_averages()}
    assert rows == {"graphc::div": 10, "graphc::mul": 10}
    assert "Self CPU time total" in table and "graphc::div" in table
    a, b, c = graphc.ones(2, 3), graphc.ones(3), graphc.ones(2)
    with graphc.autograd.profiler.profile(record_shapes=True) as prof:
        a + b
        c + c
    keys = {e.key: e.count for e in prof.key_averages(group_by_input_shape=True)}
    assert keys == {"graphc::add [[2, 3], [3]]": 1, "graphc::add [[2], [2]]": 1}


def test_gradcheck_reports_a_wrong_gradient():
    class Wrong(graphc.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 3

    x = graphc.rand(3, dtype=graphc.float64, requires_grad=True)
    assert not graphc.autograd.gradcheck(Wrong.apply, (x,), raise_exception=False)
    with pytest.raises(AutogradError, match="Jacobian mismatch"):
        graphc.autograd.gradcheck(Wrong.apply, (x,))


def test_gradient_dtype_follows_the_input():
    x = graphc.ones(2, dtype=graphc.float16, requires_grad=True)
    (x * graphc.ones(2, dtype=graphc.float64)).sum().backward()
    assert x.grad.dtype is graphc.float16
    y = graphc.ones(2, requires_grad=True)
    y.to(graphc.float64).sum().backward()
    assert y.grad.dtype is graphc.float32 and y.grad.tolist() == [1.0, 1.0]


def _grad_of(fn, values=(1.0, 2.0, 3.0)):
    x = graphc.tensor(list(values), requires_grad=True)
    fn(x).sum().backward()
    return x.grad.tolist()


def test_inplace_change_of_a_view_flows_into_its_base():
    def view_mul(x):
        y = x * 1
        y[1:].mul_(3)
        return y

    def zero_element(x):
        y = x * 1
        y[0].zero_()
        return y

    def setitem_through_view(x):
        y = (x * 1).view(3, 1)
        y[0][0] = 5
        return y

    def overwrite_with_grad(x):
        y = graphc.zeros(3)
        y[0:2].copy_(x[1:] * x[1:])
        return y

    assert _grad_of(view_mul) == [1.0, 3.0, 3.0]
    assert _grad_of(zero_element) == [0.0, 1.0, 1.0]
    assert _grad_of(setitem_through_view) == [0.0, 1.0, 1.0]
    assert _grad_of(overwrite_with_grad) == [0.0, 4.0, 6.0]


def test_views_see_inplace_changes_of_their_base_in_their_history():
    def stale_view(x):
        y = x * 1
        v = y[0:2]
        y.mul_(2)
        return v

    def sibling_view(x):
        y = x * 1
        v1, v2 = y[0:2], y[1:3]
        v1.mul_(2)
        return v2 * 1

    assert _grad_of(stale_view) == [2.0, 2.0, 0.0]
    assert _grad_of(sibling_view) == [0.0, 2.0, 1.0]
    x = graphc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert graphc.autograd.gradcheck(
        lambda x: sibling_view(x) * x[1:], (x.double().detach().requires_grad_(),)
    )


def test_inplace_on_views_of_leaves_and_expanded_tensors_is_refused():
    leaf_ = graphc.ones(3, requires_grad=True)
    with pytest.raises(AutogradError, match="view of a leaf Variable"):
        leaf_[0:2].add_(1)
    with pytest.raises(ValueError, match="more than one element"):
        graphc.ones(1).expand(3).add_(1)


def test_zero_dim_selects_are_views():
    z = graphc.zeros(3)
    z[1].fill_(4)
    assert z.tolist() == [0.0, 4.0, 0.0]


def test_grad_mode_is_per_thread():
    import threading

    x = graphc.ones(2, requires_grad=True)
    seen = {}

    def worker():
        seen["other thread"] = (x * 2).requires_grad

    with graphc.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        seen["this thread"] = (x * 2).requires_grad
    assert seen == {"other thread": True, "this thread": False}
