"""Finite-d matrices of the random-features model: from their definitions and their
Gaussian equivalents (paper eqs 11, 55, Lemmas C.1-C.4).

Definitions (one diffusion time t; x_t = e^{-t} x + sqrt(Delta_t) xi; phi = sigma(W x_t / sqrt d)):

  U       = (1/n) sum_nu E_xi[phi phi^T]           [p, p]   (training points fixed)
  V       = (1/n) sum_nu E_xi[phi xi^T]            [p, d]
  U_tilde = E_{x, xi}[phi phi^T],  V_tilde = E_{x, xi}[phi xi^T]   (fresh data)
  C_tilde = E_y[phi(y) (Sigma_t^{-1} y)^T], e = E ||Sigma_t^{-1} y||^2 = Tr Sigma_t^{-1}
            (y ~ P_t = N(0, Sigma_t): the score-error terms of SM eq. 218)

`mc_*` estimate them by Monte Carlo (chunked, jitted); `ge_*` build the Gaussian
equivalents

  U ~ G G^T / n + b_t^2 W W^T / d + s_t^2 I,   G = e^{-t} a_t W X^T / sqrt(d) + v_t Omega,
  U_tilde ~ a_t^2 W Sigma_t W^T / d + (s_t^2 + v_t^2) I,   V ~ V_tilde ~ b_t W / sqrt(d),
  C_tilde ~ a_t W / sqrt(d),

with W having N(0, 1) entries, Omega in R^{p x n} (Lemma C.1's "p x d" is a typo) and the
b_t^2 term divided by d once (the authors' histogram divides it twice, paper.md 4.4).
Since everything but s_t^2 I lives in the span of the n + d columns of
F = [G / sqrt(n), b_t W / sqrt(d)], U = s_t^2 I + F F^T is handled through F: its
eigenvalues cost O(p (n + d)^2) instead of O(p^3).

The data covariance is diagonal with a discrete spectrum: eigenvalue lambda_k on a fraction
w_k of the coordinates (`covariance_diagonal`).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models import random_features
from jaxdiff.theory.constants import GEPConstants
from jaxdiff.theory.spectrum import covariance_spectrum


def covariance_diagonal(d: int, cov_eigs: Sequence[float] = (1.0,),
                        cov_weights: Sequence[float] = (1.0,)) -> np.ndarray:
  """Diagonal of Sigma [d]: eigenvalue k on round(w_k d) coordinates (largest remainder)."""
  eigs, weights, _ = covariance_spectrum(cov_eigs, cov_weights)
  raw = weights * d
  counts = np.floor(raw).astype(int)
  for i in np.argsort(-(raw - counts))[: d - counts.sum()]:
    counts[i] += 1
  return np.repeat(eigs, counts).astype(np.float64)


def noisy_diagonal(diag_cov: np.ndarray, t: float) -> np.ndarray:
  """Diagonal of Sigma_t = e^{-2t} Sigma + Delta_t I."""
  return math.exp(-2 * t) * np.asarray(diag_cov) + (-math.expm1(-2 * t))


def sample_data(key: jax.Array, n: int, diag_cov) -> jax.Array:
  """n points of N(0, diag(diag_cov)) [n, d] (float32)."""
  diag_cov = jnp.asarray(diag_cov, jnp.float32)
  return jax.random.normal(key, (n, diag_cov.shape[0])) * jnp.sqrt(diag_cov)


# ----------------------------------------------------------------------------- Monte Carlo


@functools.partial(jax.jit, static_argnames=("num_draws", "activation"))
def _train_block_sums(key, w, x, t, num_draws, activation):
  """sum over points of x and num_draws noise draws of phi phi^T and phi xi^T."""
  delta = -jnp.expm1(-2 * t)
  xi = jax.random.normal(key, (num_draws,) + x.shape)  # [N, b, d]
  xt = jnp.exp(-t) * x[None] + jnp.sqrt(delta) * xi
  phi = random_features.features(w, xt, activation).reshape(-1, w.shape[0])  # [N b, p]
  xi = xi.reshape(-1, w.shape[1])
  return phi.T @ phi, phi.T @ xi


def mc_train_moments(key: jax.Array, w, x, t: float, num_draws: int, activation: str = "tanh",
                     prefixes: Sequence[int] | None = None, chunk: int = 64):
  """Monte Carlo U and V for the fixed training points x [n, d], num_draws noise each.

  Args:
    key: PRNG key of the noise.
    w: [p, d] first layer.
    x: [n, d] training points.
    t: diffusion time.
    num_draws: noise draws per point (the paper's N = 100 for its train loss).
    activation: name of sigma.
    prefixes: optional sizes n_1 < ... <= n: return the moments of each prefix x[:n_r]
      (nested training sets share the draws of their common points).
    chunk: points per jitted block (bounds memory: chunk * num_draws * p floats).

  Returns:
    (U, V) as float32 arrays [p, p], [p, d]; with prefixes, stacked [R, p, p], [R, p, d].
  """
  n = x.shape[0]
  sizes = [n] if prefixes is None else list(prefixes)
  if sorted(sizes) != sizes or sizes[-1] > n or sizes[0] <= 0:
    raise ValueError(f"prefixes {sizes} must be increasing and within (0, {n}]")
  p, d = w.shape
  su, sv = jnp.zeros((p, p)), jnp.zeros((p, d))
  out_u, out_v = [], []
  start = 0
  for block_index, stop in enumerate(sizes):
    for lo in range(start, stop, chunk):
      hi = min(lo + chunk, stop)
      k = jax.random.fold_in(key, lo)
      bu, bv = _train_block_sums(k, w, x[lo:hi], t, num_draws, activation)
      su, sv = su + bu, sv + bv
    out_u.append(su / (stop * num_draws))
    out_v.append(sv / (stop * num_draws))
    start = stop
  if prefixes is None:
    return out_u[0], out_v[0]
  return jnp.stack(out_u), jnp.stack(out_v)


@functools.partial(jax.jit, static_argnames=("batch", "activation"))
def _test_block_sums(key, w, t, diag_cov, batch, activation):
  delta = -jnp.expm1(-2 * t)
  kx, kxi = jax.random.split(key)
  x = jax.random.normal(kx, (batch, w.shape[1])) * jnp.sqrt(diag_cov)
  xi = jax.random.normal(kxi, (batch, w.shape[1]))
  y = jnp.exp(-t) * x + jnp.sqrt(delta) * xi  # ~ P_t = N(0, Sigma_t)
  phi = random_features.features(w, y, activation)
  target = y / (jnp.exp(-2 * t) * diag_cov + delta)  # Sigma_t^{-1} y = -score
  return phi.T @ phi, phi.T @ xi, phi.T @ target, jnp.sum(target * target)


def mc_test_moments(key: jax.Array, w, t: float, num_samples: int, diag_cov,
                    activation: str = "tanh", batch: int = 1000):
  """Monte Carlo U_tilde, V_tilde, C_tilde and e over fresh (x, xi) pairs.

  Returns:
    (U_tilde [p, p], V_tilde [p, d], C_tilde [p, d], e) with e the sample mean of
    ||Sigma_t^{-1} y||^2 (its exact value is Tr Sigma_t^{-1}).
  """
  p, d = w.shape
  diag_cov = jnp.asarray(diag_cov, jnp.float32)
  acc = [jnp.zeros((p, p)), jnp.zeros((p, d)), jnp.zeros((p, d)), jnp.zeros(())]
  num_batches = -(-num_samples // batch)
  for i in range(num_batches):
    sums = _test_block_sums(jax.random.fold_in(key, i), w, t, diag_cov, batch, activation)
    acc = [a + s for a, s in zip(acc, sums)]
  total = num_batches * batch
  return tuple(a / total for a in acc)


# ----------------------------------------------------------------------------- Gaussian equivalents
# In float64 numpy: these feed eigendecompositions, and draws of many different shapes
# would each cost a JAX compilation.


def draw_ge_inputs(rng: np.random.Generator, d: int, p: int, n: int, diag_cov=None):
  """One draw of W [p, d] (N(0, 1) entries) and X [n, d] (N(0, diag_cov) rows), float64."""
  w = rng.standard_normal((p, d))
  x = rng.standard_normal((n, d))
  if diag_cov is not None:
    x = x * np.sqrt(np.asarray(diag_cov, np.float64))
  return w, x


def ge_factor(rng: np.random.Generator, w, x, consts: GEPConstants) -> np.ndarray:
  """F = [G / sqrt(n), b_t W / sqrt(d)] [p, n + d] with U_GE = s_t^2 I + F F^T (Lemma C.1).

  Args:
    rng: numpy Generator drawing Omega [p, n].
    w: [p, d] first layer (N(0, 1) entries).
    x: [n, d] training points.
    consts: the GEP constants of (t, sigma_x, activation).
  """
  w = np.asarray(w, np.float64)
  x = np.asarray(x, np.float64)
  p, d = w.shape
  n = x.shape[0]
  omega = rng.standard_normal((p, n))
  g = math.exp(-consts.t) * consts.a * (w @ x.T) / math.sqrt(d) + consts.v * omega
  return np.concatenate([g / math.sqrt(n), consts.b * w / math.sqrt(d)], axis=1)


def ge_u(rng: np.random.Generator, w, x, consts: GEPConstants) -> np.ndarray:
  """Dense Gaussian-equivalent U [p, p] (the same Omega as `ge_factor` with an equal rng)."""
  f = ge_factor(rng, w, x, consts)
  return f @ f.T + consts.s2 * np.eye(f.shape[0])


def ge_u_tilde(w, consts: GEPConstants, diag_cov) -> np.ndarray:
  """U_tilde ~ a_t^2 W Sigma_t W^T / d + (s_t^2 + v_t^2) I [p, p] (eq. 85, a_t = mu_1/Gamma_t)."""
  w = np.asarray(w, np.float64)
  p, d = w.shape
  diag_t = noisy_diagonal(diag_cov, consts.t)
  return consts.a**2 * (w * diag_t) @ w.T / d + (consts.s2 + consts.v2) * np.eye(p)


def ge_v(w, consts: GEPConstants) -> np.ndarray:
  """V ~ V_tilde ~ b_t W / sqrt(d) [p, d] (eq. 91 with b_t = sqrt(Delta_t) mu_1 / Gamma_t)."""
  w = np.asarray(w, np.float64)
  return consts.b * w / math.sqrt(w.shape[1])


def ge_c(w, consts: GEPConstants) -> np.ndarray:
  """C_tilde = E[phi(y) (Sigma_t^{-1} y)^T] ~ a_t W / sqrt(d) [p, d] (linear part of phi)."""
  w = np.asarray(w, np.float64)
  return consts.a * w / math.sqrt(w.shape[1])


def ge_u_eigenvalues(rng: np.random.Generator, d: int, psi_p: float, psi_n: float,
                     consts: GEPConstants, diag_cov=None) -> np.ndarray:
  """All p eigenvalues (ascending, float64) of one draw of the Gaussian-equivalent U.

  The p - (n + d) eigenvalues outside the span of F equal s_t^2 exactly; the others are
  s_t^2 plus the eigenvalues of the smaller Gram matrix of F.
  """
  p, n = int(round(psi_p * d)), int(round(psi_n * d))
  w, x = draw_ge_inputs(rng, d, p, n, diag_cov)
  f = ge_factor(rng, w, x, consts)
  m = min(p, n + d)
  gram = f.T @ f if n + d <= p else f @ f.T
  nonzero = np.maximum(np.linalg.eigvalsh(gram), 0.0)
  return np.sort(np.concatenate([np.zeros(p - m), nonzero]) + consts.s2)


# ----------------------------------------------------------------------------- comparisons


def density_cdf(grid: np.ndarray, density: np.ndarray) -> np.ndarray:
  """Cumulative trapezoid integral of a sampled density, normalised to end at 1."""
  grid, density = np.asarray(grid, np.float64), np.nan_to_num(np.asarray(density, np.float64))
  cdf = np.concatenate([[0.0], np.cumsum(np.diff(grid) * (density[1:] + density[:-1]) / 2)])
  return cdf / cdf[-1]


def ks_distance(samples: np.ndarray, grid: np.ndarray, density: np.ndarray) -> float:
  """Kolmogorov-Smirnov distance between samples and a density sampled on a grid.

  The density is renormalised over the grid, so the distance compares shapes of one bulk
  when samples and grid are restricted to that bulk.
  """
  samples = np.sort(np.asarray(samples, np.float64))
  cdf = np.interp(samples, grid, density_cdf(grid, density))
  k = samples.size
  upper = np.arange(1, k + 1) / k - cdf
  lower = cdf - np.arange(0, k) / k
  return float(max(upper.max(), lower.max()))
