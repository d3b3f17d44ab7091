"""Descriptive statistics and confidence intervals, on plain lists of numbers.

No SciPy here (it is not a dependency): the Student t quantile comes from the
regularised incomplete beta function (a continued fraction, as in Numerical
Recipes §6.4) inverted by bisection. Exact to ~1e-10, which is far more than
a 95 % interval over a handful of repeats needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Summary:
    """One phase (or one run) of one quantity: n, mean, median, range, p5/p95."""

    n: int
    mean: float
    median: float
    min: float
    max: float
    p5: float
    p95: float

    @property
    def range(self) -> float:
        return self.max - self.min


NAN_SUMMARY = Summary(0, *(math.nan,) * 6)


def summarize(values: Iterable[float]) -> Summary:
    """Summary of the finite values (NaNs and infinities are ignored; none: all NaN)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return NAN_SUMMARY
    p5, p95 = np.percentile(arr, [5, 95])  # linear interpolation (numpy's default)
    return Summary(
        int(arr.size),
        float(arr.mean()),
        float(np.median(arr)),
        float(arr.min()),
        float(arr.max()),
        float(p5),
        float(p95),
    )


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(ln_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t value below which a share ``p`` of the distribution lies (bisection)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # df=1, p=0.975 needs 12.7; grow until bracketed
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


@dataclass(frozen=True, slots=True)
class MeanCI:
    """Mean over repeats with a two-sided confidence interval (t-distribution).

    With fewer than two values there is no interval: ``half_width`` is NaN
    and reports say "1 repeat: no interval".
    """

    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1)
    half_width: float
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def format(self, digits: int = 1) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "n/a"
        if self.n < 2 or math.isnan(self.half_width):
            return f"{self.mean:.{digits}f} (n=1, no CI)"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Mean of the finite ``values`` and its t-interval: mean ± t(1-α/2, n-1)·s/√n."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return MeanCI(0, math.nan, math.nan, math.nan, level)
    mean = float(arr.mean())
    if n < 2:
        return MeanCI(1, mean, math.nan, math.nan, level)
    std = float(arr.std(ddof=1))
    t = t_quantile(1.0 - (1.0 - level) / 2.0, n - 1)
    return MeanCI(n, mean, std, t * std / math.sqrt(n), level)
