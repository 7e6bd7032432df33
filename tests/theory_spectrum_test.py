"""Spectrum of U: Theorem 3.1's solver, Theorem 3.2's closed forms, tau_mem (paper.md 2.4-2.5)."""

import math

import numpy as np
import pytest

from jaxdiff import theory
from jaxdiff.theory import empirical
from jaxdiff.theory import spectrum
from jaxdiff.theory.constants import gep_constants

FIG4 = dict(psi_p=64.0, psi_n=8.0, t=0.01)


def regions(psi_p, psi_n, t, cov_eigs=(1.0,), cov_weights=(1.0,), num=3000, split=2.0, top=70.0):
  """Grids of the rho_1 region (log-spaced above s_t^2) and of the rho_2 region."""
  s2 = gep_constants(t, spectrum.covariance_spectrum(cov_eigs, cov_weights)[2]).s2
  g1 = s2 + np.geomspace(1e-9, split - s2, num)
  g2 = np.linspace(split, top, num)
  r1 = theory.spectral_density(g1, psi_p, psi_n, t, cov_eigs, cov_weights)
  r2 = theory.spectral_density(g2, psi_p, psi_n, t, cov_eigs, cov_weights)
  return g1, r1, g2, r2


@pytest.fixture(scope="module")
def fig4():
  return regions(**FIG4)


def test_density_integrates_to_one_with_the_delta_mass(fig4):
  g1, r1, g2, r2 = fig4
  assert not np.any(np.isnan(r1)) and not np.any(np.isnan(r2))
  m1, m2 = np.trapezoid(r1, g1), np.trapezoid(r2, g2)
  delta = theory.delta_mass(64, 8)
  assert delta == pytest.approx(1 - 9 / 64)
  assert abs(m1 + m2 + delta - 1) < 2e-4
  # Bulk masses: psi_n / psi_p (rho_1 with its finite-psi_n sub-bulk) and 1 / psi_p (rho_2).
  assert m1 == pytest.approx(8 / 64, abs=2e-4)
  assert m2 == pytest.approx(1 / 64, abs=1e-5)


def test_bulk_supports_match_theorem_3_2_and_figure_4(fig4):
  g1, r1, g2, r2 = fig4
  lo, hi = theory.rho1_support(64, 8, 0.01)
  assert (lo, hi) == pytest.approx((0.087, 0.376), abs=1e-3)  # paper.md 2.5's table
  ivs1 = spectrum.support_intervals(g1, r1)
  main = max(ivs1, key=lambda iv: iv[1] - iv[0])  # the rho_1 bulk (a small sub-bulk sits below)
  assert main[0] == pytest.approx(lo, rel=0.06) and main[1] == pytest.approx(hi, rel=0.06)
  (lo2, hi2), = spectrum.support_intervals(g2, r2)
  assert lo2 == pytest.approx(10.0, rel=0.03) and hi2 == pytest.approx(45.0, rel=0.03)


def test_theorem_3_2_is_the_large_psi_n_limit_of_theorem_3_1():
  # Regime II (psi_n > psi_p >> 1): rho_2 -> the bulk of U_tilde, [18.0, 29.7] at psi_p = 64.
  lo, hi = theory.rho2_support(64, 0.01)
  assert (lo, hi) == pytest.approx((18.00, 29.74), abs=0.01)
  g = np.linspace(5, 50, 3000)
  rho = theory.spectral_density(g, 64, 4096, 0.01)
  (a, b), = spectrum.support_intervals(g, rho)
  assert a == pytest.approx(lo, rel=0.05) and b == pytest.approx(hi, rel=0.05)
  # The bulk's shape converges too: CDF distance 0.018 at psi_n = 512, 0.0024 at 4096.
  cdf2 = empirical.density_cdf(g, theory.rho2_density(g, 64, 0.01))
  dist = [np.abs(empirical.density_cdf(g, theory.spectral_density(g, 64, pn, 0.01)) - cdf2).max()
          for pn in (512, 4096)]
  assert dist[1] < 0.005 and dist[1] < dist[0] / 4
  # The closed-form bulks are normalised densities.
  g1 = np.linspace(0.0, 1.0, 20001)
  assert np.trapezoid(theory.rho1_density(g1, 64, 8, 0.01), g1) == pytest.approx(1, abs=1e-3)
  assert np.trapezoid(theory.rho2_density(g, 64, 0.01), g) == pytest.approx(1, abs=1e-3)


def test_histogram_of_the_gaussian_equivalent_u_at_d_100(fig4):
  g1, r1, g2, r2 = fig4
  c = gep_constants(0.01)
  ev = empirical.ge_u_eigenvalues(np.random.default_rng(0), 100, 64, 8, c)
  delta = np.abs(ev - c.s2) < 1e-9
  assert delta.sum() == 6400 - 800 - 100  # exactly p - n - d at s_t^2
  b1, b2 = ev[~delta & (ev < 2)], ev[ev >= 2]
  assert (b1.size, b2.size) == (800, 100)
  # Kolmogorov-Smirnov distance per bulk (measured: 0.004 and 0.02).
  assert empirical.ks_distance(b1, g1, r1) < 0.03
  assert empirical.ks_distance(b2, g2, r2) < 0.08
  # The Stieltjes transform itself at a complex z, against the finite-d resolvent trace.
  for lam in (0.005, 0.2, 1.0, 25.0):
    z = lam + 0.5j
    q = spectrum.solve_saddle_point([lam], 64, 8, 0.01,
                                    eps_schedule=np.geomspace(1e3, 0.5, 24)).q[0]
    assert abs(q - np.mean(1 / (ev - z))) < 0.01 * abs(q)


def test_structured_covariance_fig4_right():
  ce, cw = (0.5, 1.5), (0.5, 0.5)
  g1, r1, g2, r2 = regions(64, 8, 0.01, ce, cw, num=1500, top=80.0)
  total = np.trapezoid(r1, g1) + np.trapezoid(r2, g2) + theory.delta_mass(64, 8)
  assert abs(total - 1) < 3e-4
  diag = empirical.covariance_diagonal(100, ce, cw)
  np.testing.assert_array_equal(np.sort(diag), [0.5] * 50 + [1.5] * 50)
  c = gep_constants(0.01, math.sqrt(diag.mean()))
  ev = empirical.ge_u_eigenvalues(np.random.default_rng(1), 100, 64, 8, c, diag)
  ev = ev[np.abs(ev - c.s2) > 1e-9]
  assert empirical.ks_distance(ev[ev < 2], g1, r1) < 0.03
  assert empirical.ks_distance(ev[ev >= 2], g2, r2) < 0.08


@pytest.mark.slow
def test_solver_is_robust_to_its_continuation_schedule():
  g = np.concatenate([np.linspace(-0.5, 1, 401), np.geomspace(1, 80, 400)])
  for psi_p, psi_n, t in [(64, 32, 0.01), (8, 32, 0.1), (32, 1, 0.01)]:
    fast = spectrum.solve_saddle_point(g, psi_p, psi_n, t)
    slow = spectrum.solve_saddle_point(g, psi_p, psi_n, t,
                                       eps_schedule=spectrum.default_eps_schedule(num=96),
                                       num_iters=5)
    assert fast.residual.max() < 1e-9
    np.testing.assert_allclose(fast.q, slow.q, rtol=1e-7, atol=1e-9)
    assert np.all(fast.q.imag >= 0)


@pytest.mark.parametrize("psi_n,want", [(4, 2556), (8, 5899), (16, 12878), (32, 22138)])
def test_tau_mem_of_figure_5(psi_n, want):
  assert theory.tau_mem(64, psi_n, 0.1) == pytest.approx(want, rel=0.01)
  c = gep_constants(0.1)
  lam = c.s2 + c.v2 * (1 - math.sqrt(64 / psi_n))**2
  assert theory.tau_mem(64, psi_n, 0.1) == pytest.approx(64 / (c.delta * lam), rel=1e-12)


def test_tau_mem_at_t_0_01_and_psi_p_32():
  for psi_p, psi_n, want in [(64, 4, 1.39e4), (64, 8, 3.70e4), (64, 32, 5.17e5),
                             (32, 1, 2908), (32, 8, 58947), (32, 16, 258328)]:
    assert theory.tau_mem(psi_p, psi_n, 0.01) == pytest.approx(want, rel=0.01)
