"""Gaussian-equivalence constants of the random-features model (paper eqs 12-14, 41-48).

With u, v, w, z i.i.d. N(0, 1), c = e^{-t} sigma_x, Delta_t = 1 - e^{-2t} and the
pre-activation standard deviation Gamma_t = sqrt(c^2 + Delta_t) (SM eq. 41: Gamma_t is a
standard deviation, although the main text prints it as a variance):

  b_t   = E[v sigma(c u + sqrt(Delta_t) v)]
  a_t   = E[sigma(c u + sqrt(Delta_t) v) u / c]
  v_t^2 = E[sigma(c u + sqrt(Delta_t) v) sigma(c u + sqrt(Delta_t) w)] - a_t^2 c^2
  s_t^2 = ||sigma||^2 - a_t^2 c^2 - v_t^2 - b_t^2
  ||sigma||^2 = E[sigma(Gamma_t z)^2],  mu_1 = E[sigma(Gamma_t z) z],  mu_0 = E[sigma(Gamma_t z)].

Every constant is computed from its definition by tensor-product Gauss-Hermite quadrature
(probabilists' nodes), in float64. The SM's shortcuts b_t^2 = Delta_t mu_1^2 and
a_t = mu_1 (eq. 181) hold only when Gamma_t = 1 (sigma_x = 1); the exact relations, by
Stein's lemma, are a_t = mu_1 / Gamma_t and b_t = sqrt(Delta_t) mu_1 / Gamma_t (paper.md
2.2 "Caution"). They are not used here, only tested.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models import random_features

# About 1e-11 on tanh/erf (analytic in a strip) up to sigma_x = 2; relu (a kink) converges
# only algebraically.
DEFAULT_NUM_NODES = 240


@dataclasses.dataclass(frozen=True)
class GEPConstants:
  """The constants of one (t, sigma_x, activation); all floats.

  Attributes:
    t: diffusion time.
    sigma_x: data scale, sqrt(Tr Sigma / d).
    activation: name of sigma.
    delta: Delta_t = 1 - e^{-2t}.
    gamma: Gamma_t, the standard deviation of a pre-activation under P_t.
    a, b: a_t, b_t (eq. 12).
    v2, s2: v_t^2, s_t^2 (eqs 13-14).
    mu0, mu1: E sigma(Gamma_t z) and E sigma(Gamma_t z) z.
    norm2: ||sigma||^2 = E sigma(Gamma_t z)^2.
  """

  t: float
  sigma_x: float
  activation: str
  delta: float
  gamma: float
  a: float
  b: float
  v2: float
  s2: float
  mu0: float
  mu1: float
  norm2: float

  @property
  def v(self) -> float:
    return math.sqrt(max(self.v2, 0.0))

  @property
  def s(self) -> float:
    return math.sqrt(max(self.s2, 0.0))

  @property
  def c(self) -> float:
    """e^{-t} sigma_x, the standard deviation of the signal part of a pre-activation."""
    return math.exp(-self.t) * self.sigma_x

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


@functools.lru_cache(maxsize=8)
def _nodes(num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
  """Probabilists' Gauss-Hermite nodes and weights normalised to a N(0, 1) expectation."""
  x, w = np.polynomial.hermite_e.hermegauss(num_nodes)
  return x, w / w.sum()


@functools.lru_cache(maxsize=256)
def gep_constants(t: float, sigma_x: float = 1.0, activation: str = "tanh",
                  num_nodes: int = DEFAULT_NUM_NODES) -> GEPConstants:
  """Gaussian-equivalence constants a_t, b_t, v_t^2, s_t^2, mu_0, mu_1, ||sigma||^2.

  Args:
    t: diffusion time (> 0).
    sigma_x: data scale sqrt(Tr Sigma / d) (> 0); Gamma_t^2 = e^{-2t} sigma_x^2 + Delta_t.
    activation: a name in jaxdiff.models.random_features.ACTIVATIONS.
    num_nodes: Gauss-Hermite nodes per dimension.

  Returns:
    A GEPConstants, accurate to about 1e-11 for tanh and erf (sigma_x <= 2) by default.
  """
  if not t > 0:
    raise ValueError(f"t must be positive, got {t}")
  if not sigma_x > 0:
    raise ValueError(f"sigma_x must be positive, got {sigma_x}")
  sigma = random_features.get_activation(activation)
  t, sigma_x = float(t), float(sigma_x)
  delta = -math.expm1(-2.0 * t)
  c = math.exp(-t) * sigma_x
  gamma = math.sqrt(c * c + delta)
  z, wz = _nodes(num_nodes)
  with jax.enable_x64(True):
    f = lambda x: np.asarray(sigma(jnp.asarray(x, jnp.float64)))
    # Pre-activation c u + sqrt(Delta) v on the [u, v] grid.
    act = f(c * z[:, None] + math.sqrt(delta) * z[None, :])  # [K_u, K_v]
    one_d = f(gamma * z)  # [K]
  b = float(wz @ act @ (wz * z))
  a = float((wz * z) @ act @ wz) / c
  # E_u[(E_v sigma)^2]: the v and w integrals factorise given u.
  inner = act @ wz  # [K_u]
  v2 = float(wz @ inner**2) - a * a * c * c
  mu0 = float(wz @ one_d)
  mu1 = float(wz @ (one_d * z))
  norm2 = float(wz @ one_d**2)
  s2 = norm2 - a * a * c * c - v2 - b * b
  return GEPConstants(t=t, sigma_x=sigma_x, activation=activation, delta=delta, gamma=gamma,
                      a=a, b=b, v2=v2, s2=s2, mu0=mu0, mu1=mu1, norm2=norm2)
