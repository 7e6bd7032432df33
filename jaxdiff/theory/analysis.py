"""Numbers read off the random-features curves: memorization onsets, their collapse, fits.

The paper gives no threshold for "L_gen starts rising" (Sect. 3, Fig. 5); ours is
explicit: L_gen first exceeds, after the minimum of the test loss (the end of the
generalization phase), its value at that minimum by `rise`, interpolated in log time.
"""

from __future__ import annotations

import math

import numpy as np


def onset_time(taus, test, gen, rise: float) -> float:
  """First tau after argmin(test) where gen >= gen[argmin] + rise (log-interpolated).

  Args:
    taus: increasing times [T] (tau = 0 allowed as the first entry).
    test: test loss [T].
    gen: generalization loss L_test - L_train [T].
    rise: the increase of L_gen that marks the onset.

  Returns:
    The onset time, or NaN when gen never rises that much (right-censored).
  """
  taus, test, gen = (np.asarray(a, np.float64) for a in (taus, test, gen))
  i0 = int(np.nanargmin(test))
  level = gen[i0] + rise
  above = np.flatnonzero(gen[i0:] >= level)
  if above.size == 0:
    return math.nan
  j = i0 + int(above[0])
  if j == i0 or taus[j - 1] <= 0:
    return float(taus[j])
  frac = (level - gen[j - 1]) / (gen[j] - gen[j - 1])
  return float(math.exp(math.log(taus[j - 1]) + frac * (math.log(taus[j]) - math.log(taus[j - 1]))))


def spread(values) -> float:
  """max / min of positive values (NaN if any is missing): 1 means a perfect collapse."""
  v = np.asarray(values, np.float64)
  if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
    return math.nan
  return float(v.max() / v.min())


def power_law_fit(x, y, y_err=None) -> dict:
  """Least-squares fit of log y = log c + slope log x.

  Args:
    x, y: positive values [K].
    y_err: optional standard deviations of y [K] (weights 1 / relative error^2).

  Returns:
    {"slope", "slope_stderr", "prefactor"}.
  """
  lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
  if y_err is None:
    wts = np.ones_like(lx)
  else:
    rel = np.maximum(np.asarray(y_err, np.float64) / np.asarray(y, np.float64), 1e-12)
    wts = 1.0 / rel**2
  a = np.stack([np.ones_like(lx), lx], axis=1)
  sw = np.sqrt(wts)
  coef, *_ = np.linalg.lstsq(a * sw[:, None], ly * sw, rcond=None)
  resid = ly - a @ coef
  dof = max(len(lx) - 2, 1)
  sigma2 = float(np.sum(wts * resid**2) / dof)
  cov = sigma2 * np.linalg.inv((a * wts[:, None]).T @ a)
  return {"slope": float(coef[1]), "slope_stderr": float(math.sqrt(max(cov[1, 1], 0.0))),
          "prefactor": float(math.exp(coef[0]))}


def support_intervals(grid, rho, rel_threshold: float = 1e-4) -> list[tuple[float, float]]:
  """Intervals [lo, hi] of the grid where rho > rel_threshold * max(rho)."""
  grid, rho = np.asarray(grid), np.nan_to_num(np.asarray(rho))
  on = rho > rel_threshold * rho.max()
  out = []
  i = 0
  while i < len(on):
    if on[i]:
      j = i
      while j + 1 < len(on) and on[j + 1]:
        j += 1
      out.append((float(grid[i]), float(grid[j])))
      i = j + 1
    else:
      i += 1
  return out
