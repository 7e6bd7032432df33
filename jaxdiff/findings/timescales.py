"""Timescales of a diffusion sweep: tau_gen, tau_mem, the loss-gap onset, fits, phase diagram.

Pure NumPy/SciPy functions on curves sampled at evaluation times (`times` [K] in optimizer
steps, `values` [K]; None and NaN mean "not measured" and are skipped). The paper
(arXiv 2505.17638, Sect. 2) defines the two timescales only in words and gives no
thresholds; ours are explicit and configurable (config.report.*):

  tau_gen   first time the quality metric (lower is better: FID or a labelled substitute)
            enters the band q <= q_min + max(tol |q_min|, s sigma_min) and stays in it
            (by default until the minimum is reached), log-time interpolated;
  tau_mem   first time f_mem > threshold with its bootstrap 95% lower bound f_mem_lo > 0,
            log-time interpolated; runs that never get there are right-censored;
  loss gap  first time test_loss - train_loss > s sqrt(train_std^2 + test_std^2),
            log-time interpolated (paper Fig. 2 middle).

"Log-time interpolated": between two evaluation times t0 < t1 the curve is taken to be
linear in log t, so a crossing of level L lies at
  t* = t0 (t1 / t0)^((L - v0) / (v1 - v0)),
exact when the curve is log-linear on [t0, t1]. A segment starting at step 0 (where log t
is undefined) is interpolated linearly in t instead.

Across runs: power laws y = c x^alpha fitted by ordinary least squares on logs with
t-based confidence intervals (runs as independent points; censored runs excluded: the
method before jaxdiff.findings.fits, whose censoring-aware fits the report now states), seed
statistics (t-based intervals of the mean over seeds and data indices; geometric means for
timescales), width scaling (W tau_gen, tau_mem W / n; paper Fig. 3) and the (n, p) phase
diagram (paper Fig. 3 right).

Usage:
  onset = tau_mem(times, f_mem, f_mem_lo, f_mem_hi, threshold=0.01)
  if onset.observed: print(onset.value, onset.lo, onset.hi)
  fit = fit_power_law(ns, taus)   # fit.alpha.value, fit.alpha.lo, fit.prefactor.value
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

OBSERVED = "observed"
RIGHT_CENSORED = "right_censored"
LEFT_CENSORED = "left_censored"
UNDEFINED = "undefined"


# ------------------------------------------------------------------ small value types


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A number with an optional confidence interval [lo, hi] (None where not available)."""
  value: float
  lo: float | None = None
  hi: float | None = None

  def to_dict(self) -> dict[str, Any]:
    return {"value": self.value, "lo": self.lo, "hi": self.hi}


@dataclasses.dataclass(frozen=True)
class Onset:
  """An onset time read off a curve sampled at evaluation times.

  Attributes:
    status: "observed" (`value` is the onset), "right_censored" (the condition never held
      up to the last evaluation time `bound`: onset > bound), "left_censored" (it already
      held at the first evaluation time `bound`: onset <= bound) or "undefined" (no data).
    value: the onset in steps when observed, else None (a censored onset is never a number).
    bound: the censoring bound, else None.
    lo, hi: an interval for the onset (see each estimator); None where open.
    bracket: for an observed onset whose [lo, hi] is wider than its evaluation bracket
      (tau_mem: widened by the bootstrap band), the bracket (t_{i-1}, t_i) in which the
      defining condition first holds; None where [lo, hi] is the bracket.
  """
  status: str
  value: float | None = None
  bound: float | None = None
  lo: float | None = None
  hi: float | None = None
  bracket: tuple[float, float] | None = None

  @property
  def observed(self) -> bool:
    return self.status == OBSERVED

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _array(values) -> np.ndarray:
  """Floats with None -> NaN."""
  return np.array([np.nan if v is None else float(v) for v in np.ravel(np.asarray(values, object))],
                  dtype=np.float64)


def sorted_curves(times, *curves):
  """Sorts by time; returns float arrays (None curves stay None)."""
  t = _array(times)
  order = np.argsort(t, kind="stable")
  out = [t[order]]
  for c in curves:
    if c is None:
      out.append(None)
    else:
      c = _array(c)
      if c.shape != t.shape:
        raise ValueError(f"curve has {c.shape[0]} values for {t.shape[0]} times")
      out.append(c[order])
  return out


def log_time_crossing(t0: float, t1: float, v0: float, v1: float, level: float) -> float:
  """Time in [t0, t1] where the log-time interpolant from (t0, v0) to (t1, v1) equals `level`.

  t* = t0 (t1 / t0)^f with f = (level - v0) / (v1 - v0) clipped to [0, 1] (f = 1 when
  v1 == v0); a segment starting at t0 <= 0 uses t* = t0 + f (t1 - t0).
  """
  frac = 1.0 if v1 == v0 else (level - v0) / (v1 - v0)
  frac = min(1.0, max(0.0, frac))
  if frac == 0.0 or frac == 1.0:
    return float(t1 if frac else t0)
  if t0 <= 0:
    return float(t0 + frac * (t1 - t0))
  return float(math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0))))


def _first_rise(t, v, level) -> float | None:
  """First log-time-interpolated time at which v rises above `level` (None if never)."""
  above = np.flatnonzero(v > level)
  if above.size == 0:
    return None
  i = above[0]
  if i == 0:
    return float(t[0])
  return log_time_crossing(t[i - 1], t[i], v[i - 1], v[i], level)


# ------------------------------------------------------------------ per-run onsets


TAU_GEN_REFERENCES = ("minimum", "drop")


def tau_gen(times, quality, *, tol: float = 0.1, abs_tol: float = 0.0, quality_std=None,
            noise_sigmas: float = 2.0, until: str = "min",
            reference: str = "minimum") -> Onset:
  """Generalization time: the quality metric comes within `tol` of its minimum for good.

  With q_min the minimum of the finite values (lower is better; the last evaluation where it
  is reached in case of ties), the band is
  q <= L = q_min + max(tol * R, abs_tol, noise_sigmas * quality_std[i_min]), where the
  scale R is |q_min| (reference="minimum": within 10% of the minimum) or the drop
  q_max - q_min from the worst value before the minimum (reference="drop": 90% of the
  decrease done). "drop" is scale-free: it marks the end of the fast decrease whatever
  the level of the plateau, where "minimum" also waits for slow late improvements of
  small relative size, and for metrics whose plateau depends on n (a run that copies 8
  images has a large Frechet distance however well trained) it ties tau_gen to that
  plateau's height rather than to when it is reached. (The last
  term only when `quality_std` is given: a difference below the metric's own noise is not
  resolved; `abs_tol` serves metrics whose ideal value is 0, like a KL estimate, where a
  relative band shrinks to nothing).
  "Stays there": from the onset to the minimum (`until="min"`, default: a later rise, e.g.
  KL growing once the model memorizes, does not undo generalization) or to the last
  evaluation (`until="end"`: undefined when the last value is outside the band).
  tau_gen is the log-time crossing of L between the last evaluation outside the band and
  the first one of that final stretch inside it. When the minimum is the last evaluation
  the metric may still be improving: tau_gen is then relative to the best value seen.

  Args:
    times: evaluation steps [K].
    quality: metric values [K] (None/NaN skipped).
    tol: relative tolerance (config.report.tau_gen_tol).
    abs_tol: absolute tolerance in the metric's units (config.report.tau_gen_abs_tol).
    quality_std: optional std of the metric [K] (e.g. over FID reference sets).
    noise_sigmas: how many stds the band is at least wide.
    until: "min" or "end".
    reference: "minimum" or "drop" (config.report.tau_gen_reference).

  Returns:
    Onset: observed, with [lo, hi] = the bracketing evaluation times; left-censored when
    the first evaluation is already in that stretch; right-censored (bound = the
    second-to-last evaluation time) when the band is entered only at the last evaluation,
    since then nobody can tell that it stays there; undefined without data.
  """
  if until not in ("min", "end"):
    raise ValueError(f"until must be 'min' or 'end', got {until!r}")
  if reference not in TAU_GEN_REFERENCES:
    raise ValueError(f"reference must be one of {TAU_GEN_REFERENCES}, got {reference!r}")
  t, q, s = sorted_curves(times, quality, quality_std)
  keep = np.isfinite(q)
  t, q = t[keep], q[keep]
  s = None if s is None else s[keep]
  if t.size == 0:
    return Onset(UNDEFINED)
  q_min = float(q.min())
  i_min = int(np.flatnonzero(q == q_min)[-1])  # the last of tied minima
  scale = abs(q_min) if reference == "minimum" else float(q[:i_min + 1].max()) - q_min
  band = max(tol * scale, abs_tol)
  if s is not None and np.isfinite(s[i_min]):
    band = max(band, noise_sigmas * s[i_min])
  level = q_min + band
  inside = q <= level
  end = i_min if until == "min" else t.size - 1
  if not inside[end]:
    return Onset(UNDEFINED)
  j = end
  while j > 0 and inside[j - 1]:
    j -= 1
  if j == 0:
    return Onset(LEFT_CENSORED, bound=float(t[0]), hi=float(t[0]))
  if j == t.size - 1:
    return Onset(RIGHT_CENSORED, bound=float(t[j - 1]), lo=float(t[j - 1]))
  value = log_time_crossing(t[j - 1], t[j], q[j - 1], q[j], level)
  return Onset(OBSERVED, value=value, lo=float(t[j - 1]), hi=float(t[j]))


def memorized(f_mem, f_mem_lo=None, *, threshold: float = 0.01) -> np.ndarray:
  """The memorization condition per evaluation: f_mem > threshold and f_mem_lo > 0.

  A missing lower bound (None/NaN) leaves only the threshold test; a missing f_mem is False.
  With threshold = 0 and no lower bound this is the paper's strict f_mem > 0.
  """
  f = _array(f_mem)
  cond = f > threshold
  if f_mem_lo is not None:
    lo = _array(f_mem_lo)
    cond &= ~(np.isfinite(lo) & (lo <= 0))
  return cond


def tau_mem(times, f_mem, f_mem_lo=None, f_mem_hi=None, *, threshold: float = 0.01) -> Onset:
  """Memorization time: the first time f_mem exceeds `threshold` beyond bootstrap noise.

  The condition at an evaluation is `memorized(...)`: f_mem > threshold and the bootstrap
  95% lower bound f_mem_lo > 0. At the first evaluation i where it holds, tau_mem is the
  log-time crossing of the threshold by f_mem on [t_{i-1}, t_i] (with threshold 0 and
  f_mem(t_{i-1}) = 0 that is t_{i-1}, the last zero); if f_mem was already above the
  threshold at t_{i-1} (only the lower bound failed there), tau_mem = t_i.

  Args:
    times: evaluation steps [K].
    f_mem: memorized fractions [K] (None/NaN: not evaluated, skipped).
    f_mem_lo, f_mem_hi: bootstrap 95% interval [K], optional.
    threshold: config.report.tau_mem_threshold.

  Returns:
    Onset. When observed, `bracket` is the evaluation bracket (t_{i-1}, t_i) and [lo, hi]
    spans it and the threshold crossings of f_mem_hi (earliest plausible onset) and
    f_mem_lo (latest); hi is None when f_mem_lo never crosses the threshold within the
    budget. Right-censored (bound
    = last evaluation time) when the condition never holds, left-censored when it already
    holds at the first evaluation.
  """
  t, f, lo_c, hi_c = sorted_curves(times, f_mem, f_mem_lo, f_mem_hi)
  keep = np.isfinite(f)
  t, f = t[keep], f[keep]
  lo_c = None if lo_c is None else lo_c[keep]
  hi_c = None if hi_c is None else hi_c[keep]
  if t.size == 0:
    return Onset(UNDEFINED)
  cond = memorized(f, lo_c, threshold=threshold)
  hits = np.flatnonzero(cond)
  if hits.size == 0:
    return Onset(RIGHT_CENSORED, bound=float(t[-1]), lo=float(t[-1]))
  i = int(hits[0])
  if i == 0:
    return Onset(LEFT_CENSORED, bound=float(t[0]), hi=float(t[0]))
  if f[i - 1] <= threshold:
    value = log_time_crossing(t[i - 1], t[i], f[i - 1], f[i], threshold)
  else:
    value = float(t[i])
  lo, hi = float(t[i - 1]), float(t[i])
  if hi_c is not None:
    early = _first_rise(t, np.where(np.isfinite(hi_c), hi_c, f), threshold)
    if early is not None:
      lo = min(lo, early)
  if lo_c is not None and np.any(np.isfinite(lo_c)):
    late = _first_rise(t, np.where(np.isfinite(lo_c), lo_c, -np.inf), threshold)
    hi = None if late is None else max(hi, late)
  return Onset(OBSERVED, value=value, lo=lo, hi=hi, bracket=(float(t[i - 1]), float(t[i])))


def loss_gap_onset(times, train_loss, test_loss, train_loss_std=None, test_loss_std=None, *,
                   sigmas: float = 2.0) -> Onset:
  """Overfitting onset: test_loss - train_loss exceeds its noise (paper Fig. 2 middle).

  Rule: the excess e = (test - train) - sigmas * sqrt(train_std^2 + test_std^2) (stds over
  the noise draws; a missing std counts as 0) becomes positive; the onset is the log-time
  crossing of e = 0 at the first evaluation where e > 0.

  Returns:
    Onset with [lo, hi] = the bracketing evaluation times; right-censored (bound = last
    evaluation) when the gap never exceeds its noise, left-censored when it already does at
    the first evaluation.
  """
  t, tr, te, s_tr, s_te = sorted_curves(times, train_loss, test_loss, train_loss_std,
                                         test_loss_std)
  keep = np.isfinite(tr) & np.isfinite(te)
  t, tr, te = t[keep], tr[keep], te[keep]
  if t.size == 0:
    return Onset(UNDEFINED)
  var = np.zeros_like(t)
  for s in (s_tr, s_te):
    if s is not None:
      s = s[keep]
      var += np.where(np.isfinite(s), s, 0.0) ** 2
  excess = (te - tr) - sigmas * np.sqrt(var)
  hits = np.flatnonzero(excess > 0)
  if hits.size == 0:
    return Onset(RIGHT_CENSORED, bound=float(t[-1]), lo=float(t[-1]))
  i = int(hits[0])
  if i == 0:
    return Onset(LEFT_CENSORED, bound=float(t[0]), hi=float(t[0]))
  value = log_time_crossing(t[i - 1], t[i], excess[i - 1], excess[i], 0.0)
  return Onset(OBSERVED, value=value, lo=float(t[i - 1]), hi=float(t[i]))


def rise_onset(times, reference, values, *, rise: float) -> Onset:
  """First time after the minimum of `reference` at which `values` have risen by `rise`.

  The random-features study's memorization onset (paper Sect. 3, Fig. 5, which gives no
  threshold for "L_gen starts rising"): with reference = L_test and values = L_gen, the
  onset is the first time after argmin L_test at which L_gen >= L_gen(argmin) + rise,
  log-time interpolated (`log_time_crossing`).

  Returns:
    Onset with [lo, hi] = the bracketing evaluation times; right-censored (bound = last
    time) when the values never rise that much; undefined without a finite reference.
  """
  t, ref, v = sorted_curves(times, reference, values)
  if not np.any(np.isfinite(ref)):
    return Onset(UNDEFINED)
  i0 = int(np.nanargmin(ref))
  level = v[i0] + rise
  above = np.flatnonzero(v[i0:] >= level)
  if above.size == 0:
    return Onset(RIGHT_CENSORED, bound=float(t[-1]), lo=float(t[-1]))
  j = i0 + int(above[0])
  if j == i0:  # rise <= 0: the minimum itself
    return Onset(OBSERVED, value=float(t[j]), lo=float(t[j]), hi=float(t[j]))
  value = log_time_crossing(t[j - 1], t[j], v[j - 1], v[j], level)
  return Onset(OBSERVED, value=value, lo=float(t[j - 1]), hi=float(t[j]))


# ------------------------------------------------------------------ statistics across runs


def t_quantile(conf: float, dof: int) -> float:
  from scipy import stats  # imported when needed: scipy.stats takes a second to import
  return float(stats.t.ppf(0.5 + conf / 2.0, dof))


def mean_interval(values, *, conf: float = 0.95) -> Estimate | None:
  """Mean of the finite values with a t-based `conf` interval of the mean.

  mean +- t_{(1+conf)/2, k-1} sd / sqrt(k) over k values; no interval when k = 1; None when
  k = 0.
  """
  v = _array(values)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return None
  m = float(v.mean())
  if v.size == 1:
    return Estimate(m)
  half = t_quantile(conf, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
  return Estimate(m, m - half, m + half)


def geometric_mean(values, *, conf: float = 0.95) -> Estimate | None:
  """Geometric mean of the positive finite values with the t-interval of the mean of logs.

  Timescales vary multiplicatively across seeds, so they are averaged on a log scale.
  """
  v = _array(values)
  v = v[np.isfinite(v) & (v > 0)]
  if v.size == 0:
    return None
  est = mean_interval(np.log(v), conf=conf)
  return Estimate(math.exp(est.value), None if est.lo is None else math.exp(est.lo),
                  None if est.hi is None else math.exp(est.hi))


@dataclasses.dataclass(frozen=True)
class CurveStats:
  """A metric curve across the runs of one group (seeds and data indices), per time.

  Attributes:
    times: the union of the runs' evaluation times [K].
    mean: mean over the runs with a finite value at that time [K] (NaN if none).
    lo, hi: t-based interval of the mean [K] (NaN where fewer than 2 runs).
    min, max: range over the runs [K] (what figures shade: with 2 seeds the t-interval
      is 12.7 standard errors wide).
    count: runs contributing at each time [K].
  """
  times: np.ndarray
  mean: np.ndarray
  lo: np.ndarray
  hi: np.ndarray
  min: np.ndarray
  max: np.ndarray
  count: np.ndarray


def curve_stats(curves: Sequence[tuple[Any, Any]], *, conf: float = 0.95) -> CurveStats:
  """Seed statistics of a curve: per evaluation time, `mean_interval` over the runs.

  Args:
    curves: one (times [K_r], values [K_r]) pair per run.
    conf: confidence level of the interval.
  """
  per_run = []
  for times, values in curves:
    t, v = sorted_curves(times, values)
    per_run.append(dict(zip(t.tolist(), v.tolist())))
  all_t = np.array(sorted(set().union(*[set(d) for d in per_run])), dtype=np.float64)
  k = all_t.size
  mean, lo, hi, vmin, vmax = (np.full(k, np.nan) for _ in range(5))
  count = np.zeros(k, dtype=np.int64)
  for j, t in enumerate(all_t.tolist()):
    vals = [d[t] for d in per_run if t in d and np.isfinite(d[t])]
    count[j] = len(vals)
    est = mean_interval(vals, conf=conf)
    if est is not None:
      mean[j] = est.value
      vmin[j], vmax[j] = min(vals), max(vals)
      if est.lo is not None:
        lo[j], hi[j] = est.lo, est.hi
  return CurveStats(all_t, mean, lo, hi, vmin, vmax, count)


@dataclasses.dataclass(frozen=True)
class OnsetStats:
  """A timescale across the runs of one group (seeds and data indices).

  Attributes:
    status: "observed" (every run observed), "partially_censored" (some runs censored:
      `estimate` is over the observed ones only, biased towards early onsets),
      "right_censored" / "left_censored" (every run censored the same way), "undefined".
    estimate: geometric mean and t-interval over the observed runs, or None.
    bound: for all-right-censored groups the smallest bound (every onset is later), for
      all-left-censored ones the largest (every onset is at or before it); else None.
  """
  status: str
  estimate: Estimate | None
  num_runs: int
  num_observed: int
  num_right_censored: int
  num_left_censored: int
  bound: float | None = None

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["estimate"] = None if self.estimate is None else self.estimate.to_dict()
    return d


def onset_stats(onsets: Sequence[Onset], *, conf: float = 0.95) -> OnsetStats:
  """Combines the onsets of a group's runs (see OnsetStats)."""
  obs = [o.value for o in onsets if o.observed]
  right = [o.bound for o in onsets if o.status == RIGHT_CENSORED]
  left = [o.bound for o in onsets if o.status == LEFT_CENSORED]
  counts = dict(num_runs=len(onsets), num_observed=len(obs), num_right_censored=len(right),
                num_left_censored=len(left))
  estimate = geometric_mean(obs, conf=conf) if obs else None
  if obs and len(obs) == len(onsets):
    return OnsetStats(OBSERVED, estimate, **counts)
  if obs:
    return OnsetStats("partially_censored", estimate, **counts)
  if right and len(right) == len(onsets):
    return OnsetStats(RIGHT_CENSORED, None, bound=float(min(right)), **counts)
  if left and len(left) == len(onsets):
    return OnsetStats(LEFT_CENSORED, None, bound=float(max(left)), **counts)
  return OnsetStats(UNDEFINED, None, **counts)


# ------------------------------------------------------------------ power-law fits


class PowerLaw:
  """What every power-law fit y = c prod_k x_k^{a_k} shares (the least-squares
  `PowerLawFit` here, the censoring-aware `fits.CensoredFit`): its variables `names`, one
  Estimate per exponent in `exponents`, and the `prefactor` c. Subclasses are dataclasses
  holding those three fields."""
  names: tuple[str, ...]
  exponents: tuple[Estimate, ...]
  prefactor: Estimate

  @property
  def alpha(self) -> Estimate:
    """The first exponent (the only one of a one-variable fit)."""
    return self.exponents[0]

  def exponent(self, name: str) -> Estimate:
    return self.exponents[self.names.index(name)]

  def predict(self, *xs) -> np.ndarray:
    """c prod_k x_k^{a_k} at the given values (one array per variable)."""
    y = np.full(np.broadcast(*[np.asarray(x, np.float64) for x in xs]).shape,
                self.prefactor.value)
    for x, e in zip(xs, self.exponents):
      y = y * np.asarray(x, np.float64) ** e.value
    return y


@dataclasses.dataclass(frozen=True)
class PowerLawFit(PowerLaw):
  """y = c * prod_k x_k^{a_k}, fitted by (weighted) least squares on logs.

  Attributes:
    names: the variables, e.g. ("n",) or ("n", "width").
    exponents: one Estimate per variable (t-based `conf` intervals from the regression).
    prefactor: c with the exponentiated interval of the intercept (at x = 1).
    num_points: points used (runs); dof = num_points - 1 - len(names).
    r2: coefficient of determination on logs.
    residual_std: std of the log residuals (a seed-to-seed scatter of about that factor).
    conf: confidence level.
    stderrs: the standard error of each exponent (None where dof = 0).
  """
  names: tuple[str, ...]
  exponents: tuple[Estimate, ...]
  prefactor: Estimate
  num_points: int
  r2: float | None
  residual_std: float | None
  conf: float
  stderrs: tuple[float | None, ...] = ()

  def to_dict(self) -> dict[str, Any]:
    return {
        "model": "y = c * " + " * ".join(f"{n}^a_{n}" for n in self.names),
        "method": "least squares on logs, t-based intervals over runs",
        "exponents": {n: e.to_dict() for n, e in zip(self.names, self.exponents)},
        "prefactor": self.prefactor.to_dict(),
        "num_points": self.num_points, "r2": self.r2, "residual_std": self.residual_std,
        "conf": self.conf,
    }


def fit_power_law_multi(xs: Mapping[str, Any], y, *, conf: float = 0.95,
                        y_err=None) -> PowerLawFit | None:
  """Fits log y = log c + sum_k a_k log x_k by (weighted) least squares.

  Weights w_i = 1 / (y_err_i / y_i)^2 (the relative error is the error of log y; floored
  at 1e-12), all 1 without y_err (ordinary least squares). Intervals: coefficient +-
  t_{(1+conf)/2, dof} * se, se from sigma^2 (X^T W X)^{-1} with sigma^2 = sum_i w_i r_i^2
  / dof (dof = points - parameters); no intervals when dof = 0. Points with non-positive
  or non-finite entries are dropped.

  Returns:
    The fit, or None when the logs do not determine it (fewer distinct points than
    parameters, e.g. a single n, or a single width for a width exponent).
  """
  names = tuple(xs)
  cols = [_array(xs[n]) for n in names]
  yy = _array(y)
  ok = np.isfinite(yy) & (yy > 0)
  for c in cols:
    ok &= np.isfinite(c) & (c > 0)
  if not names:
    raise ValueError("need at least one variable")
  design = np.column_stack([np.ones(int(ok.sum()))] + [np.log(c[ok]) for c in cols])
  ly = np.log(yy[ok])
  num, params = design.shape
  if num < params or np.linalg.matrix_rank(design) < params:
    return None
  if y_err is None:
    w = np.ones(num)
  else:
    w = 1.0 / np.maximum(_array(y_err)[ok] / yy[ok], 1e-12) ** 2
  sw = np.sqrt(w)
  coef, *_ = np.linalg.lstsq(design * sw[:, None], ly * sw, rcond=None)
  resid = ly - design @ coef
  dof = num - params
  ss_tot = float(((ly - ly.mean()) ** 2).sum())
  r2 = None if ss_tot == 0 else 1.0 - float((resid ** 2).sum()) / ss_tot
  if dof > 0:
    sigma2 = float((w * resid ** 2).sum()) / dof
    se = np.sqrt(np.maximum(np.diag(sigma2 * np.linalg.inv((design * w[:, None]).T @ design)),
                            0.0))
    half = t_quantile(conf, dof) * se
    bounds = [(float(b - h), float(b + h)) for b, h in zip(coef, half)]
    residual_std = math.sqrt(sigma2)
    stderrs = tuple(float(e) for e in se[1:])
  else:
    bounds = [(None, None)] * params
    residual_std = None
    stderrs = (None,) * (params - 1)
  b0, (l0, h0) = float(coef[0]), bounds[0]
  prefactor = Estimate(math.exp(b0), None if l0 is None else math.exp(l0),
                       None if h0 is None else math.exp(h0))
  exponents = tuple(Estimate(float(c), lo, hi) for c, (lo, hi) in zip(coef[1:], bounds[1:]))
  return PowerLawFit(names, exponents, prefactor, num, r2, residual_std, conf, stderrs)


def fit_power_law(x, y, *, conf: float = 0.95, name: str = "n", y_err=None) -> PowerLawFit | None:
  """y = c x^alpha by least squares on (log x, log y); see `fit_power_law_multi`.

  Used for tau_mem = c n^alpha (the paper: alpha = 1, c ~ 300 at W = 32) and tau_gen
  against n (alpha ~ 0), each point one uncensored run, and for the random-features
  study's E*_score against psi_n (weighted by the seeds' spread).
  """
  return fit_power_law_multi({name: x}, y, conf=conf, y_err=y_err)


def observed_points(xs: Sequence[float], onsets: Sequence[Onset]):
  """The (x, onset value) pairs of the observed onsets (censored runs are left out)."""
  pairs = [(x, o.value) for x, o in zip(xs, onsets) if o.observed]
  return [p[0] for p in pairs], [p[1] for p in pairs]


@dataclasses.dataclass(frozen=True)
class WidthScaling:
  """How the timescales move with the width W (paper Fig. 3: W tau_gen ~ 3e6, tau_mem ~ n / W).

  Attributes:
    widths: the widths combined, ascending.
    w_tau_gen: per width, the geometric mean (and interval) of W tau_gen over observed runs.
    tau_mem_w_over_n: per width, the same for tau_mem W / n.
    w_tau_gen_spread: max / min of the per-width W tau_gen (1 = perfect collapse).
    tau_mem_w_over_n_spread: the same for tau_mem W / n.
    tau_gen_fit: tau_gen = c W^beta (paper: beta = -1), over observed runs of every width.
    tau_mem_fit: tau_mem = c n^alpha W^gamma (paper: alpha = 1, gamma = -1).
  """
  widths: tuple[int, ...]
  w_tau_gen: dict[int, Estimate | None]
  tau_mem_w_over_n: dict[int, Estimate | None]
  w_tau_gen_spread: float | None
  tau_mem_w_over_n_spread: float | None
  tau_gen_fit: PowerLawFit | None
  tau_mem_fit: PowerLawFit | None

  def to_dict(self) -> dict[str, Any]:
    def est(d):
      return {str(w): None if e is None else e.to_dict() for w, e in d.items()}
    return {
        "widths": list(self.widths),
        "w_tau_gen": est(self.w_tau_gen),
        "tau_mem_w_over_n": est(self.tau_mem_w_over_n),
        "w_tau_gen_spread": self.w_tau_gen_spread,
        "tau_mem_w_over_n_spread": self.tau_mem_w_over_n_spread,
        "tau_gen_fit": None if self.tau_gen_fit is None else self.tau_gen_fit.to_dict(),
        "tau_mem_fit": None if self.tau_mem_fit is None else self.tau_mem_fit.to_dict(),
    }


def spread(values) -> float | None:
  """max / min of positive values (1 = a perfect collapse); None for fewer than two."""
  vals = [float(v) for v in values]
  return None if len(vals) < 2 else max(vals) / min(vals)


def width_scaling(widths: Sequence[int], ns: Sequence[int], tau_gens: Sequence[Onset],
                  tau_mems: Sequence[Onset], *, conf: float = 0.95) -> WidthScaling:
  """Width scaling of the timescales from runs of several widths (one entry per run).

  Args:
    widths, ns: each run's width W and training-set size n.
    tau_gens, tau_mems: each run's onsets (censored ones are left out of every number).
    conf: confidence level.
  """
  w_all = np.asarray(widths, np.float64)
  n_all = np.asarray(ns, np.float64)
  uniq = tuple(sorted({int(w) for w in widths}))
  w_tau_gen, tau_mem_wn = {}, {}
  for w in uniq:
    sel = [i for i in range(len(widths)) if int(widths[i]) == w]
    w_tau_gen[w] = geometric_mean([w * tau_gens[i].value for i in sel if tau_gens[i].observed],
                                  conf=conf)
    tau_mem_wn[w] = geometric_mean(
        [tau_mems[i].value * w / n_all[i] for i in sel if tau_mems[i].observed], conf=conf)
  g = [i for i, o in enumerate(tau_gens) if o.observed]
  m = [i for i, o in enumerate(tau_mems) if o.observed]
  gen_fit = fit_power_law_multi({"width": w_all[g]}, [tau_gens[i].value for i in g], conf=conf)
  mem_fit = fit_power_law_multi({"n": n_all[m], "width": w_all[m]},
                                [tau_mems[i].value for i in m], conf=conf)
  return WidthScaling(uniq, w_tau_gen, tau_mem_wn,
                      spread([e.value for e in w_tau_gen.values() if e is not None]),
                      spread([e.value for e in tau_mem_wn.values() if e is not None]),
                      gen_fit, mem_fit)


# ------------------------------------------------------------------ phase diagram


def f_mem_at(times, values, tau: float) -> float | None:
  """f_mem at time tau: its value at the latest evaluation time at or before tau.

  Not interpolated: the phase diagram asks whether f_mem is exactly zero, and any
  interpolation between a zero and a non-zero evaluation would be non-zero. None when tau
  is before the first evaluation or after the last one (beyond the budget).
  """
  t, v = sorted_curves(times, values)
  keep = np.isfinite(v)
  t, v = t[keep], v[keep]
  if t.size == 0 or tau < t[0] or tau > t[-1]:
    return None
  i = int(np.searchsorted(t, tau, side="right")) - 1
  return float(v[i])


@dataclasses.dataclass(frozen=True)
class PhaseBoundary:
  """One point of the (n, p) phase diagram (paper Fig. 3 right).

  Attributes:
    width, num_params: the model.
    multiplier: tau = multiplier * tau_gen(width).
    tau: that time in steps (None without tau_gen).
    n: the boundary: the smallest n of the grid such that f_mem(tau) = 0 for it and every
      larger n (None unless status is "observed" or "at_or_below").
    status: "observed"; "at_or_below" (every n has f_mem = 0: the boundary is at or below
      the smallest n); "above_grid" (the largest n already memorizes at tau); "beyond_budget"
      (tau is after the last evaluation); "before_first_evaluation"; "no_tau_gen" (tau_gen
      of the width not measured).
    memorizing_n: the n whose runs memorize at tau (any seed).
  """
  width: int
  num_params: int | None
  multiplier: float
  tau: float | None
  n: int | None
  status: str
  memorizing_n: tuple[int, ...] = ()

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["memorizing_n"] = list(self.memorizing_n)
    return d


def phase_diagram(records: Sequence[Mapping[str, Any]],
                  tau_gen_by_width: Mapping[int, float | None], *,
                  multipliers: Sequence[float] = (1.0, 3.0, 8.0), threshold: float = 0.0,
                  use_lo: bool = False) -> list[PhaseBoundary]:
  """The smallest n with f_mem(tau) = 0 at tau in {1, 3, 8} x tau_gen, per width.

  f_mem(tau) is read at the latest evaluation at or before tau (`f_mem_at`). A run counts
  as memorizing at tau when `memorized(f, lo, threshold)` holds there: with threshold = 0
  and use_lo = False this is the paper's strict f_mem > 0; the report uses the tau_mem
  criterion (f_mem > config.report.tau_mem_threshold with f_mem_lo > 0), since on small
  data sets a bare f_mem > 0 is sampling noise. A (width, n) has f_mem = 0 when none of its
  runs (seeds, indices) memorizes. The boundary is the smallest n above which no n
  memorizes (with f_mem monotone in n this is the paper's "smallest n with f_mem = 0"; a
  non-monotone stray zero below a memorizing n is not taken as the boundary).

  Args:
    records: one mapping per run with "width", "n", "times", "f_mem", and optionally
      "num_params" and "f_mem_lo".
    tau_gen_by_width: tau_gen per width (None: not measured).
    multipliers: the tau / tau_gen values.
    threshold, use_lo: the memorization condition, see above.

  Returns:
    One PhaseBoundary per (width, multiplier), widths ascending.
  """
  by_width: dict[int, list[Mapping[str, Any]]] = {}
  for r in records:
    by_width.setdefault(int(r["width"]), []).append(r)
  out = []
  for w in sorted(by_width):
    recs = by_width[w]
    num_params = next((int(r["num_params"]) for r in recs if r.get("num_params") is not None),
                      None)
    tg = tau_gen_by_width.get(w)
    for mult in multipliers:
      if tg is None:
        out.append(PhaseBoundary(w, num_params, float(mult), None, None, "no_tau_gen"))
        continue
      tau = float(mult) * float(tg)
      state: dict[int, bool] = {}  # n -> some run memorizes
      for r in recs:
        f = f_mem_at(r["times"], r["f_mem"], tau)
        if f is None:
          continue
        lo = None
        if use_lo and r.get("f_mem_lo") is not None:
          lo = f_mem_at(r["times"], r["f_mem_lo"], tau)
        mem = bool(memorized([f], None if lo is None else [lo], threshold=threshold)[0])
        n = int(r["n"])
        state[n] = state.get(n, False) or mem
      if not state:
        first = min(float(np.nanmin(_array(r["times"]))) for r in recs)
        status = "before_first_evaluation" if tau < first else "beyond_budget"
        out.append(PhaseBoundary(w, num_params, float(mult), tau, None, status))
        continue
      grid = sorted(state)
      mem_n = tuple(n for n in grid if state[n])
      if state[grid[-1]]:
        out.append(PhaseBoundary(w, num_params, float(mult), tau, None, "above_grid", mem_n))
        continue
      k = len(grid) - 1
      while k > 0 and not state[grid[k - 1]]:
        k -= 1
      status = "at_or_below" if k == 0 else OBSERVED
      out.append(PhaseBoundary(w, num_params, float(mult), tau, grid[k], status, mem_n))
  return out
