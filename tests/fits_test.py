"""Tests of jaxdiff.findings.fits: the interval-censored power-law fit, its intervals, the
collapse."""

import math

import numpy as np
import pytest

from jaxdiff.findings import fits
from jaxdiff.findings import timescales

NS = np.array([8.0, 16, 32, 64, 128])


def test_gradient_and_hessian_match_finite_differences():
  rng = np.random.default_rng(0)
  n = 12
  X = np.column_stack([np.ones(n), np.log(np.repeat([8.0, 16, 32, 64], 3))])
  a = np.log(rng.uniform(100, 400, n))
  b = a + rng.uniform(0.2, 0.7, n)
  a[0] = -np.inf   # left-censored
  b[1] = np.inf    # right-censored
  b[2] = a[2]      # an exact value
  exact = (a == b)[None]
  theta = np.array([[2.0, 1.1, math.log(0.3)]])
  args = (X, np.zeros((1, n)), a[None], b[None], exact, np.ones((1, n)))
  _, g, h = fits._loglik_grad_hess(theta, *args)
  eps = 1e-6
  for j in range(3):
    d = np.zeros(3)
    d[j] = eps
    lp, gp, _ = fits._loglik_grad_hess(theta + d, *args)
    lm, gm, _ = fits._loglik_grad_hess(theta - d, *args)
    assert (lp - lm)[0] / (2 * eps) == pytest.approx(g[0, j], rel=1e-6)
    np.testing.assert_allclose((gp - gm)[0] / (2 * eps), h[0, j], rtol=1e-5)


def test_exact_values_reduce_to_least_squares_with_its_t_interval():
  # lo = hi: the likelihood is ordinary regression on logs, and the t-calibrated profile
  # interval is exactly the least-squares t-interval.
  rng = np.random.default_rng(1)
  n = np.repeat(NS, 2)
  tau = 300.0 * n ** 1.1 * np.exp(rng.normal(0, 0.3, n.size))
  fit = fits.fit_censored({"n": n}, tau, tau)
  ls = timescales.fit_power_law(n, tau)
  assert fit.interval_method == fits.PROFILE
  assert fit.alpha.value == pytest.approx(ls.alpha.value, abs=1e-6)
  assert fit.prefactor.value == pytest.approx(ls.prefactor.value, rel=1e-5)
  assert fit.alpha.lo == pytest.approx(ls.alpha.lo, abs=2e-3)
  assert fit.alpha.hi == pytest.approx(ls.alpha.hi, abs=2e-3)
  assert fit.sigma == pytest.approx(ls.residual_std * math.sqrt(8 / 10), rel=1e-4)  # the MLE
  assert (fit.num_runs, fit.num_observed, fit.num_right_censored) == (10, 10, 0)


def test_onset_bounds():
  onsets = [timescales.Onset(timescales.OBSERVED, value=300.0, lo=200.0, hi=400.0),
            timescales.Onset(timescales.OBSERVED, value=300.0, lo=150.0, hi=None,
                             bracket=(250.0, 375.0)),
            timescales.Onset(timescales.RIGHT_CENSORED, bound=1000.0, lo=1000.0),
            timescales.Onset(timescales.LEFT_CENSORED, bound=100.0, hi=100.0),
            timescales.Onset(timescales.UNDEFINED)]
  lo, hi = fits.onset_bounds(onsets)
  np.testing.assert_array_equal(lo[:4], [200.0, 250.0, 1000.0, 0.0])
  np.testing.assert_array_equal(hi[:4], [400.0, 375.0, np.inf, 100.0])
  assert np.isnan(lo[4]) and np.isnan(hi[4])


def test_undetermined_fits_are_none():
  assert fits.fit_censored({"n": [8, 8, 8]}, [1, 2, 3], [2, 3, 4]) is None
  # only censored runs: nothing bounds the line
  assert fits.fit_censored({"n": [8, 16]}, [100, 200], [np.inf, np.inf]) is None
  assert fits.fit_censored({"n": []}, [], []) is None


def test_cluster_weights_resample_whole_seeds():
  seeds = np.repeat([0, 1, 2, 3], 5)
  w, what, g = fits.cluster_weights(seeds, np.zeros(20), 50, np.random.default_rng(0))
  assert w.shape == (50, 20) and g == 4 and what == "4 seeds"
  for s in range(4):  # every run of a seed gets the same weight
    assert np.all(w[:, seeds == s] == w[:, seeds == s][:, :1])
  np.testing.assert_array_equal(w.sum(1), 20)  # 4 draws of 5 runs
  assert fits.cluster_weights([0, 1] * 5, [0] * 10, 5, np.random.default_rng(0))[0] is None


def _synthetic(reps, seeds, rng, *, alpha=1.0, sigma=0.3, seed_sd=0.3, budget_factor=0.8):
  """Onset brackets of `reps` sweeps: tau = 300 n^alpha e^(seed effect + sigma eps).

  Evaluations every factor 1.5 from 100 steps up to a budget of budget_factor x the median
  onset of the largest n, which leaves about 70% of its runs right-censored.
  """
  n = np.tile(NS, seeds)
  s = np.repeat(np.arange(seeds), NS.size)
  budget = budget_factor * 300.0 * NS[-1] ** alpha
  grid = 100.0 * 1.5 ** np.arange(40)
  grid = np.append(grid[grid < budget], budget)
  eff = rng.normal(0, seed_sd, (reps, seeds))[:, s]
  tau = 300.0 * n ** alpha * np.exp(eff + rng.normal(0, sigma, (reps, n.size)))
  i = np.searchsorted(grid, tau)
  seen = i < grid.size
  lo = np.where(seen, grid[np.maximum(i - 1, 0)], budget)
  hi = np.where(seen, grid[np.minimum(i, grid.size - 1)], np.inf)
  return n, s, tau, lo, hi, seen


@pytest.mark.parametrize("seeds, method", [(2, fits.PROFILE), (4, fits.BOOTSTRAP)])
def test_coverage_with_right_censored_largest_n(seeds, method):
  """200 synthetic sweeps with known alpha = 1: the interval covers it in >= 90% of them.

  The least-squares fit over the observed runs only (the old method) is biased low: the
  censored runs of the largest n are exactly its late onsets.
  """
  reps = 200
  rng = np.random.default_rng(seeds)
  n, s, tau, lo, hi, seen = _synthetic(reps, seeds, rng)
  frac = 1 - seen[:, n == NS[-1]].mean()
  assert 0.5 < frac < 0.9  # the largest n partly right-censored
  out = fits.fit_censored_batch({"n": n}, lo, hi, seeds=s, num_bootstrap=100)
  assert all(f is not None and f.interval_method == method for f in out)
  alpha = np.array([f.alpha.value for f in out])
  cover = np.mean([f.alpha.lo <= 1.0 <= f.alpha.hi for f in out])
  assert cover >= 0.90
  assert abs(alpha.mean() - 1.0) < 0.04
  ls = np.array([timescales.fit_power_law(n[seen[r]], tau[r, seen[r]]).alpha.value
                 for r in range(reps)])
  bias = 1.0 - ls.mean()
  assert bias > 0.04 and bias > 4 * ls.std(ddof=1) / math.sqrt(reps)
  assert abs(alpha.mean() - 1.0) < bias / 2


def test_left_censored_runs_enter_the_fit():
  rng = np.random.default_rng(3)
  n, s, tau, lo, hi, _ = _synthetic(1, 3, rng, budget_factor=100.0)
  first = 2000.0  # the first evaluation: the n = 8 runs (tau ~ 2400) partly before it
  left = tau[0] <= first
  lo0, hi0 = lo[0].copy(), hi[0].copy()
  lo0[left], hi0[left] = 0.0, first
  fit = fits.fit_censored({"n": n}, lo0, hi0, seeds=s, num_bootstrap=200)
  assert fit.num_left_censored == int(left.sum()) > 0
  assert fit.interval_method == fits.BOOTSTRAP and "3 seeds" in fit.interval_detail
  assert fit.alpha.lo < 1.0 < fit.alpha.hi


def _sigmoid_curves(ns, seeds, alpha, rng, times):
  """Normalised curves g = F(t / n^alpha) that saturate, with a seed shift and noise."""
  curves, nn, ss = [], [], []
  for seed in range(seeds):
    shift = rng.normal(0, 0.1)
    for n in ns:
      u = np.log(times) - alpha * math.log(n) - math.log(300.0) - shift
      g = 1 / (1 + np.exp(-2.0 * u)) + rng.normal(0, 0.01, times.size)
      g = np.clip(g, 0, None)
      c = fits.normalized_curve(times, g)
      curves.append(c)
      nn.append(n)
      ss.append(seed)
  return nn, curves, ss


def test_collapse_exponent_recovers_alpha():
  times = np.geomspace(100, 3e6, 40)
  rng = np.random.default_rng(0)
  nn, curves, ss = _sigmoid_curves([8, 16, 32, 64, 128], 4, 1.2, rng, times)
  col = fits.collapse_exponent(nn, curves, seeds=ss, num_bootstrap=200)
  assert col.alpha.value == pytest.approx(1.2, abs=0.05)
  assert col.alpha.lo <= 1.2 <= col.alpha.hi and col.alpha.hi - col.alpha.lo < 0.3
  assert col.interval_method == fits.BOOTSTRAP and not col.at_edge
  assert np.argmin(col.cost) == np.argmin(np.abs(col.grid - col.alpha.value))
  # two seeds: the runs within each n are resampled instead, and said so
  two = fits.collapse_exponent(nn[:10], curves[:10], seeds=ss[:10], num_bootstrap=100)
  assert two.interval_method == "run_bootstrap" and "within each n" in two.interval_detail
  one = fits.collapse_exponent(nn[:5], curves[:5], seeds=ss[:5])  # one run per n
  assert one.interval_method == "none" and one.alpha.lo is None and one.alpha.hi is None
  assert fits.collapse_exponent([8, 8], curves[:2]) is None
  assert fits.normalized_curve([100, 200], [0.0, 0.0]) is None
