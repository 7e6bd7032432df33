"""Closed-form training curves (Prop. C.1 and the loss expansions, paper.md 2.1)."""

import math

import numpy as np
import pytest
import scipy.linalg

from jaxdiff.theory import dynamics
from jaxdiff.theory import empirical
from jaxdiff.theory.constants import gep_constants


def ge_matrices(seed, d, p, n, t, diag=None):
  rng = np.random.default_rng(seed)
  diag = np.ones(d) if diag is None else np.asarray(diag)
  c = gep_constants(t, math.sqrt(diag.mean()))
  w, x = empirical.draw_ge_inputs(rng, d, p, n, diag)
  f = empirical.ge_factor(np.random.default_rng(seed + 100), w, x, c)
  u = empirical.ge_u(np.random.default_rng(seed + 100), w, x, c)
  np.testing.assert_allclose(u, f @ f.T + c.s2 * np.eye(p))
  return dict(c=c, w=w, f=f, u=u, v=empirical.ge_v(w, c), ut=empirical.ge_u_tilde(w, c, diag),
              cc=empirical.ge_c(w, c), e=float(np.sum(1 / empirical.noisy_diagonal(diag, t))),
              diag=diag)


def brute_force(m, b, d):
  """The loss expansions evaluated directly for B = A / sqrt(p)."""
  delta = m["c"].delta
  lin = 2 * math.sqrt(delta) / d * np.trace(b @ m["v"])
  train = 1 + delta / d * np.trace(b @ m["u"] @ b.T) + lin
  test = 1 + delta / d * np.trace(b @ m["ut"] @ b.T) + lin
  score = (np.trace(b @ m["ut"] @ b.T) + 2 * np.trace(b @ m["cc"]) + m["e"]) / d
  return train, test, score


@pytest.mark.parametrize("p,n", [(48, 16), (24, 40)])  # n + d <= p and n + d > p
def test_gradient_flow_curves_match_the_matrix_exponential(p, n):
  d, t = 8, 0.1
  m = ge_matrices(0, d, p, n, t, diag=[0.5] * 4 + [1.5] * 4)
  psi_p = p / d
  taus = np.array([0.0, 2.0, 40.0, 900.0])
  thin = dynamics.problem_from_ge(m["f"], m["w"], m["c"], m["diag"]).curves(taus)
  dense = dynamics.problem_from_dense(m["u"], m["v"], m["ut"], m["v"], m["cc"], m["e"],
                                      m["c"].delta, psi_p).curves(taus)
  for i, tau in enumerate(taus):
    # Prop. C.1 with A0 = 0, by scipy's expm and an explicit inverse.
    delta = m["c"].delta
    b = -(m["v"].T @ np.linalg.inv(m["u"])) @ (
        np.eye(p) - scipy.linalg.expm(-2 * delta * m["u"] * tau / psi_p)) / math.sqrt(delta)
    np.testing.assert_allclose(
        b, dynamics.weights_at(*np.linalg.eigh(m["u"]), m["v"], tau, m["c"].delta, psi_p),
        atol=1e-10)
    for k, want in zip(("train", "test", "score"), brute_force(m, b, d)):
      assert thin[k][i] == pytest.approx(want, abs=1e-9), (k, tau)
      assert dense[k][i] == pytest.approx(want, abs=1e-9), (k, tau)
  # tau -> infinity: L_train = 1 - Tr(V^T U^{-1} V) / d.
  inf = dynamics.problem_from_ge(m["f"], m["w"], m["c"], m["diag"]).curves([np.inf])
  want = 1 - np.trace(m["v"].T @ np.linalg.solve(m["u"], m["v"])) / d
  assert inf["train"][0] == pytest.approx(want, abs=1e-10)


def test_gradient_descent_curves_are_the_mean_iterates():
  """With dtau given, the curves follow B_{k+1} = B_k - dtau d^2 grad L (expected gradient)."""
  d, p, n, t = 6, 30, 12, 0.1
  m = ge_matrices(1, d, p, n, t)
  delta, psi_p = m["c"].delta, p / d
  dtau = 0.8
  prob = dynamics.problem_from_ge(m["f"], m["w"], m["c"], m["diag"])
  steps = np.array([0, 1, 2, 7, 50, 300])
  curves = prob.curves(steps * dtau, dtau)
  b = np.zeros((d, p))
  for k in range(steps[-1] + 1):
    if k in steps:
      i = int(np.flatnonzero(steps == k)[0])
      for name, want in zip(("train", "test", "score"), brute_force(m, b, d)):
        assert curves[name][i] == pytest.approx(want, abs=1e-9), (name, k)
    # d^2 grad_A L_train / sqrt(p) in terms of B (paper eq. 56).
    grad = 2 * delta / psi_p * b @ m["u"] + 2 * math.sqrt(delta) / psi_p * m["v"].T
    b = b - dtau * grad
  # With a small step the descent curves approach gradient flow.
  small = prob.curves(steps * 0.01, 0.01)
  flow = prob.curves(steps * 0.01)
  np.testing.assert_allclose(small["train"], flow["train"], atol=1e-4)


def test_tweedie_identity_links_test_loss_and_score_error():
  """L_test = 1 - Delta Tr(Sigma_t^{-1})/d + Delta E_score, since V_tilde = sqrt(Delta) C_tilde."""
  d, t = 8, 0.3
  for diag in (np.ones(d), np.array([0.5] * 4 + [1.5] * 4)):
    m = ge_matrices(2, d, 40, 24, t, diag)
    cur = dynamics.problem_from_ge(m["f"], m["w"], m["c"], diag).curves(np.geomspace(1, 1e4, 9))
    np.testing.assert_allclose(cur["test"], 1 - m["c"].delta * m["e"] / d
                               + m["c"].delta * cur["score"], atol=1e-12)
    assert np.all(cur["gen"] == cur["test"] - cur["train"])
