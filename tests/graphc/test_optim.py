"""Optimizers and schedulers against hand-computed updates (PyTorch's formulas)."""

import math

import numpy as np
import pytest

import graphc
from graphc import optim
from graphc.optim import lr_scheduler


def _param(values):
    return graphc.nn.Parameter(graphc.tensor(values, dtype=graphc.float64))


def _run(opt_cls, grads, **kw):
    p = _param([1.0, -2.0])
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = graphc.tensor(g, dtype=graphc.float64)
        opt.step()
    return p.detach().numpy(), opt


def test_sgd_plain_momentum_nesterov_weight_decay():
    g1, g2 = [0.5, 1.0], [1.5, -1.0]
    p, _ = _run(optim.SGD, [g1], lr=0.1)
    np.testing.assert_allclose(p, [1 - 0.05, -2 - 0.1])
    p, opt = _run(optim.SGD, [g1, g2], lr=0.1, momentum=0.9)
    buf = 0.9 * np.array(g1) + np.array(g2)
    np.testing.assert_allclose(p, np.array([1.0, -2.0]) - 0.1 * np.array(g1) - 0.1 * buf)
    assert "momentum_buffer" in opt.state[opt.param_groups[0]["params"][0]]
    p, _ = _run(optim.SGD, [g1, g2], lr=0.1, momentum=0.9, nesterov=True)
    b1 = np.array(g1)
    x1 = np.array([1.0, -2.0]) - 0.1 * (np.array(g1) + 0.9 * b1)
    b2 = 0.9 * b1 + np.array(g2)
    np.testing.assert_allclose(p, x1 - 0.1 * (np.array(g2) + 0.9 * b2))
    p, _ = _run(optim.SGD, [g1], lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(p, [1 - 0.1 * (0.5 + 0.5), -2 - 0.1 * (1.0 - 1.0)])
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([_param([1.0])], lr=0.1, nesterov=True)


def test_adam_first_steps():
    g = np.array([0.5, -1.0])
    p, _ = _run(optim.Adam, [g], lr=0.1)
    # step 1: m = 0.1 g, v = 0.001 g^2; bias-corrected m/sqrt(v) = sign(g)
    np.testing.assert_allclose(p, np.array([1.0, -2.0]) - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    p, _ = _run(optim.AdamW, [g], lr=0.1, weight_decay=0.1)
    decayed = np.array([1.0, -2.0]) * (1 - 0.01)
    np.testing.assert_allclose(p, decayed - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_rmsprop_and_adagrad_first_steps():
    g = np.array([0.5, -1.0])
    p, _ = _run(optim.RMSprop, [g], lr=0.01, alpha=0.9)
    np.testing.assert_allclose(p, np.array([1.0, -2.0]) - 0.01 * g / (np.sqrt(0.1 * g * g) + 1e-8))
    p, _ = _run(optim.Adagrad, [g, g], lr=0.1, lr_decay=0.5)
    x1 = np.array([1.0, -2.0]) - 0.1 * g / (np.abs(g) + 1e-10)
    np.testing.assert_allclose(p, x1 - (0.1 / 1.5) * g / (np.sqrt(2 * g * g) + 1e-10))


def test_param_groups_zero_grad_and_state_dict():
    a, b = _param([1.0]), _param([2.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5
    a.grad, b.grad = graphc.ones(1, dtype=graphc.float64), graphc.ones(1, dtype=graphc.float64)
    opt.step()
    state = opt.state_dict()
    assert state["param_groups"][1]["params"] == [1] and 0 in state["state"]
    a2, b2 = _param([0.9]), _param([1.5])
    opt2 = optim.SGD([{"params": [a2]}, {"params": [b2], "lr": 0.5}], lr=0.1, momentum=0.9)
    opt2.load_state_dict(state)
    for o, p in ((opt, a), (opt2, a2)):
        p.grad = graphc.ones(1, dtype=graphc.float64)
        o.step()
    assert np.isclose(a.item(), a2.item())
    opt.zero_grad()
    assert a.grad is None
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)


def test_step_updates_version_so_stale_graphs_are_refused():
    w = _param([1.0, 2.0])
    opt = optim.SGD([w], lr=0.1)
    loss = (w * w).sum()
    w.grad = graphc.ones(2, dtype=graphc.float64)
    opt.step()
    with pytest.raises(graphc.AutogradError, match="inplace operation"):
        loss.backward()


def _lrs(scheduler_cls, epochs=8, lr=1.0, **kw):
    p = _param([0.0])
    opt = optim.SGD([p], lr=lr, momentum=0.9)
    sched = scheduler_cls(opt, **kw)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(epochs):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr()[0])
    return out


def test_closed_form_schedules():
    assert _lrs(lr_scheduler.StepLR, 5, step_size=2, gamma=0.5) == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert _lrs(lr_scheduler.MultiStepLR, 4, milestones=[1, 3], gamma=0.1) == pytest.approx(
        [1, 0.1, 0.1, 0.01, 0.01]
    )
    assert _lrs(lr_scheduler.ExponentialLR, 3, gamma=0.5) == [1, 0.5, 0.25, 0.125]
    assert _lrs(lr_scheduler.LambdaLR, 3, lr_lambda=lambda e: 1 / (e + 1)) == pytest.approx(
        [1, 0.5, 1 / 3, 0.25]
    )
    cos = _lrs(lr_scheduler.CosineAnnealingLR, 4, T_max=4, eta_min=0.0)
    assert cos == pytest.approx(
        [1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]
    )


def test_one_cycle_and_plateau():
    lrs = _lrs(lr_scheduler.OneCycleLR, 9, max_lr=1.0, total_steps=10)
    assert lrs[0] == pytest.approx(1 / 25) and max(lrs) == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(1 / 25 / 1e4)
    p = _param([0.0])
    opt = optim.SGD([p], lr=1.0)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    for metric in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95]:
        plateau.step(metric)
    assert plateau.get_last_lr() == [0.25]


def _adam_moments(grads, beta1, beta2):
    m = v = 0.0
    for g in grads:
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        yield m, v


def test_nadam_steps():
    # Dozat's NAdam with PyTorch's momentum schedule mu_t = beta1 (1 - 0.96^(t psi) / 2)
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(2) for _ in range(4)]
    p, opt = _run(optim.NAdam, grads, lr=0.1)
    x, product = np.array([1.0, -2.0]), 1.0
    mu = [0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3)) for t in range(1, 6)]
    for t, (g, (m, v)) in enumerate(zip(grads, _adam_moments(grads, 0.9, 0.999), strict=True), 1):
        product *= mu[t - 1]
        denom = np.sqrt(v / (1 - 0.999**t)) + 1e-8
        x = x - 0.1 * (1 - mu[t - 1]) / (1 - product) * g / denom
        x = x - 0.1 * mu[t] / (1 - product * mu[t]) * m / denom
    np.testing.assert_allclose(p, x, rtol=1e-12)
    assert opt.state[opt.param_groups[0]["params"][0]]["mu_product"] == pytest.approx(product)


@pytest.mark.parametrize("decoupled", [False, True])
def test_radam_rectifies_after_enough_steps(decoupled):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(2) for _ in range(8)]
    p, _ = _run(optim.RAdam, grads, lr=0.1, weight_decay=0.1, decoupled_weight_decay=decoupled)
    x, m, v = np.array([1.0, -2.0]), 0.0, 0.0
    rho_inf = 2 / (1 - 0.999) - 1
    rectified = []
    for t, g in enumerate(grads, 1):
        if decoupled:
            x = x * (1 - 0.1 * 0.1)
        else:
            g = g + 0.1 * x
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        rho = rho_inf - 2 * t * 0.999**t / (1 - 0.999**t)
        step = m / (1 - 0.9**t)
        if rho > 5:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            step = step * r * np.sqrt(1 - 0.999**t) / (np.sqrt(v) + 1e-8)
        rectified.append(rho > 5)
        x = x - 0.1 * step
    assert rectified == [False] * 5 + [True] * 3  # both branches taken
    np.testing.assert_allclose(p, x, rtol=1e-12)


def test_adamax_and_adadelta_steps():
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(2) for _ in range(3)]
    p, _ = _run(optim.Adamax, grads, lr=0.1)
    x, m, u = np.array([1.0, -2.0]), 0.0, np.zeros(2)
    for t, g in enumerate(grads, 1):
        m = 0.9 * m + 0.1 * g
        u = np.maximum(0.999 * u, np.abs(g) + 1e-8)
        x = x - 0.1 / (1 - 0.9**t) * m / u
    np.testing.assert_allclose(p, x, rtol=1e-12)
    p, _ = _run(optim.Adadelta, grads, lr=0.5, rho=0.8)
    x, sq, acc = np.array([1.0, -2.0]), 0.0, 0.0
    for g in grads:
        sq = 0.8 * sq + 0.2 * g * g
        delta = np.sqrt(acc + 1e-6) / np.sqrt(sq + 1e-6) * g
        acc = 0.8 * acc + 0.2 * delta * delta
        x = x - 0.5 * delta
    np.testing.assert_allclose(p, x, rtol=1e-12)
    with pytest.raises(ValueError, match="invalid Adadelta options"):
        optim.Adadelta([_param([1.0])], rho=1.5)
    with pytest.raises(ValueError, match="invalid NAdam options"):
        optim.NAdam([_param([1.0])], betas=(1.0, 0.9))


def test_warm_up_and_polynomial_schedules():
    assert _lrs(lr_scheduler.LinearLR, 6, start_factor=0.2, total_iters=4) == pytest.approx(
        [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]
    )
    assert _lrs(lr_scheduler.ConstantLR, 4, factor=0.5, total_iters=2) == [0.5, 0.5, 1, 1, 1]
    assert _lrs(lr_scheduler.PolynomialLR, 5, total_iters=4, power=2.0) == pytest.approx(
        [1, 0.5625, 0.25, 0.0625, 0, 0]
    )
    factors = iter([0.5, 0.4, 0.1, 2.0])
    assert _lrs(lr_scheduler.MultiplicativeLR, 4, lr_lambda=lambda epoch: next(factors)) == pytest.approx(
        [1, 0.5, 0.2, 0.02, 0.04]
    )
    opt = optim.SGD([_param([0.0])], lr=1.0)
    for cls in (lr_scheduler.LambdaLR, lr_scheduler.MultiplicativeLR):
        state = cls(opt, lr_lambda=lambda epoch: 0.5).state_dict()
        assert "lr_lambdas" not in state and state["last_epoch"] == 0
    with pytest.raises(ValueError, match="start_factor must be in"):
        _lrs(lr_scheduler.LinearLR, 1, start_factor=0.0)


@pytest.mark.parametrize("t_mult", [1, 2])
def test_cosine_annealing_with_warm_restarts(t_mult):
    lrs = _lrs(lr_scheduler.CosineAnnealingWarmRestarts, 12, T_0=3, T_mult=t_mult, eta_min=0.1)
    starts = [0, 3, 6, 9, 12] if t_mult == 1 else [0, 3, 9]  # periods of 3 (then 6, 12, ...)
    for epoch, lr in enumerate(lrs):
        start = max(s for s in starts if s <= epoch)
        length = 3 if t_mult == 1 else 3 * 2 ** starts.index(start)
        assert lr == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * (epoch - start) / length)) / 2)
    p = _param([0.0])
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=4)
    sched.step(5.5)  # (per batch: fractional epochs)
    assert sched.get_last_lr()[0] == pytest.approx((1 + math.cos(math.pi * 1.5 / 4)) / 2)


def test_sequential_schedule_switches_at_its_milestones():
    p = _param([0.0])
    opt = optim.SGD([p], lr=1.0)
    warm = lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
    decay = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    sched = lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[3])
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.5, 0.25])
    state = sched.state_dict()
    assert state["last_epoch"] == 5 and len(state["_schedulers"]) == 2
    with pytest.raises(ValueError, match="milestones"):
        lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[])


def test_a_scheduler_used_twice_in_a_sequence_restarts():
    p = _param([0.0])
    opt = optim.SGD([p], lr=1.0)
    warm = lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
    decay = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    sched = lr_scheduler.SequentialLR(opt, [warm, decay, warm], milestones=[3, 5])
    lrs = []
    for _ in range(8):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    # (PyTorch's rates: the warm-up again from its start at epoch 5)
    assert lrs == pytest.approx([0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.75, 1.0])


def _quadratic(n=5, seed=0):
    """f(x) = x^T A x / 2 - b^T x with A symmetric positive definite: minimum at A^-1 b."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    a, b = m @ m.T + n * np.eye(n), rng.standard_normal(n)
    x = graphc.zeros(n, dtype=graphc.float64, requires_grad=True)
    at, bt = graphc.tensor(a), graphc.tensor(b)
    return x, a, b, lambda: 0.5 * (x @ (at @ x)) - bt @ x


def _closure(opt, f):
    def closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss

    return closure


def test_lbfgs_first_iteration_is_a_scaled_gradient_step():
    x, a, b, f = _quadratic()
    opt = optim.LBFGS([x], lr=0.7, max_iter=1)
    loss = opt.step(_closure(opt, f))
    g = -b  # the gradient at 0
    assert loss.item() == 0.0
    np.testing.assert_allclose(x.detach().numpy(), -min(1.0, 1.0 / np.abs(g).sum()) * 0.7 * g, rtol=1e-14)
    assert opt.state[x]["func_evals"] == 1 and opt.state[x]["n_iter"] == 1


def _bfgs_inverse(pairs, h0: float, n: int) -> np.ndarray:
    """The BFGS inverse-Hessian estimate from H0 = h0 I, updated by each (s, y) in order:
    H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T."""
    h = h0 * np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (y @ s)
        left = np.eye(n) - rho * np.outer(s, y)
        h = left @ h @ left.T + rho * np.outer(s, s)
    return h


@pytest.mark.parametrize("history", [100, 2])
def test_lbfgs_direction_is_the_bfgs_inverse_hessian_times_the_gradient(history):
    """The two-loop recursion against the explicit matrix of the kept pairs."""
    x, a, b, f = _quadratic(6, seed=1)
    opt = optim.LBFGS([x], max_iter=4, history_size=history)
    opt.step(_closure(opt, f))
    st = opt.state[x]
    pairs = list(zip(st["old_stps"], st["old_dirs"], strict=True))
    assert len(pairs) == min(3, history)
    h = _bfgs_inverse(pairs, float(st["H_diag"]), 6)
    np.testing.assert_allclose(st["d"], -h @ st["prev_flat_grad"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_minimizes_a_quadratic_and_rosenbrock(line_search):
    x, a, b, f = _quadratic()
    opt = optim.LBFGS(
        [x], line_search_fn=line_search, max_iter=50, tolerance_grad=1e-12, tolerance_change=1e-15
    )
    for _ in range(3):
        opt.step(_closure(opt, f))
    np.testing.assert_allclose(x.detach().numpy(), np.linalg.solve(a, b), atol=1e-8)
    z = graphc.tensor([-1.2, 1.0], dtype=graphc.float64, requires_grad=True)
    rosen = optim.LBFGS([z], line_search_fn=line_search, lr=1 if line_search else 0.1, max_iter=100)
    for _ in range(20 if line_search else 60):
        rosen.step(_closure(rosen, lambda: 100 * (z[1] - z[0] ** 2) ** 2 + (1 - z[0]) ** 2))
    np.testing.assert_allclose(z.detach().numpy(), [1.0, 1.0], atol=1e-3)


def test_lbfgs_limits_and_errors():
    x, a, b, f = _quadratic()
    tight = {
        "max_iter": 20,
        "line_search_fn": "strong_wolfe",
        "tolerance_grad": 1e-14,
        "tolerance_change": 1e-16,
    }
    opt = optim.LBFGS([x], max_eval=5, **tight)
    opt.step(_closure(opt, f))
    # a line search gets the evaluations left (max_eval - used), after its first
    assert opt.state[x]["func_evals"] <= 5 + 1
    y, _, _, g = _quadratic()
    free = optim.LBFGS([y], **tight)  # max_eval 25
    free.step(_closure(free, g))
    assert free.state[y]["func_evals"] > 6
    done = graphc.tensor([1.0], dtype=graphc.float64, requires_grad=True)
    still = optim.LBFGS([done])
    still.step(_closure(still, lambda: (done - 1.0).pow(2).sum()))  # the gradient is 0 at once
    assert still.state[done]["func_evals"] == 1 and done.item() == 1.0
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [x]}, {"params": [done]}])
    with pytest.raises(ValueError, match="'strong_wolfe'"):
        optim.LBFGS([x], line_search_fn="backtracking")


def test_lbfgs_line_search_pieces():
    """The cubic interpolation finds a cubic's minimum from two points and slopes; the strong
    Wolfe search returns a step meeting both conditions, also when the first step overshoots
    (bracketing then zooming) and when it is too short (extrapolating)."""
    from graphc.optim.lbfgs import _cubic_minimum, _strong_wolfe

    cubic = lambda x: x**3 - 6 * x**2 + 4 * x  # noqa: E731  minimum at 2 + sqrt(8/3)
    slope = lambda x: 3 * x**2 - 12 * x + 4  # noqa: E731
    got = _cubic_minimum(1.0, cubic(1.0), slope(1.0), 5.0, cubic(5.0), slope(5.0))
    assert got == pytest.approx(2 + math.sqrt(8 / 3), rel=1e-12)

    def f(x):  # a 1-D function along d = [1], minimum at 3
        return (x - 3.0) ** 2 + 0.5 * math.sin(3 * x), np.array([2 * (x - 3.0) + 1.5 * math.cos(3 * x)])

    d = np.array([1.0])
    f0, g0 = f(0.0)
    gtd = float(g0 @ d)
    for t0 in (40.0, 0.01):
        value, grad, t, evals = _strong_wolfe(lambda t: f(t), t0, d, f0, g0, gtd)
        assert value <= f0 + 1e-4 * t * gtd and abs(float(grad @ d)) <= 0.9 * abs(gtd)
        assert (value, float(grad[0])) == (f(t)[0], f(t)[1][0]) and evals > 1
