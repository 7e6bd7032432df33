"""Spectrum of U = (1/n) sum_nu E_xi[sigma sigma^T] in the high-dimensional limit.

Theorem 3.1 (paper eqs 16-19): with z = lambda + i eps and the Stieltjes-like transforms
q(z) = Tr(U - z)^{-1} / p, r(z) and s(z),

  s_hat(q)   = b_t^2 psi_p + 1/q
  D(q, r)    = 1 + (a_t^2 e^{-2t} psi_p / psi_n) r + (psi_p v_t^2 / psi_n) q
  r_hat(q,r) = psi_p a_t^2 e^{-2t} / D
  s = sum_k w_k / (s_hat + lambda_k r_hat),    r = sum_k w_k lambda_k / (s_hat + lambda_k r_hat)
  psi_p (s_t^2 - z) + psi_p v_t^2 / D + (1 - psi_p)/q - s/q^2 = 0,

for a data covariance with eigenvalues lambda_k of weights w_k; rho(lambda) = Im q / pi as
eps -> 0+. (eq. 19 uses psi_p/psi_n: the v2 HTML's psi_p/psi_p is a typo, paper.md 2.4.)

The solver treats every lambda of the grid at once: a complex Newton iteration in the
three unknowns (q, r, s), vectorised over lambda with `vmap`, with continuation from a
large imaginary part eps down to eps_min (each solution seeds the next), a best-of-several
step length that keeps Im q, Im r, Im s >= 0 (all three are Stieltjes transforms of
positive measures), all in float64 inside one jitted program.

Theorem 3.2 (psi_p, psi_n >> 1) gives closed forms: a delta peak of mass
1 - (1 + psi_n)/psi_p at s_t^2, the bulk rho_1 (a Marchenko-Pastur law of scale
v_t^2 psi_p/psi_n shifted by s_t^2), and the bulk rho_2 of U_tilde (Bai-Silverstein),
lambda_min = s_t^2 + v_t^2 (1 - sqrt(psi_p/psi_n))^2 and tau_mem = psi_p / (Delta_t lambda_min).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.theory.constants import gep_constants


# ----------------------------------------------------------------------------- helpers


def covariance_spectrum(cov_eigs: Sequence[float], cov_weights: Sequence[float]
                        ) -> tuple[np.ndarray, np.ndarray, float]:
  """Checks a discrete data spectrum; returns (eigs, weights normalised to 1, sigma_x).

  sigma_x = sqrt(Tr Sigma / d) = sqrt(sum_k w_k lambda_k) (paper 2.2).
  """
  eigs = np.asarray(cov_eigs, np.float64).reshape(-1)
  weights = np.asarray(cov_weights, np.float64).reshape(-1)
  if eigs.size == 0 or eigs.shape != weights.shape:
    raise ValueError(f"cov_eigs {cov_eigs} and cov_weights {cov_weights} must be non-empty and "
                     "of equal length")
  if np.any(eigs <= 0) or np.any(weights <= 0):
    raise ValueError("cov_eigs and cov_weights must be positive")
  weights = weights / weights.sum()
  return eigs, weights, float(math.sqrt(weights @ eigs))


class SaddlePoint(NamedTuple):
  """Solution of Theorem 3.1 on a grid of z = lambda + i eps (complex128 arrays)."""

  q: np.ndarray
  r: np.ndarray
  s: np.ndarray
  residual: np.ndarray  # max |equation| at the final eps, per lambda.


def _equations(x, z, prm):
  """The three saddle-point equations, the last one multiplied by q.

  Multiplying by q (not q^2) keeps the polynomial-like form without creating the spurious
  root q = r = s = 0 (as q -> 0, s/q -> 1, so the scaled equation tends to -psi_p).
  """
  q, r, s = x[0], x[1], x[2]
  psi_p, psi_n = prm["psi_p"], prm["psi_n"]
  alpha = prm["alpha"]  # a_t^2 e^{-2t}
  d = 1.0 + alpha * psi_p / psi_n * r + psi_p * prm["v2"] / psi_n * q
  r_hat = psi_p * alpha / d
  s_hat = prm["b2"] * psi_p + 1.0 / q
  den = s_hat + prm["eigs"] * r_hat  # [K]
  e1 = s - jnp.sum(prm["weights"] / den)
  e2 = r - jnp.sum(prm["weights"] * prm["eigs"] / den)
  e3 = q * (psi_p * (prm["s2"] - z) + psi_p * prm["v2"] / d) + (1.0 - psi_p) - s / q
  return jnp.stack([e1, e2, e3])


_STEP_LENGTHS = (1.0, 0.5, 0.25, 0.1, 0.03)
RESIDUAL_TOL = 1e-8


def _newton(fun, x, num_iters, feasible):
  """Damped Newton for a holomorphic fun: C^m -> C^m; keeps feasible(x) true."""
  jac = jax.jacfwd(fun, holomorphic=True)
  steps = jnp.asarray(_STEP_LENGTHS)

  def body(_, x):
    f = fun(x)
    dx = jnp.linalg.solve(jac(x), f)
    cands = x[None, :] - steps[:, None] * dx[None, :]  # [S, m]
    cands = jnp.concatenate([cands, x[None, :]], axis=0)  # staying put is a candidate
    norms = jax.vmap(lambda c: jnp.max(jnp.abs(fun(c))))(cands)
    ok = jax.vmap(feasible)(cands) & jnp.isfinite(norms)
    best = jnp.argmin(jnp.where(ok, norms, jnp.inf))
    return cands[best]

  return jax.lax.fori_loop(0, num_iters, body, x)


@functools.partial(jax.jit, static_argnames=("num_iters",))
def _solve_grid(lambdas, eps_schedule, prm, num_iters):
  """vmap over lambda of: continuation over eps, a few Newton steps at each eps."""
  m1 = jnp.sum(prm["weights"] * prm["eigs"])

  def feasible(x):
    return jnp.all(jnp.imag(x) >= 0.0)

  def one(lam):
    z0 = lam + 1j * eps_schedule[0]
    x0 = jnp.stack([-1.0 / z0, -m1 / z0, -1.0 / z0])  # large-|z| behaviour

    def step(x, eps):
      z = lam + 1j * eps
      x = _newton(lambda y: _equations(y, z, prm), x, num_iters, feasible)
      return x, None

    x, _ = jax.lax.scan(step, x0, eps_schedule)
    res = jnp.max(jnp.abs(_equations(x, lam + 1j * eps_schedule[-1], prm)))
    return x, res

  return jax.vmap(one)(lambdas)


def default_eps_schedule(eps_max: float = 1e3, eps_min: float = 1e-9,
                         num: int = 24) -> np.ndarray:
  """Geometric continuation schedule in the imaginary part of z."""
  return np.geomspace(eps_max, eps_min, num)


def solve_saddle_point(lambdas, psi_p: float, psi_n: float, t: float,
                       cov_eigs: Sequence[float] = (1.0,), cov_weights: Sequence[float] = (1.0,),
                       activation: str = "tanh", eps_schedule=None,
                       num_iters: int = 3) -> SaddlePoint:
  """Solves Theorem 3.1's equations for (q, r, s) at z = lambda + i eps_schedule[-1].

  Args:
    lambdas: real grid [L].
    psi_p, psi_n: p/d and n/d.
    t: diffusion time.
    cov_eigs, cov_weights: the data covariance as a discrete spectrum (weights are
      normalised); sigma_x = sqrt(sum w lambda) enters the constants.
    activation: name of sigma (odd: the theorem assumes E sigma = 0).
    eps_schedule: decreasing imaginary parts for the continuation (default
      `default_eps_schedule()`).
    num_iters: Newton iterations at each eps.

  Returns:
    A SaddlePoint of complex128 numpy arrays [L].
  """
  eigs, weights, sigma_x = covariance_spectrum(cov_eigs, cov_weights)
  c = gep_constants(t, sigma_x, activation)
  if eps_schedule is None:
    eps_schedule = default_eps_schedule()
  with jax.enable_x64(True):
    prm = {
        "psi_p": jnp.float64(psi_p), "psi_n": jnp.float64(psi_n),
        "alpha": jnp.float64(c.a**2 * math.exp(-2 * t)), "b2": jnp.float64(c.b**2),
        "v2": jnp.float64(c.v2), "s2": jnp.float64(c.s2),
        "eigs": jnp.asarray(eigs, jnp.complex128), "weights": jnp.asarray(weights, jnp.complex128),
    }
    lam = jnp.asarray(np.asarray(lambdas, np.float64).reshape(-1), jnp.complex128)
    x, res = _solve_grid(lam, jnp.asarray(eps_schedule, jnp.complex128), prm, num_iters)
    x, res = np.asarray(x), np.asarray(res)
  return SaddlePoint(q=x[:, 0], r=x[:, 1], s=x[:, 2], residual=res)


def spectral_density(lambdas, psi_p: float, psi_n: float, t: float,
                     cov_eigs: Sequence[float] = (1.0,), cov_weights: Sequence[float] = (1.0,),
                     activation: str = "tanh", **solver_kwargs) -> np.ndarray:
  """rho(lambda) = Im q(lambda + i 0+) / pi of U (Theorem 3.1), float64 [L].

  Returns the absolutely continuous part: the delta peak of mass `delta_mass(psi_p, psi_n)`
  at s_t^2 (whose Lorentzian of width eps is subtracted exactly) is left to the caller,
  who adds it back as a point mass. Points where the
  solver's residual exceeds RESIDUAL_TOL (in practice only points within ~1e-4 of a hard
  edge such as the one at s_t^2 when psi_p = psi_n + 1) are NaN.

  Args:
    lambdas: grid of eigenvalues [L].
    psi_p, psi_n: p/d and n/d.
    t: diffusion time.
    cov_eigs, cov_weights: discrete spectrum of the data covariance Sigma.
    activation: name of sigma.
    **solver_kwargs: eps_schedule, num_iters (see `solve_saddle_point`).
  """
  eps_schedule = solver_kwargs.pop("eps_schedule", None)
  if eps_schedule is None:
    eps_schedule = default_eps_schedule()
  sp = solve_saddle_point(lambdas, psi_p, psi_n, t, cov_eigs, cov_weights, activation,
                          eps_schedule=eps_schedule, **solver_kwargs)
  # q(z) = m / (s_t^2 - z) + (continuous part): at z = lambda + i eps the delta peak
  # contributes exactly the Lorentzian m eps / ((lambda - s_t^2)^2 + eps^2); remove it.
  eps = float(np.asarray(eps_schedule)[-1].real)
  _, _, sigma_x = covariance_spectrum(cov_eigs, cov_weights)
  s2 = gep_constants(t, sigma_x, activation).s2
  lam = np.asarray(lambdas, np.float64).reshape(-1)
  lorentz = delta_mass(psi_p, psi_n) * eps / ((lam - s2)**2 + eps**2)
  rho = np.maximum(sp.q.imag - lorentz, 0.0) / np.pi
  # A point where Newton did not converge (e.g. exactly on a hard edge) is not a density.
  return np.where(sp.residual <= RESIDUAL_TOL, rho, np.nan)


# ----------------------------------------------------------------------------- Theorem 3.2


def delta_mass(psi_p: float, psi_n: float) -> float:
  """Mass of the delta peak at s_t^2: max(0, 1 - (1 + psi_n)/psi_p) (exact: rank count)."""
  return max(0.0, 1.0 - (1.0 + psi_n) / psi_p)


def rho1_support(psi_p: float, psi_n: float, t: float, sigma_x: float = 1.0,
                 activation: str = "tanh") -> tuple[float, float]:
  """[s^2 + v^2 (1 - sqrt(psi_p/psi_n))^2, s^2 + v^2 (1 + sqrt(psi_p/psi_n))^2] (Thm 3.2)."""
  c = gep_constants(t, sigma_x, activation)
  k = math.sqrt(psi_p / psi_n)
  return c.s2 + c.v2 * (1 - k)**2, c.s2 + c.v2 * (1 + k)**2


def rho1_density(lambdas, psi_p: float, psi_n: float, t: float, sigma_x: float = 1.0,
                 activation: str = "tanh") -> np.ndarray:
  """rho_1 of Theorem 3.2, normalised to unit mass.

  From (s^2 - z) + v^2 / (1 + kappa v^2 q) - 1/q = 0 with kappa = psi_p/psi_n, i.e.
  kappa v^2 x q^2 + (x + v^2 (kappa - 1)) q + 1 = 0 with x = z - s^2: a Marchenko-Pastur law
  whose continuous part has mass min(1, 1/kappa).
  """
  c = gep_constants(t, sigma_x, activation)
  kappa = psi_p / psi_n
  x = np.asarray(lambdas, np.float64) - c.s2
  disc = 4 * kappa * c.v2 * x - (x + c.v2 * (kappa - 1))**2
  with np.errstate(divide="ignore", invalid="ignore"):
    dens = np.where(disc > 0, np.sqrt(np.maximum(disc, 0)) / (2 * np.pi * kappa * c.v2 * x), 0.0)
  return dens / min(1.0, 1.0 / kappa)


def _rho2_eigs(t, cov_eigs, cov_weights, activation):
  """Spectrum of (mu_1/Gamma_t)^2 Sigma_t = a_t^2 (e^{-2t} Sigma + Delta_t I) (eq. 85)."""
  eigs, weights, sigma_x = covariance_spectrum(cov_eigs, cov_weights)
  c = gep_constants(t, sigma_x, activation)
  return c.a**2 * (math.exp(-2 * t) * eigs + c.delta), weights, c


@functools.partial(jax.jit, static_argnames=("num_iters",))
def _solve_bai_silverstein(zp, mus, weights, psi_p, eps_schedule, num_iters):
  """q(z') = -1 / (z' - sum_k w_k mu_k / (1 + psi_p q mu_k)), vmapped over z'."""

  def one(x_real):
    def fun(q, z):
      return q * (z - jnp.sum(weights * mus / (1 + psi_p * q[0] * mus))) + 1.0

    def step(q, eps):
      z = x_real + 1j * eps
      return _newton(lambda y: fun(y, z), q, num_iters, lambda y: jnp.imag(y[0]) >= 0), None

    q0 = -1.0 / (x_real + 1j * eps_schedule[0])
    q, _ = jax.lax.scan(step, jnp.stack([q0]), eps_schedule)
    return q[0]

  return jax.vmap(one)(zp)


def rho2_density(lambdas, psi_p: float, t: float, cov_eigs: Sequence[float] = (1.0,),
                 cov_weights: Sequence[float] = (1.0,), activation: str = "tanh",
                 eps_schedule=None, num_iters: int = 3) -> np.ndarray:
  """rho_2 of Theorem 3.2: the bulk of U_tilde, normalised to unit mass.

  U_tilde = a_t^2 W Sigma_t W^T / d + (s_t^2 + v_t^2) I, whose non-trivial part solves the
  Bai-Silverstein equation q = -(z' - int mu drho(mu) / (1 + psi_p q mu))^{-1},
  z' = z - s_t^2 - v_t^2, rho = spectrum of a_t^2 Sigma_t (a_t = mu_1/Gamma_t, eq. 85).
  """
  mus, weights, c = _rho2_eigs(t, cov_eigs, cov_weights, activation)
  if eps_schedule is None:
    eps_schedule = default_eps_schedule()
  zp = np.asarray(lambdas, np.float64).reshape(-1) - c.s2 - c.v2
  with jax.enable_x64(True):
    q = _solve_bai_silverstein(jnp.asarray(zp, jnp.complex128), jnp.asarray(mus, jnp.complex128),
                               jnp.asarray(weights, jnp.complex128), jnp.float64(psi_p),
                               jnp.asarray(eps_schedule, jnp.complex128), num_iters)
    q = np.asarray(q)
  # The p - d zero eigenvalues of a_t^2 W Sigma_t W^T / d (an atom at z' = 0 of mass
  # 1 - 1/psi_p) enter Im q as an exact Lorentzian of width eps: remove it.
  eps = float(np.asarray(eps_schedule)[-1].real)
  atom = max(0.0, 1.0 - 1.0 / psi_p) * eps / (zp**2 + eps**2)
  return np.maximum(q.imag - atom, 0.0) / np.pi / min(1.0, 1.0 / psi_p)


def rho2_support(psi_p: float, t: float, cov_eigs: Sequence[float] = (1.0,),
                 cov_weights: Sequence[float] = (1.0,), activation: str = "tanh",
                 num: int = 4000) -> tuple[float, float]:
  """Edges [lo, hi] of rho_2 (closed form for one covariance eigenvalue, else numerical).

  For Sigma_t = g I the bulk is Marchenko-Pastur: s^2 + v^2 + a^2 g (sqrt(psi_p) -+ 1)^2.
  """
  mus, weights, c = _rho2_eigs(t, cov_eigs, cov_weights, activation)
  if mus.size == 1:
    g = float(mus[0])
    base = c.s2 + c.v2
    return base + g * (math.sqrt(psi_p) - 1)**2, base + g * (math.sqrt(psi_p) + 1)**2
  hi = c.s2 + c.v2 + float(mus.max()) * (math.sqrt(psi_p) + 1)**2 * 1.05
  grid = np.linspace(c.s2 + c.v2, hi, num)
  rho = rho2_density(grid, psi_p, t, cov_eigs, cov_weights, activation)
  (lo_i, hi_i), = [_support_interval(grid, rho)]
  return float(grid[lo_i]), float(grid[hi_i])


def _support_interval(grid: np.ndarray, rho: np.ndarray, rel_threshold: float = 1e-6
                     ) -> tuple[int, int]:
  """First and last grid index where rho exceeds rel_threshold * max(rho)."""
  idx = np.flatnonzero(rho > rel_threshold * rho.max())
  return int(idx[0]), int(idx[-1])


def support_intervals(grid, rho, rel_threshold: float = 1e-4) -> list[tuple[float, float]]:
  """The intervals [lo, hi] of the grid on which rho > rel_threshold * max(rho): the
  support of a sampled density, one interval per bulk."""
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


def lambda_min(psi_p: float, psi_n: float, t: float, sigma_x: float = 1.0,
               activation: str = "tanh") -> float:
  """Left edge of rho_1: s_t^2 + v_t^2 (1 - sqrt(psi_p/psi_n))^2 (Theorem 3.2)."""
  return rho1_support(psi_p, psi_n, t, sigma_x, activation)[0]


def tau_mem(psi_p: float, psi_n: float, t: float, sigma_x: float = 1.0,
            activation: str = "tanh") -> float:
  """Memorization time tau_mem = psi_p / (Delta_t lambda_min) in units tau = k eta / d^2.

  The slowest mode of rho_1 relaxes as exp(-2 Delta_t lambda tau / psi_p) (Prop. C.1).
  """
  c = gep_constants(t, sigma_x, activation)
  return psi_p / (c.delta * lambda_min(psi_p, psi_n, t, sigma_x, activation))
