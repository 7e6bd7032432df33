"""Spectrum of U (Theorem 3.1) on 400 lambda values: jaxdiff's solver vs a per-lambda SciPy one.

Claim (issue 7, item 6): solving the saddle-point equations for every lambda of a grid at
once (vectorised complex Newton with continuation in eps, float64, one jitted program)
is at least 100x faster than a straightforward solver that handles one lambda at a time.

The reference, written here for the comparison, follows the authors' recipe
(paper.md 2.4 [C]): 6 real unknowns (Re/Im of q, r, s), `scipy.optimize.root(method="lm")`,
z = lambda - i eps, start q = r = s = 1/(lambda + 100 i) at eps = 100, continuation
eps = 100, 99, ..., 1, 0.9, 0.7, 0.5, 0.3, 0.1, 1e-2, ..., 1e-9, density |Im q| / pi.
The lambda grid is the authors' linspace(-0.1, 0.5, 100) U linspace(0.5, 60, 300), at
Fig. 4's parameters (psi_p = 64, psi_n = 8, t = 0.01, Sigma = I).

Both are timed in the same run; jaxdiff's time is the median of warm calls (its first
call, which includes compilation, is printed too). The two densities are compared point
by point.

  python benchmarks/rf_spectrum.py            # ~1-2 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import scipy.optimize

from jaxdiff.theory import spectrum
from jaxdiff.theory.constants import gep_constants


def authors_eps_schedule() -> np.ndarray:
  return np.concatenate([np.arange(100.0, 0.5, -1.0), [0.9, 0.7, 0.5, 0.3, 0.1],
                         10.0**-np.arange(2, 10)])


def reference_density(lambdas, psi_p, psi_n, t, cov_eigs=(1.0,), cov_weights=(1.0,),
                      activation="tanh") -> np.ndarray:
  """|Im q| / pi at each lambda, solved one lambda at a time with SciPy's Levenberg-Marquardt."""
  eigs = np.asarray(cov_eigs, np.float64)
  weights = np.asarray(cov_weights, np.float64)
  weights = weights / weights.sum()
  c = gep_constants(t, math.sqrt(weights @ eigs), activation)
  alpha = c.a**2 * math.exp(-2 * t)
  schedule = authors_eps_schedule()

  def equations(x, z):
    q, r, s = complex(x[0], x[1]), complex(x[2], x[3]), complex(x[4], x[5])
    d = 1 + alpha * psi_p / psi_n * r + psi_p * c.v2 / psi_n * q
    r_hat = psi_p * alpha / d
    s_hat = c.b**2 * psi_p + 1 / q
    den = s_hat + eigs * r_hat
    e1 = s - np.sum(weights / den)
    e2 = r - np.sum(weights * eigs / den)
    e3 = psi_p * (c.s2 - z) + psi_p * c.v2 / d + (1 - psi_p) / q - s / q**2
    return [e1.real, e1.imag, e2.real, e2.imag, e3.real, e3.imag]

  out = np.zeros(len(lambdas))
  for i, lam in enumerate(lambdas):
    g = 1 / (lam + 100j)
    x = np.array([g.real, g.imag] * 3)
    for eps in schedule:
      x = scipy.optimize.root(equations, x, args=(lam - 1j * eps,), method="lm").x
    out[i] = abs(x[1]) / math.pi
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5, help="warm jaxdiff calls timed")
  args = parser.parse_args()
  lambdas = np.concatenate([np.linspace(-0.1, 0.5, 100), np.linspace(0.5, 60, 300)])
  psi_p, psi_n, t = 64.0, 8.0, 0.01

  start = time.perf_counter()
  sp = spectrum.solve_saddle_point(lambdas, psi_p, psi_n, t)
  first = time.perf_counter() - start
  warm = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    sp = spectrum.solve_saddle_point(lambdas, psi_p, psi_n, t)
    warm.append(time.perf_counter() - start)
  ours = np.maximum(sp.q.imag, 0.0) / math.pi
  t_ours = statistics.median(warm)

  start = time.perf_counter()
  ref = reference_density(lambdas, psi_p, psi_n, t)
  t_ref = time.perf_counter() - start

  diff = np.abs(ours - ref)
  print(f"Theorem 3.1 density of U at psi_p={psi_p:g}, psi_n={psi_n:g}, t={t:g}, Sigma=I, "
        f"{lambdas.size} lambda values")
  print(f"  per-lambda SciPy LM, authors' schedule ({authors_eps_schedule().size} eps steps): "
        f"{t_ref:.2f} s")
  print(f"  jaxdiff vectorised Newton ({spectrum.default_eps_schedule().size} eps steps): "
        f"{t_ours * 1e3:.1f} ms warm (median of {args.repeats}), {first:.2f} s first call "
        "with compilation")
  print(f"  max |rho_jaxdiff - rho_scipy| = {diff.max():.2e} (max rho {ref.max():.3f}); "
        f"max solver residual {sp.residual.max():.1e}")
  print(f"  speed-up: {t_ref / t_ours:.0f}x warm, {t_ref / first:.1f}x including compilation")


if __name__ == "__main__":
  main()
