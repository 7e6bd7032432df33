"""Gaussian-equivalence constants (paper eqs 12-14, 41-48; paper.md 2.2)."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from jaxdiff import theory
from jaxdiff.theory.constants import gep_constants

# paper.md 2.2's table (tanh, sigma_x = 1):
# t -> (Delta_t, a_t, b_t, v_t^2, s_t^2, mu_1, ||sigma||^2).
PAPER_TABLE = {
    0.01: (0.019801, 0.605706, 0.085233, 0.025542, 0.001874, 0.605706, 0.394294),
    0.1: (0.181269, 0.605706, 0.257884, 0.013841, 0.013574, 0.605706, 0.394294),
    0.5: (0.632121, 0.605706, 0.481572, 0.001124, 0.026291, 0.605706, 0.394294),
    1.0: (0.864665, 0.605706, 0.563229, 5.5e-05, 0.027361, 0.605706, 0.394294),
}


@pytest.mark.parametrize("t", sorted(PAPER_TABLE))
def test_constants_match_the_papers_table(t):
  c = theory.gep_constants(t)
  got = (c.delta, c.a, c.b, c.v2, c.s2, c.mu1, c.norm2)
  for name, g, want in zip(("delta", "a", "b", "v2", "s2", "mu1", "norm2"), got, PAPER_TABLE[t]):
    # The table prints 6 decimals (v_t^2 at t = 1: 2 significant digits).
    tol = 5e-7 if want > 1e-3 else 5e-7 + 0.01 * want
    assert abs(g - want) <= tol, (t, name, g, want)
  assert abs(c.mu0) < 1e-12  # tanh is odd
  assert c.gamma == pytest.approx(1.0)


@pytest.mark.parametrize("sigma_x", [0.5, 1.0, 2.0])
def test_stein_identities_hold_without_assuming_sigma_x_one(sigma_x):
  """a_t = mu_1 / Gamma_t and b_t = sqrt(Delta_t) mu_1 / Gamma_t (paper.md 2.2, Caution)."""
  for t in (0.01, 0.1, 1.0):
    c = gep_constants(t, sigma_x)
    assert c.gamma == pytest.approx(math.sqrt(math.exp(-2 * t) * sigma_x**2 + c.delta), rel=1e-14)
    assert abs(c.a - c.mu1 / c.gamma) < 1e-10
    assert abs(c.b - math.sqrt(c.delta) * c.mu1 / c.gamma) < 1e-10
    assert abs(c.mu1**2 - (c.a**2 * c.c**2 + c.b**2)) < 1e-10
    assert c.v2 > 0 and c.s2 > 0


def test_sigma_x_two_against_paper_md_and_against_the_sm_shortcuts():
  c = gep_constants(0.1, 2.0)
  assert abs(c.a - 0.3876) < 1e-4
  assert abs(c.b**2 - 0.02723) < 1e-5
  # The SM's sigma_x = 1 shortcuts would give 0.3603 and 0.0941 here: not what we compute.
  assert abs(c.mu1 / 2.0 - c.a) > 0.02
  assert abs(c.delta * c.mu1**2 - c.b**2) > 0.05


def test_quadrature_against_an_independent_rule():
  """b_t and v_t^2 at sigma_x = 2 by Gauss-Legendre on [-12, 12]^2 (not Gauss-Hermite)."""
  t, sigma_x = 0.1, 2.0
  c = gep_constants(t, sigma_x)
  cx, sd = math.exp(-t) * sigma_x, math.sqrt(-math.expm1(-2 * t))
  nodes, weights = scipy.special.roots_legendre(400)
  u, wu = 12 * nodes, 12 * weights * scipy.stats.norm.pdf(12 * nodes)  # N(0, 1) expectation
  act = np.tanh(cx * u[:, None] + sd * u[None, :])  # [u, v]
  b = wu @ act @ (wu * u)
  second = wu @ (act @ wu)**2
  assert abs(c.b - b) < 1e-10
  assert abs(c.v2 - (second - c.a**2 * cx**2)) < 1e-10
  assert abs(c.a - (wu * u) @ act @ wu / cx) < 1e-10


def test_quadrature_is_converged():
  for sigma_x in (1.0, 2.0):
    a = gep_constants(0.05, sigma_x, num_nodes=240)
    b = gep_constants(0.05, sigma_x, num_nodes=300)
    for name in ("a", "b", "v2", "s2", "mu1", "norm2"):
      assert abs(getattr(a, name) - getattr(b, name)) < 1e-9, name


def test_erf_activation():
  c = gep_constants(0.1, activation="erf")
  # For erf, mu_1 = E[erf(z) z] = 2 / sqrt(3 pi) exactly (Gamma_t = 1).
  assert c.mu1 == pytest.approx(2 / math.sqrt(3 * math.pi), abs=1e-10)
  assert abs(c.mu0) < 1e-12


def test_bad_time_is_rejected():
  with pytest.raises(ValueError):
    gep_constants(0.0)
  np.testing.assert_equal(gep_constants(0.3).t, 0.3)
