"""Censoring-aware power-law fits of onset times, their intervals, and the collapse exponent.

An onset time is rarely a number: it is known to lie in an interval, the evaluation bracket
of an observed onset, (bound, inf) for a run that never got there (right-censored) or
(0, bound] for one already there at the first evaluation (left-censored). This module fits

  log tau_i = log c + sum_k a_k log x_ik + sigma eps_i,   eps_i ~ N(0, 1)     (1)

(tau = c n^alpha with log-normal scatter; x = n, or n and the width W) by maximum likelihood
over the intervals [lo_i, hi_i] that contain tau_i:

  log L = sum_i w_i log P_i,  P_i = Phi((log hi_i - mu_i) / sigma) - Phi((log lo_i - mu_i) / sigma)
                                                                                          (2)

with mu_i = log c + sum_k a_k log x_ik (Phi(-inf) = 0, Phi(inf) = 1; an exact value
lo_i = hi_i contributes the density phi(z_i) / sigma instead). Censored runs thus count
for what is known about them, instead of being dropped (which biases the exponent low when
the largest n are partly censored: only their early onsets are kept). The maximum is found
by a damped Newton iteration on (beta, log sigma), vectorised over many data sets at once
(bootstrap replicates, profile grids), with the analytic gradient and Hessian of (2).

Intervals for the exponents:
  - cluster bootstrap (where a sweep has >= 3 seeds, or >= 3 data indices): runs of one seed
    share their initial weights and their noise across n, runs of one data index their
    images, so neither are independent points. A replicate draws the seeds with replacement
    (and the data indices, independently, when there are >= 3 of them) and weights each run
    by (times its seed was drawn) x (times its index was drawn). With G clusters (the
    fewer of the resampled factors) the interval is

      a_hat +- t_{(1 + conf) / 2, G - 1} sqrt(G / (G - 1)) sd_boot(a),

    since a percentile interval over G = 3-5 clusters covers far less than its nominal
    level (Student's t on G - 1 degrees of freedom, the usual few-cluster correction;
    measured here: 81% for a nominal 95% with 4 seeds). Each end is then widened to the
    profile-likelihood interval's (below) where that is wider: the bootstrap sees only the
    scatter between seeds, and when all seeds fall into the same brackets it sees none.
  - otherwise the profile likelihood: {a : 2 (log L_max - log L_prof(a)) <= N log(1 +
    t^2 / (N - p))}, t the (1 + conf) / 2 quantile of Student's t with N - p degrees of
    freedom (N runs, p coefficients). Without censoring and with exact values this is
    exactly the t-interval of least squares on logs; it treats runs as independent.
  Every fit states which was used (`CensoredFit.interval_method`).

The collapse exponent (the paper's own criterion, Fig. 2 inset): the alpha for which the
curves g_r(t) = f_mem_r(t) / f_mem_r(t_max) of all runs r fall onto one curve against
t / n_r^alpha. With u = log t - alpha log n, the misfit is

  C(alpha) = sum_{r != s, n_r != n_s} w_r w_s sum_{t in r, u in range of s} (g_r(t) - g_s(u))^2
             / sum_{same pairs and points} w_r w_s                                        (3)

(g_s between its evaluations linear in log time); alpha_collapse = argmin C on a grid, its
interval from the seed bootstrap (weights w, the same t-form) or, with < 3 seeds, the
percentile interval of resampling the runs within each n (which ignores the seeds'
correlation across n; said so in the result).

Usage:
  lo, hi = onset_bounds(onsets)
  fit = fit_censored({"n": ns}, lo, hi, seeds=seeds, indices=indices)
  fit.alpha.value, fit.alpha.lo, fit.alpha.hi, fit.interval_method
  col = collapse_exponent(ns, curves, seeds=seeds)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import special

from jaxdiff.findings import timescales

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# log sigma is kept in [log sigma_min, log 20], sigma_min the larger of 1e-3 and the
# standard deviation of a point uniform in the median observed bracket (its log-width /
# sqrt(12)): scatter below the grid's resolution is not resolvable from brackets, and when
# a line threads every bracket the likelihood is flat as sigma -> 0 (every such line is a
# maximum, the estimate arbitrary); at that floor it peaks at the line through the middle.
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(1e-3), math.log(20.0)

BOOTSTRAP = "cluster_bootstrap"
PROFILE = "profile_likelihood"


# ------------------------------------------------------------------ onsets as intervals


def onset_bounds(onsets: Sequence[timescales.Onset]) -> tuple[np.ndarray, np.ndarray]:
  """The interval [lo, hi] known to contain each onset (NaN, NaN for undefined ones).

  Observed: the evaluation bracket in which the defining condition first holds
  (`Onset.bracket`, else the onset's [lo, hi]): the onset so defined lies in it for sure.
  The wider bootstrap band of tau_mem is not used: f_mem's sampling noise is one source of
  the run-to-run scatter that sigma in (1) measures, and counting it in the intervals too
  would count it twice. Right-censored: (bound, inf). Left-censored: (0, bound].
  """
  lo = np.full(len(onsets), np.nan)
  hi = np.full(len(onsets), np.nan)
  for i, o in enumerate(onsets):
    if o.status == timescales.OBSERVED:
      l, h = o.bracket if o.bracket is not None else (o.lo, o.hi)
      lo[i] = min(o.value, o.value if l is None else l)
      hi[i] = max(o.value, math.inf if h is None else h)
    elif o.status == timescales.RIGHT_CENSORED:
      lo[i], hi[i] = o.bound, math.inf
    elif o.status == timescales.LEFT_CENSORED:
      lo[i], hi[i] = 0.0, o.bound
  return lo, hi


# ------------------------------------------------------------------ the likelihood (2)


def _log_prob(za, zb):
  """log(Phi(zb) - Phi(za)) for za < zb, stable in both tails."""
  flip = za > 0  # both in the upper tail: Phi(-za) - Phi(-zb)
  lo = np.where(flip, -zb, za)
  hi = np.where(flip, -za, zb)
  lh = special.log_ndtr(hi)
  d = np.minimum(special.log_ndtr(lo) - lh, -1e-300)
  return lh + np.log1p(-np.exp(d))


def _terms(mu, eta, a, b, exact):
  """Per-point log P and its derivatives in (mu, eta = log sigma).

  Returns l, g_mu, g_eta, h_mumu, h_mueta, h_etaeta, each [B, N].
  """
  s = np.exp(eta)[:, None]
  with np.errstate(invalid="ignore", over="ignore"):
    za = (a - mu) / s
    zb = (b - mu) / s
  # exact values: density of z
  ze = np.where(exact, za, 0.0)
  l_e = -eta[:, None] - 0.5 * ze ** 2 - LOG_SQRT_2PI
  # intervals
  za_i = np.where(exact, -1.0, za)
  zb_i = np.where(exact, 1.0, zb)
  logp = _log_prob(za_i, zb_i)

  def ratio(z):  # phi(z) / P and powers of z times it; 0 at z = +-inf
    fin = np.isfinite(z)
    zf = np.where(fin, z, 0.0)
    r = np.where(fin, np.exp(np.minimum(-0.5 * zf ** 2 - LOG_SQRT_2PI - logp, 700.0)), 0.0)
    return zf, r

  za_f, ra = ratio(za_i)
  zb_f, rb = ratio(zb_i)
  g_mu_i = (ra - rb) / s
  g_eta_i = za_f * ra - zb_f * rb
  h_mumu_i = (za_f * ra - zb_f * rb) / s ** 2 - g_mu_i ** 2
  h_mueta_i = ((1 - zb_f ** 2) * rb - (1 - za_f ** 2) * ra) / s - g_mu_i * g_eta_i
  h_etaeta_i = (zb_f * (1 - zb_f ** 2) * rb - za_f * (1 - za_f ** 2) * ra) - g_eta_i ** 2

  l = np.where(exact, l_e, logp)
  g_mu = np.where(exact, ze / s, g_mu_i)
  g_eta = np.where(exact, ze ** 2 - 1.0, g_eta_i)
  h_mumu = np.where(exact, -1.0 / s ** 2, h_mumu_i)
  h_mueta = np.where(exact, -2.0 * ze / s, h_mueta_i)
  h_etaeta = np.where(exact, -2.0 * ze ** 2, h_etaeta_i)
  return l, g_mu, g_eta, h_mumu, h_mueta, h_etaeta


def _loglik_grad_hess(theta, X, offset, a, b, exact, w):
  """log L (2), its gradient and Hessian in theta = (beta, log sigma), batched over B.

  Shapes: theta [B, p + 1], X [N, p], offset, a, b, exact, w [B, N] (a = -inf, b = inf at
  censored ends).
  """
  beta, eta = theta[:, :-1], theta[:, -1]
  mu = beta @ X.T + offset
  l, g_mu, g_eta, h_mm, h_me, h_ee = _terms(mu, eta, a, b, exact)
  ll = (w * l).sum(1)
  p = X.shape[1]
  grad = np.empty(theta.shape)
  grad[:, :p] = (w * g_mu) @ X
  grad[:, p] = (w * g_eta).sum(1)
  hess = np.empty(theta.shape + (p + 1,))
  xx = (X[:, :, None] * X[:, None, :]).reshape(X.shape[0], p * p)
  hess[:, :p, :p] = ((w * h_mm) @ xx).reshape(-1, p, p)
  hess[:, :p, p] = (w * h_me) @ X
  hess[:, p, :p] = hess[:, :p, p]
  hess[:, p, p] = (w * h_ee).sum(1)
  return ll, grad, hess


def _maximize(theta0, X, offset, a, b, exact, w, eta_min=LOG_SIGMA_MIN, *, iters: int = 100,
              tol: float = 1e-9):
  """Damped (Levenberg-Marquardt) Newton ascent on (2), vectorised over the batch.

  A step solves (-H + lam I) d = g; it is taken when log L does not decrease (lam shrinks
  tenfold) and refused otherwise (lam grows tenfold). log sigma is clipped to its range.
  Only the data sets still moving are computed at each iteration. eta_min: the floor of
  log sigma, a scalar or one per data set [B].
  Returns (theta [B, p + 1], log L [B], converged [B]).
  """
  theta = theta0.copy()
  eta_min = np.broadcast_to(np.asarray(eta_min, np.float64), theta.shape[:1])
  theta[:, -1] = np.clip(theta[:, -1], eta_min, LOG_SIGMA_MAX)
  k = theta.shape[1]
  ll, g, h = _loglik_grad_hess(theta, X, offset, a, b, exact, w)
  lam = np.full(theta.shape[0], 1e-3)
  done = np.zeros(theta.shape[0], bool)
  eye = np.eye(k)
  act = np.arange(theta.shape[0])
  for _ in range(iters):
    mat = -h[act] + lam[act, None, None] * eye
    try:
      step = np.linalg.solve(mat, g[act][..., None])[..., 0]
    except np.linalg.LinAlgError:  # a singular system somewhere in the batch
      step = (np.linalg.pinv(np.where(np.isfinite(mat), mat, 0.0))
              @ g[act][..., None])[..., 0]
    step = np.where(np.isfinite(step), step, 0.0)
    trial = theta[act] + step
    trial[:, -1] = np.clip(trial[:, -1], eta_min[act], LOG_SIGMA_MAX)
    moved = np.abs(trial - theta[act]).max(1)
    ll_t, g_t, h_t = _loglik_grad_hess(trial, X, offset[act], a[act], b[act], exact[act],
                                       w[act])
    ok = np.isfinite(ll_t) & (ll_t >= ll[act] - 1e-12)
    ok &= np.all(np.isfinite(g_t), axis=1) & np.all(np.isfinite(h_t), axis=(1, 2))
    gain = np.where(ok, ll_t - ll[act], 0.0)
    acc = act[ok]
    theta[acc], ll[acc], g[acc], h[acc] = trial[ok], ll_t[ok], g_t[ok], h_t[ok]
    lam[act] = np.where(ok, np.maximum(lam[act] / 10, 1e-12), np.minimum(lam[act] * 10, 1e12))
    # converged: a tiny accepted gain with a small move, or damping that cannot move it
    fin = (ok & (gain < tol) & (moved < 1e-5)) | (lam[act] >= 1e12)
    done[act[fin]] = True
    act = act[~fin]
    if act.size == 0:
      break
  return theta, ll, done


# ------------------------------------------------------------------ fits


@dataclasses.dataclass(frozen=True)
class CensoredFit(timescales.PowerLaw):
  """tau = c prod_k x_k^{a_k} with log-normal scatter, fitted to onset intervals by (2).

  Attributes:
    names: the variables, e.g. ("n",) or ("n", "width").
    exponents: one Estimate per variable, with the `conf` interval of `interval_method`.
    prefactor: c (interval from the same method).
    sigma: the fitted log-scale scatter (maximum likelihood).
    num_runs: runs used; num_observed / num_right_censored / num_left_censored split them.
    interval_method: "cluster_bootstrap" or "profile_likelihood".
    interval_detail: a sentence saying how the interval was made (clusters, replicates).
    log_likelihood: log L at the maximum.
    conf: confidence level.
  """
  names: tuple[str, ...]
  exponents: tuple[timescales.Estimate, ...]
  prefactor: timescales.Estimate
  sigma: float
  num_runs: int
  num_observed: int
  num_right_censored: int
  num_left_censored: int
  interval_method: str
  interval_detail: str
  log_likelihood: float
  conf: float

  def to_dict(self) -> dict[str, Any]:
    return {
        "model": "log tau = log c + " + " + ".join(f"a_{n} log {n}" for n in self.names)
                 + " + sigma eps (interval-censored maximum likelihood)",
        "exponents": {n: e.to_dict() for n, e in zip(self.names, self.exponents)},
        "prefactor": self.prefactor.to_dict(), "sigma": self.sigma,
        "num_runs": self.num_runs, "num_observed": self.num_observed,
        "num_right_censored": self.num_right_censored,
        "num_left_censored": self.num_left_censored,
        "interval_method": self.interval_method, "interval_detail": self.interval_detail,
        "log_likelihood": self.log_likelihood, "conf": self.conf,
    }


def _init(X, a, b, w):
  """Weighted least squares on a point per interval (its log-midpoint, or the finite bound).

  Shapes: X [N, p], a, b, w [R, N]; returns theta [R, p + 1].
  """
  two = np.isfinite(a) & np.isfinite(b)
  y = np.where(two, 0.5 * np.where(two, a + b, 0.0), np.where(np.isfinite(a), a, b))
  xtw = np.einsum("ni,rn->rin", X, w)
  coef = np.linalg.solve(xtw @ X + 1e-9 * np.eye(X.shape[1]),
                         np.einsum("rin,rn->ri", xtw, y)[..., None])[..., 0]
  resid = y - coef @ X.T
  s = np.sqrt((w * resid ** 2).sum(1) / np.maximum(w.sum(1), 1))
  return np.concatenate([coef, np.log(np.maximum(s, 0.05))[:, None]], axis=1)


def _identifiable(X, a, b, w) -> bool:
  """The exponents are determined: two-sided intervals span the columns (rank p)."""
  two = np.isfinite(a) & np.isfinite(b) & (w > 0)
  return int(two.sum()) >= X.shape[1] and np.linalg.matrix_rank(X[two]) == X.shape[1]


def cluster_weights(seeds, indices, num: int, rng: np.random.Generator,
                    min_clusters: int = 3) -> tuple[np.ndarray | None, str, int]:
  """Bootstrap weights [num, N] resampling seeds (and data indices) with replacement.

  A factor is resampled when it has >= min_clusters levels; a run's weight is the product
  of how often its seed and its index were drawn. Returns (weights, description, G) with
  G the fewest levels among the resampled factors, or (None, "", 0) when neither factor
  has enough levels.
  """
  w = np.ones((num, len(seeds)))
  used, g = [], []
  for name, labels in (("seeds", seeds), ("data indices", indices)):
    levels, inv = np.unique(np.asarray(labels), return_inverse=True)
    if levels.size < min_clusters:
      continue
    counts = rng.multinomial(levels.size, np.full(levels.size, 1.0 / levels.size), size=num)
    w *= counts[:, inv]
    used.append(f"{levels.size} {name}")
    g.append(levels.size)
  if not used:
    return None, "", 0
  return w, " and ".join(used), min(g)


def _profile(theta_hat, ll_hat, X, a, b, exact, w, eta_min, conf, num: int = 16):
  """Profile-likelihood intervals of every coefficient (t-calibrated, see the module doc).

  On each side of the estimate the profile deviance D(v) = 2 (log L_max - log L_prof(v)) is
  evaluated on a grid of `num` points over 6 standard errors (widened fourfold, up to three
  times, until it crosses the threshold); the crossing is interpolated linearly in sqrt(D),
  which is close to linear in v.
  Shapes: theta_hat [R, k], ll_hat [R], a, b, exact, w [R, N]. Returns lo, hi [R, k] (NaN:
  the deviance does not reach the threshold within the search: an open end).
  """
  R, k = theta_hat.shape[0], X.shape[1]
  n_pts = w.sum(1)
  dof = (n_pts - k).astype(int)
  tq = {d: timescales.t_quantile(conf, d) for d in set(dof.tolist()) if d > 0}
  t = np.array([tq.get(d, np.nan) for d in dof])
  root = np.sqrt(n_pts * np.log1p(t * t / np.maximum(dof, 1)))  # threshold on sqrt(D)
  _, _, h = _loglik_grad_hess(theta_hat, X, np.zeros(w.shape), a, b, exact, w)
  with np.errstate(invalid="ignore"):
    try:
      var = np.diagonal(np.linalg.inv(-h - 1e-9 * np.eye(k + 1)), axis1=1, axis2=2)[:, :k]
    except np.linalg.LinAlgError:
      var = np.zeros((R, k))
  se = np.clip(np.sqrt(np.where(np.isfinite(var) & (var > 0), var, 0.0)), 0.02, 5.0)
  lo = np.full((R, k), np.nan)
  hi = np.full((R, k), np.nan)
  frac_grid = np.linspace(0.0, 1.0, num + 1)  # includes the estimate (D = 0)
  for j in range(k):
    keep = [i for i in range(k) if i != j]
    Xr = X[:, keep]
    for side, out in ((-1.0, lo), (1.0, hi)):
      start = theta_hat[:, j].copy()
      span = 6.0 * se[:, j]
      todo = np.flatnonzero(np.isfinite(root))
      d_start = np.zeros(R)
      for _ in range(4):  # widen the search until the deviance crosses the threshold
        if todo.size == 0:
          break
        vals = start[todo, None] + side * span[todo, None] * frac_grid  # [r, num + 1]
        rep = np.repeat(todo, num)
        offset = vals[:, 1:].reshape(-1)[:, None] * X[:, j][None, :]
        th0 = np.delete(theta_hat[rep], j, axis=1)
        _, ll, _ = _maximize(th0, Xr, offset, a[rep], b[rep], exact[rep], w[rep],
                             eta_min[rep])
        dev = np.sqrt(np.maximum(2.0 * (ll_hat[rep] - ll), 0.0)).reshape(todo.size, num)
        dev = np.concatenate([d_start[todo, None], dev], axis=1)
        above = dev > root[todo, None]
        hit = above.any(1)
        i = np.argmax(above, axis=1)
        r = todo[hit]
        ih = i[hit]
        d0, d1 = dev[hit, ih - 1], dev[hit, ih]
        v0, v1 = vals[hit, ih - 1], vals[hit, ih]
        f = np.where(d1 > d0, (root[r] - d0) / np.where(d1 > d0, d1 - d0, 1.0), 1.0)
        out[r, j] = v0 + f * (v1 - v0)
        start[todo], d_start[todo] = vals[:, -1], dev[:, -1]
        todo = todo[~hit]
        span = span * 4.0
  return lo, hi


def fit_censored_batch(xs: Mapping[str, Any], lo, hi, *, seeds=None, indices=None,
                       conf: float = 0.95, num_bootstrap: int = 1000, rng_seed: int = 0,
                       min_clusters: int = 3) -> list[CensoredFit | None]:
  """`fit_censored` for R data sets sharing one design (lo, hi [R, N]); all fitted at once.

  The bootstrap replicates and profile grids of all R data sets are solved as one batch,
  which is what makes a coverage study over hundreds of synthetic sweeps take seconds.
  """
  names = tuple(xs)
  if not names:
    raise ValueError("need at least one variable")
  cols = [np.asarray(xs[k], np.float64) for k in names]
  lo = np.atleast_2d(np.asarray(lo, np.float64))
  hi = np.atleast_2d(np.asarray(hi, np.float64))
  R, N = lo.shape
  seeds = np.zeros(N, int) if seeds is None else np.asarray(seeds)
  indices = np.zeros(N, int) if indices is None else np.asarray(indices)
  x_ok = np.ones(N, bool)
  for c in cols:
    x_ok &= np.isfinite(c) & (c > 0)
  ok = x_ok & np.isfinite(lo) & ~np.isnan(hi) & (hi > 0) & (lo >= 0) & (hi >= lo)  # [R, N]
  X = np.column_stack([np.ones(N)] + [np.log(np.where(x_ok, c, 1.0)) for c in cols])
  with np.errstate(divide="ignore", invalid="ignore"):
    a = np.where(ok, np.log(np.where(ok, lo, 1.0)), 0.0)
    b = np.where(ok, np.log(np.where(ok, hi, 2.0)), 1.0)
  w1 = ok.astype(np.float64)
  fit_rows = np.array([_identifiable(X, a[r], b[r], w1[r]) for r in range(R)], bool)
  results: list[CensoredFit | None] = [None] * R
  rows = np.flatnonzero(fit_rows)
  if rows.size == 0:
    return results
  a, b, w1 = a[rows], b[rows], w1[rows]
  exact = a == b
  two = np.isfinite(a) & np.isfinite(b) & (w1 > 0) & ~exact
  widths = np.where(two, b - a, np.nan)
  with np.errstate(all="ignore"):
    med = np.nanmedian(np.where(two.any(1)[:, None], widths, 0.0), axis=1)
  eta_min = np.log(np.maximum(np.nan_to_num(med) / math.sqrt(12.0), 1e-3))
  theta, ll, _ = _maximize(_init(X, a, b, w1), X, np.zeros(a.shape), a, b, exact, w1, eta_min)
  k = X.shape[1]

  rng = np.random.default_rng(rng_seed)
  wb, clusters, g = cluster_weights(seeds, indices, num_bootstrap, rng, min_clusters)
  if wb is not None:
    # every data set gets the same cluster draws (its own left-out runs stay at weight 0)
    B = wb.shape[0]
    rep = np.repeat(np.arange(rows.size), B)
    wr = (w1[:, None, :] * wb[None]).reshape(-1, N)
    th, _, conv = _maximize(theta[rep], X, np.zeros(wr.shape), a[rep], b[rep], exact[rep], wr,
                            eta_min[rep])
    th = th.reshape(rows.size, B, -1)[..., :k]
    good = conv.reshape(rows.size, B) & np.all(np.isfinite(th), axis=2)
    # Few clusters: the bootstrap standard error, inflated by sqrt(G / (G - 1)), with
    # Student's t on G - 1 degrees of freedom (a percentile interval over G = 3-5 seeds
    # covers far less than its nominal level).
    tq = timescales.t_quantile(conf, g - 1) * math.sqrt(g / (g - 1))
    sd = np.array([[np.std(th[r, good[r], j], ddof=1) if good[r].sum() > 1 else np.nan
                    for j in range(k)] for r in range(rows.size)])
    lo_b, hi_b = theta[:, :k] - tq * sd, theta[:, :k] + tq * sd
    # Resampling seeds sees only the scatter between seeds: when every seed's onsets fall
    # in the same brackets it reports no uncertainty at all, though the brackets leave the
    # line free within them. Each end is therefore widened to the profile interval's.
    lo_p, hi_p = _profile(theta, ll, X, a, b, exact, w1, eta_min, conf)
    lo_b = np.where(np.isnan(lo_p), np.nan, np.fmin(lo_b, lo_p))
    hi_b = np.where(np.isnan(hi_p), np.nan, np.fmax(hi_b, hi_p))
    method = BOOTSTRAP
    detail = (f"bootstrap over the {clusters} (each drawn with all its runs; {B} replicates): "
              f"estimate ± t(G-1) · sqrt(G/(G-1)) · bootstrap sd with G = {g}, each end "
              "widened to the profile-likelihood interval's where that is wider")
  else:
    lo_b, hi_b = _profile(theta, ll, X, a, b, exact, w1, eta_min, conf)
    method = PROFILE
    detail = ("profile likelihood, t-calibrated (runs treated as independent: fewer than "
              f"{min_clusters} seeds or data indices to resample)")
  for i, r in enumerate(rows):
    fin = lambda v: None if not np.isfinite(v) else float(v)
    bounds = [(fin(lo_b[i, j]), fin(hi_b[i, j])) for j in range(k)]
    exps = tuple(timescales.Estimate(float(theta[i, j]), *bounds[j]) for j in range(1, k))
    l0, h0 = bounds[0]
    pre = timescales.Estimate(math.exp(theta[i, 0]), None if l0 is None else math.exp(l0),
                      None if h0 is None else math.exp(h0))
    used = w1[i] > 0
    right = int(np.sum(used & np.isinf(b[i])))
    left = int(np.sum(used & np.isinf(a[i])))
    n_pts = int(used.sum())
    results[r] = CensoredFit(names, exps, pre, float(math.exp(theta[i, -1])), n_pts,
                             n_pts - right - left, right, left, method, detail, float(ll[i]),
                             conf)
  return results


def fit_censored(xs: Mapping[str, Any], lo, hi, *, seeds=None, indices=None,
                 conf: float = 0.95, num_bootstrap: int = 1000, rng_seed: int = 0,
                 min_clusters: int = 3) -> CensoredFit | None:
  """Fits (1) to onset intervals by maximising (2); intervals as in the module docstring.

  Args:
    xs: {name: values [N]} (positive), e.g. {"n": ns} or {"n": ns, "width": ws}.
    lo, hi: each run's interval [N] (0 / inf for censored ends; NaN: left out).
    seeds, indices: each run's seed and data index [N] (the bootstrap clusters).
    conf: confidence level.
    num_bootstrap: bootstrap replicates.
    rng_seed: seed of the bootstrap draws (the report is reproducible).
    min_clusters: levels a factor needs to be resampled.

  Returns:
    The fit, or None when the data do not determine it (fewer two-sided intervals than
    coefficients, or a single value of a variable among them).
  """
  return fit_censored_batch(xs, np.asarray(lo, np.float64)[None],
                            np.asarray(hi, np.float64)[None], seeds=seeds, indices=indices,
                            conf=conf, num_bootstrap=num_bootstrap, rng_seed=rng_seed,
                            min_clusters=min_clusters)[0]


def fit_onsets(xs: Mapping[str, Any], onsets: Sequence[timescales.Onset],
               **kw) -> CensoredFit | None:
  """`fit_censored` on the intervals of `onsets` (see `onset_bounds`)."""
  lo, hi = onset_bounds(onsets)
  return fit_censored(xs, lo, hi, **kw)


# ------------------------------------------------------------------ the collapse exponent (3)


@dataclasses.dataclass(frozen=True)
class CollapseFit:
  """The alpha that best collapses normalised f_mem curves against t / n^alpha, by (3).

  Attributes:
    alpha: the minimiser of C with its `conf` interval (None ends: at the grid's edge).
    interval_method: "cluster_bootstrap" (seeds / indices), "run_bootstrap" (runs
      resampled within each n) or "none" (one run per n: no interval).
    interval_detail: a sentence on how the interval was made.
    num_runs: curves used (runs whose final f_mem exceeds the floor).
    grid: the alphas searched; cost: C on that grid (for a figure).
    at_edge: the minimum lies on the grid's edge (the collapse is not found inside it).
  """
  alpha: timescales.Estimate
  interval_method: str
  interval_detail: str
  num_runs: int
  grid: np.ndarray
  cost: np.ndarray
  at_edge: bool
  conf: float

  def to_dict(self) -> dict[str, Any]:
    return {"alpha": self.alpha.to_dict(), "interval_method": self.interval_method,
            "interval_detail": self.interval_detail, "num_runs": self.num_runs,
            "at_edge": self.at_edge, "conf": self.conf,
            "grid": [float(g) for g in self.grid[::10]],
            "cost": [None if not np.isfinite(c) else float(c) for c in self.cost[::10]]}


def normalized_curve(times, f_mem) -> tuple[np.ndarray, np.ndarray] | None:
  """(log t, f_mem / f_mem(t_max)) at t > 0 with finite values; None if f_mem(t_max) <= 0."""
  t, v = timescales.sorted_curves(times, f_mem)
  keep = np.isfinite(v) & (t > 0)
  t, v = t[keep], v[keep]
  if t.size < 2 or v[-1] <= 0:
    return None
  return np.log(t), v / v[-1]


def collapse_exponent(ns: Sequence[float], curves: Sequence[tuple[Any, Any]], *, seeds=None,
                      indices=None, grid=None, conf: float = 0.95, num_bootstrap: int = 1000,
                      rng_seed: int = 0, min_clusters: int = 3) -> CollapseFit | None:
  """The collapse exponent of normalised curves; see (3) in the module docstring.

  Args:
    ns: each curve's n.
    curves: each curve as (log t [K], g [K]) (see `normalized_curve`).
    seeds, indices: bootstrap clusters per curve.
    grid: the alphas searched (default -0.5 to 3 in steps of 0.005).
    conf, num_bootstrap, rng_seed, min_clusters: as in `fit_censored`.

  Returns:
    The fit, or None with fewer than two distinct n.
  """
  grid = np.arange(-0.5, 3.0 + 1e-9, 0.005) if grid is None else np.asarray(grid, float)
  ln = np.log(np.asarray(ns, float))
  m = len(curves)
  if m < 2 or np.unique(ln).size < 2:
    return None
  pairs, sums, counts = [], [], []
  for r in range(m):
    ur, gr = curves[r]
    for s in range(m):
      if r == s or ln[r] == ln[s]:
        continue
      us, gs = curves[s]
      # u_r = log t_r - alpha ln_r falls at log t_s = log t_r - alpha (ln_r - ln_s) of s
      pos = ur[None, :] - grid[:, None] * (ln[r] - ln[s])  # [A, K_r]
      inside = (pos >= us[0]) & (pos <= us[-1])
      diff = gr[None, :] - np.interp(pos, us, gs)
      sums.append(np.where(inside, diff ** 2, 0.0).sum(1))
      counts.append(inside.sum(1))
      pairs.append((r, s))
  S = np.array(sums)    # [P, A]
  N = np.array(counts)  # [P, A]
  pr = np.array(pairs)

  def argmin(weights):  # weights [B, m] -> alpha per replicate
    pw = weights[:, pr[:, 0]] * weights[:, pr[:, 1]]  # [B, P]
    num, den = pw @ S, pw @ N
    with np.errstate(invalid="ignore", divide="ignore"):
      cost = np.where(den > 0, num / np.maximum(den, 1e-300), np.inf)
    return grid[np.argmin(cost, axis=1)], cost

  best, cost = argmin(np.ones((1, m)))
  alpha = float(best[0])
  rng = np.random.default_rng(rng_seed)
  seeds = np.zeros(m, int) if seeds is None else np.asarray(seeds)
  indices = np.zeros(m, int) if indices is None else np.asarray(indices)
  w, clusters, g = cluster_weights(seeds, indices, num_bootstrap, rng, min_clusters)
  if w is not None:
    method = BOOTSTRAP
    detail = (f"collapse: bootstrap over the {clusters} ({num_bootstrap} replicates), "
              f"estimate ± t(G-1) · sqrt(G/(G-1)) · bootstrap sd with G = {g}")
  else:
    w = np.zeros((num_bootstrap, m))
    for n in np.unique(ln):  # resample the runs of each n
      idx = np.flatnonzero(ln == n)
      draw = rng.integers(0, idx.size, size=(num_bootstrap, idx.size))
      for k in range(idx.size):
        np.add.at(w, (np.arange(num_bootstrap), idx[draw[:, k]]), 1.0)
    method = "run_bootstrap"
    detail = (f"collapse: percentile interval of {num_bootstrap} replicates resampling the "
              f"runs within each n (fewer than {min_clusters} seeds: the seeds' correlation "
              "across n is ignored)")
  if method != BOOTSTRAP and max(np.sum(ln == n) for n in np.unique(ln)) < 2:
    return CollapseFit(timescales.Estimate(alpha), "none", "collapse: no interval (one run per n "
                       "and fewer than 3 seeds: nothing to resample)", m, grid, cost[0],
                       alpha <= grid[0] or alpha >= grid[-1], conf)
  boot, _ = argmin(w)
  if method == BOOTSTRAP:  # few clusters: see fit_censored_batch
    half = timescales.t_quantile(conf, g - 1) * math.sqrt(g / (g - 1)) * float(np.std(boot, ddof=1))
    q = (alpha - half, alpha + half)
  else:
    q = np.percentile(boot, [(1 - conf) / 2 * 100, (1 + conf) / 2 * 100])
  lo = None if q[0] <= grid[0] else float(min(q[0], alpha))
  hi = None if q[1] >= grid[-1] else float(max(q[1], alpha))
  at_edge = alpha <= grid[0] or alpha >= grid[-1]
  return CollapseFit(timescales.Estimate(alpha, lo, hi), method, detail, m, grid, cost[0],
                     at_edge, conf)
