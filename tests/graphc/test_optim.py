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
