"""Exact training curves of the random-features model from the closed-form solution.

Gradient flow on A with tau = k eta / d^2 (paper eq. 10) from A(0) = 0 gives (Prop. C.1)

  B(tau) = A(tau) / sqrt(p) = -(1 / sqrt(Delta_t)) V^T U^{-1} (I - E(tau)),
  E(tau) = exp(-2 Delta_t U tau / psi_p),

and the losses are quadratic in B (eqs 55, 164, 165, 218):

  L_train = 1 + (Delta_t / d) Tr(B U B^T) + (2 sqrt(Delta_t) / d) Tr(B V)
  L_test  = 1 + (Delta_t / d) Tr(B U_tilde B^T) + (2 sqrt(Delta_t) / d) Tr(B V_tilde)
  E_score = (1 / d) [Tr(B U_tilde B^T) + 2 Tr(B C_tilde) + e]      (score = -Sigma_t^{-1} y)
  L_gen   = L_test - L_train.

In an eigenbasis U = P diag(lambda) P^T (on a subspace containing the columns of V), with
Y = P^T V and g_k(tau) = (1 - exp(-2 Delta_t lambda_k tau / psi_p)) / lambda_k,
B = -(1/sqrt(Delta_t)) Y^T diag(g) P^T and

  L_train = 1 - (1/d) sum_k |Y_k|^2 (1 - E_k^2) / lambda_k
  L_test  = 1 + (1/d) [g^T (Y Y^T o H) g - 2 sum_k g_k (Y Y_tilde^T)_kk],  H = P^T U_tilde P,

so every curve costs O(m^2) per time once the m x m matrix (Y Y^T o H) is formed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxdiff.theory.constants import GEPConstants
from jaxdiff.theory.empirical import noisy_diagonal


@dataclasses.dataclass(frozen=True)
class ExactProblem:
  """Everything the closed-form curves need, in the eigenbasis of U (float64 numpy).

  Attributes:
    lam: eigenvalues of U on the subspace [m].
    yy: |Y_k|^2, Y = P^T V [m].
    m_test: (Y Y^T) o (P^T U_tilde P) [m, m].
    yv: diag(Y (P^T V_tilde)^T) [m].
    yc: diag(Y (P^T C_tilde)^T) [m].
    e: E ||Sigma_t^{-1} y||^2 = Tr Sigma_t^{-1} (or its Monte Carlo estimate).
    delta: Delta_t.
    psi_p: p / d.
    d: dimension.
  """

  lam: np.ndarray
  yy: np.ndarray
  m_test: np.ndarray
  yv: np.ndarray
  yc: np.ndarray
  e: float
  delta: float
  psi_p: float
  d: int

  def g(self, taus, dtau: float | None = None) -> np.ndarray:
    """g_k(tau) = (1 - E_k(tau)) / lambda_k [T, m].

    Gradient flow (dtau None): E_k = exp(-h_k tau / dtau) with h_k dtau-free, i.e.
    exp(-2 Delta lambda_k tau / psi_p) (tau = inf allowed). Gradient descent with time step
    dtau = eta / d^2: E_k = (1 - 2 Delta lambda_k dtau / psi_p)^k with k = round(tau / dtau),
    the exact mean of the simulated iterates (the gradient is linear in A and its noise is
    fresh at each step).
    """
    taus = np.asarray(taus, np.float64).reshape(-1, 1)
    rate = 2 * self.delta * self.lam[None, :] / self.psi_p
    if dtau is None:
      return -np.expm1(-rate * taus) / self.lam[None, :]
    k = np.round(taus / dtau)
    return (1.0 - np.power(1.0 - rate * dtau, k)) / self.lam[None, :]

  def curves(self, taus, dtau: float | None = None) -> dict[str, np.ndarray]:
    """L_train, L_test, L_gen and E_score at the given times [T] each.

    Args:
      taus: times in units k eta / d^2.
      dtau: None for gradient flow, else the gradient-descent time step eta / d^2.
    """
    g = self.g(taus, dtau)  # [T, m]
    d, sd = self.d, math.sqrt(self.delta)
    train = 1.0 + (g * g * self.lam - 2.0 * g) @ self.yy / d
    quad = np.sum((g @ self.m_test) * g, axis=1)  # Delta Tr(B U_tilde B^T)
    test = 1.0 + (quad - 2.0 * g @ self.yv) / d
    score = (quad / self.delta - 2.0 / sd * (g @ self.yc) + self.e) / d
    return {"train": train, "test": test, "gen": test - train, "score": score}


def problem_from_eigh(lam, vecs, v, u_tilde, v_tilde, c_tilde, e: float, delta: float,
                      psi_p: float) -> ExactProblem:
  """An ExactProblem from U's eigenpairs and dense U_tilde, V_tilde, C_tilde.

  Args:
    lam, vecs: eigenvalues [m] and orthonormal eigenvectors [p, m] of U; their span must
      contain the columns of v (all of R^p for a full eigendecomposition).
    v, u_tilde, v_tilde, c_tilde: V [p, d], U_tilde [p, p], V_tilde [p, d], C_tilde [p, d].
    e: Tr Sigma_t^{-1} (E ||Sigma_t^{-1} y||^2).
    delta: Delta_t.
    psi_p: p / d.
  """
  vecs = np.asarray(vecs, np.float64)
  y = vecs.T @ np.asarray(v, np.float64)  # [m, d]
  h = vecs.T @ np.asarray(u_tilde, np.float64) @ vecs
  return ExactProblem(
      lam=np.asarray(lam, np.float64), yy=np.sum(y * y, axis=1), m_test=(y @ y.T) * h,
      yv=np.sum(y * (vecs.T @ np.asarray(v_tilde, np.float64)), axis=1),
      yc=np.sum(y * (vecs.T @ np.asarray(c_tilde, np.float64)), axis=1),
      e=float(e), delta=float(delta), psi_p=float(psi_p), d=int(np.shape(v)[1]))


def problem_from_dense(u, v, u_tilde, v_tilde, c_tilde, e: float, delta: float,
                       psi_p: float) -> ExactProblem:
  """An ExactProblem from dense U (full eigendecomposition, O(p^3))."""
  lam, vecs = np.linalg.eigh(np.asarray(u, np.float64))
  return problem_from_eigh(lam, vecs, v, u_tilde, v_tilde, c_tilde, e, delta, psi_p)


def problem_from_ge(factor, w, consts: GEPConstants, diag_cov) -> ExactProblem:
  """An ExactProblem for the Gaussian-equivalent matrices (empirical.ge_*), in O(p m^2).

  U = s_t^2 I + F F^T: from the eigenpairs (mu, Q) of the Gram matrix F^T F (the smaller
  side when n + d <= p), U = P diag(s^2 + mu) P^T on span(F) with P = F Q mu^{-1/2}, and
  s_t^2 elsewhere; V = b W / sqrt(d) lies in span(F) (W's columns are F's last d, up to
  b/sqrt(d)), so the complement does not enter. When n + d > p, U is diagonalised
  directly. U_tilde, V_tilde, C_tilde are the Gaussian equivalents with the same W.

  Args:
    factor: F [p, n + d] from empirical.ge_factor.
    w: [p, d] first layer.
    consts: GEP constants.
    diag_cov: diagonal of Sigma [d].
  """
  f = np.asarray(factor, np.float64)
  w = np.asarray(w, np.float64)
  p, d = w.shape
  if f.shape[1] <= p:
    mu, q = np.linalg.eigh(f.T @ f)
    keep = mu > 1e-12 * max(mu.max(), 1e-300)
    vecs = f @ (q[:, keep] / np.sqrt(mu[keep]))
    lam = consts.s2 + mu[keep]
  else:
    mu, vecs = np.linalg.eigh(f @ f.T)
    lam = consts.s2 + np.maximum(mu, 0.0)
  z = vecs.T @ w  # [m, d]
  diag_t = noisy_diagonal(diag_cov, consts.t)
  y = consts.b * z / math.sqrt(d)
  h = consts.a**2 * (z * diag_t) @ z.T / d + (consts.s2 + consts.v2) * np.eye(z.shape[0])
  return ExactProblem(
      lam=lam, yy=np.sum(y * y, axis=1), m_test=(y @ y.T) * h,
      yv=np.sum(y * y, axis=1), yc=np.sum(y * (consts.a * z / math.sqrt(d)), axis=1),
      e=float(np.sum(1.0 / diag_t)), delta=consts.delta, psi_p=p / d, d=d)


def weights_at(lam, vecs, v, tau: float, delta: float, psi_p: float) -> np.ndarray:
  """A(tau) / sqrt(p) = -(1/sqrt(Delta)) V^T U^{-1} (I - E(tau)) [d, p] (Prop. C.1, A0 = 0)."""
  lam = np.asarray(lam, np.float64)
  vecs = np.asarray(vecs, np.float64)
  g = -np.expm1(-2 * delta * lam * tau / psi_p) / lam
  return -(np.asarray(v, np.float64).T @ vecs) * g @ vecs.T / math.sqrt(delta)
