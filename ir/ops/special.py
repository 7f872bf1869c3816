"""Special functions numpy lacks, vectorised over whole arrays.

`erf` follows the method of Sun's fdlibm `s_erf.c` (rational approximations on four intervals,
each accurate to better than one ulp in float64), evaluated with masks instead of branches so it
runs on numpy and cupy arrays alike. `erfinv` starts from Giles' single-precision approximation
("Approximating the erfinv function", GPU Computing Gems, 2010) and refines it with Newton steps
on `erf`.
"""

from __future__ import annotations

import numpy as np

_ERX = 8.45062911510467529297e-01
_EFX = 1.28379167095512586316e-01
_PP = (
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
)
_QQ = (
    1.0,
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
)
_PA = (
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
)
_QA = (
    1.0,
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
)
_RA = (
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e01,
    -6.23753324503260060396e01,
    -1.62396669462573470355e02,
    -1.84605092906711035994e02,
    -8.12874355063065934246e01,
    -9.81432934416914548592e00,
)
_SA = (
    1.0,
    1.96512716674392571292e01,
    1.37657754143519042600e02,
    4.34565877475229228821e02,
    6.45387271733267880336e02,
    4.29008140027567833386e02,
    1.08635005541779435134e02,
    6.57024977031928170135e00,
    -6.04244152148580987438e-02,
)
_RB = (
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e01,
    -1.60636384855821916062e02,
    -6.37566443368389627722e02,
    -1.02509513161107724954e03,
    -4.83519191608651397019e02,
)
_SB = (
    1.0,
    3.03380607434824582924e01,
    3.25792512996573918826e02,
    1.53672958608443695994e03,
    3.19985821950859553908e03,
    2.55305040643316442583e03,
    4.74528541206955367215e02,
    -2.24409524465858183362e01,
)


def _poly(coeffs, z):
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * z + c
    return acc


def _erf_parts(xp, x):
    """fdlibm's pieces for float64 x: |x|, erf(x) where |x| < 0.84375, erf(|x|) - erx's
    complement where 0.84375 <= |x| < 1.25 (as erx + P/Q), and erfc(|x|) from 1.25 on."""
    ax = xp.abs(x)
    z = x * x
    small = x + x * (_poly(_PP, z) / _poly(_QQ, z))
    small = xp.where(ax < 2.0**-28, x + _EFX * x, small)
    s = ax - 1.0
    mid = _ERX + _poly(_PA, s) / _poly(_QA, s)
    zz = 1.0 / (ax * ax)
    tail_r = xp.where(ax < 1 / 0.35, _poly(_RA, zz) / _poly(_SA, zz), _poly(_RB, zz) / _poly(_SB, zz))
    # split ax so exp(-ax*ax) keeps its low bits: -ax^2 = -h^2 + (h - ax)(h + ax)
    h = (ax.view(np.int64) & ~np.int64(0xFFFFFFFF)).view(np.float64)
    complement = xp.exp(-h * h - 0.5625) * xp.exp((h - ax) * (h + ax) + tail_r) / ax
    return ax, small, mid, complement


def erf(xp, x):
    """The error function of `x`, in `x`'s float dtype (computed in float64)."""
    out_dtype = x.dtype
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        ax, small, mid, complement = _erf_parts(xp, x)
        tail = xp.where(ax >= 6.0, 1.0, 1.0 - complement)
        big = xp.sign(x) * xp.where(ax < 1.25, mid, tail)
    out = xp.where(ax < 0.84375, small, big)
    out = xp.where(xp.isnan(x), x, out)
    return out.astype(out_dtype, copy=False)


def erfc(xp, x):
    """1 - erf(x), accurate where erf(x) is close to 1 (fdlibm's erfc: the tail computed
    directly, down to float64's smallest values near x = 27), in `x`'s float dtype."""
    out_dtype = x.dtype
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        ax, small, mid, complement = _erf_parts(xp, x)
        middle = xp.where(x >= 0, 1.0 - mid, 1.0 + mid)
        tail = xp.where(x >= 0, xp.where(ax >= 28.0, 0.0, complement), 2.0 - complement)
        tail = xp.where(x <= -6.0, 2.0, tail)
        out = xp.where(ax < 0.84375, 1.0 - small, xp.where(ax < 1.25, middle, tail))
    out = xp.where(xp.isnan(x), x, out)
    return out.astype(out_dtype, copy=False)


# Lanczos' approximation (g = 7, 9 terms): Gamma(x + 1) = sqrt(2 pi) t^(x + 1/2) e^-t A(x)
_LANCZOS_G = 7.0
_LANCZOS = (
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
)


def lgamma(xp, x):
    """log |Gamma(x)|: Lanczos' approximation for x >= 1/2, the reflection formula below; +inf
    at 0 and the negative integers (the poles), in `x`'s float dtype."""
    out_dtype = x.dtype
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        reflect = x < 0.5
        y = xp.where(reflect, 1.0 - x, x) - 1.0
        series = _LANCZOS[0] + sum(c / (y + i) for i, c in enumerate(_LANCZOS[1:], start=1))
        t = y + _LANCZOS_G + 0.5
        right = 0.5 * np.log(2 * np.pi) + (y + 0.5) * xp.log(t) - t + xp.log(series)
        # Gamma(x) Gamma(1 - x) = pi / sin(pi x); sin(pi x) with the argument reduced mod 2
        sine = xp.abs(xp.sin(np.pi * (x - 2.0 * xp.floor(x / 2.0))))
        out = xp.where(reflect, np.log(np.pi) - xp.log(sine) - right, right)
        pole = (x <= 0) & (x == xp.floor(x))
        out = xp.where(pole, np.inf, out)
        out = xp.where(xp.isinf(x), np.inf, out)
    out = xp.where(xp.isnan(x), x, out)
    return out.astype(out_dtype, copy=False)


def _shifted(xp, x, terms):
    """(x moved up to at least 10 by whole steps, the sum of terms(x + k) over the steps):
    the recurrences psi(x) = psi(x + 1) - 1/x, psi1(x) = psi1(x + 1) + 1/x^2."""
    total = xp.zeros_like(x)
    for _ in range(10):
        low = x < 10.0
        total = total + xp.where(low, terms(x), 0.0)
        x = xp.where(low, x + 1.0, x)
    return x, total


def digamma(xp, x):
    """psi(x) = d/dx log Gamma(x): the asymptotic series from x >= 10 (reached by the
    recurrence), the reflection formula below 0; -inf at 0 and NaN at the negative integers
    (PyTorch's values), in `x`'s float dtype."""
    out_dtype = x.dtype
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        reflect = x < 0
        y = xp.where(reflect, 1.0 - x, x)
        y, below = _shifted(xp, y, lambda v: 1.0 / v)
        w = 1.0 / (y * y)
        bernoulli = w * (1 / 240 - w * (1 / 132 - w * 691 / 32760))
        series = xp.log(y) - 0.5 / y - w * (1 / 12 - w * (1 / 120 - w * (1 / 252 - bernoulli)))
        value = series - below
        out = xp.where(reflect, value - np.pi / xp.tan(np.pi * x), value)
        out = xp.where(reflect & (x == xp.floor(x)), np.nan, out)
        out = xp.where(x == 0, -np.inf, out)
        out = xp.where(x == np.inf, np.inf, out)
    out = xp.where(xp.isnan(x), x, out)
    return out.astype(out_dtype, copy=False)


def trigamma(xp, x):
    """psi1(x) = d/dx psi(x): the asymptotic series from x >= 10 (reached by the recurrence),
    the reflection formula below 0; +inf at 0 and the negative integers, in `x`'s float
    dtype."""
    out_dtype = x.dtype
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        reflect = x < 0
        y = xp.where(reflect, 1.0 - x, x)
        y, below = _shifted(xp, y, lambda v: 1.0 / (v * v))
        w = 1.0 / (y * y)
        bernoulli = w * (1 / 30 - w * (5 / 66 - w * 691 / 2730))
        series = 1.0 / y + w / 2 + (w / y) * (1 / 6 - w * (1 / 30 - w * (1 / 42 - bernoulli)))
        value = series + below
        sine = xp.sin(np.pi * x)
        out = xp.where(reflect, np.pi * np.pi / (sine * sine) - value, value)
        out = xp.where((x <= 0) & (x == xp.floor(x)), np.inf, out)
    out = xp.where(xp.isnan(x), x, out)
    return out.astype(out_dtype, copy=False)


_GILES_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
_GILES_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)


def _horner(coeffs, z):
    acc = coeffs[0]
    for c in coeffs[1:]:
        acc = acc * z + c
    return acc


def erfinv(xp, y):
    """The inverse error function of `y` in (-1, 1), in `y`'s float dtype (computed in
    float64): +-inf at +-1, NaN outside [-1, 1]. Giles' approximation (about 1e-7 relative),
    then three Newton steps on erf (float64's precision but where 1 - |y| is within a few ulps
    of 0, where the function itself is that ill-conditioned)."""
    out_dtype = y.dtype
    y = y.astype(np.float64)
    with np.errstate(all="ignore"):
        w = -xp.log((1.0 - y) * (1.0 + y))
        central = _horner(_GILES_CENTRAL, w - 2.5)
        tail = _horner(_GILES_TAIL, xp.sqrt(w) - 3.0)
        x = xp.where(w < 5.0, central, tail) * y
        for _ in range(3):
            step = (erf(xp, x) - y) / (2.0 / np.sqrt(np.pi) * xp.exp(-x * x))
            x = xp.where(xp.isfinite(step), x - step, x)
        x = xp.where(xp.abs(y) == 1.0, xp.copysign(np.inf, y), x)
        x = xp.where(xp.abs(y) > 1.0, np.nan, x)
    return x.astype(out_dtype, copy=False)
