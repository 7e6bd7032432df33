"""Exact metrics for the two-Gaussian mixture of the paper's SM B.

The data distribution is P_0 = 1/2 N(mu, I_d) + 1/2 N(-mu, I_d) (the paper: mu = 1_d,
d = 8). Under the OU process (see jaxdiff.diffusion) x_t = e^{-t} x_0 + sqrt(Delta_t) xi,
the noised distribution stays a mixture with unit covariance,
P_t = 1/2 N(m_t, I) + 1/2 N(-m_t, I), m_t = mu e^{-t}, because e^{-2t} + Delta_t = 1, so

  log P_t(x) = -d/2 log(2 pi) - |x|^2/2 - |m_t|^2/2 + log cosh(x . m_t),
  s(x, t) = grad log P_t(x) = m_t tanh(x . m_t) - x                     (paper eq. 24).

Metrics (all jit-able, for one model; the trainer vmaps them over runs):

* `score_error_at`: E_score(t) = (1/d) E_{x_t ~ P_t} |s_theta(x_t, t) - s(x_t, t)|^2 at
  given DDPM indices, x_t the noised fresh draws x_0 ~ P_0 (not the training set, so a
  memorizing model is penalised); optionally weighted by Delta_t (eps space).
* `score_error`: the scalar of the metrics rows, the Delta_t-weighted error averaged over
  the training distribution of indices = (1/d) E |eps_theta - eps*|^2, eps* =
  -sqrt(Delta_t) s: the excess of the model's population DDPM loss over its minimum.
* `gmm_kl` / `kl_estimate`: the paper's estimate of D_KL(P_theta || P_0) from N
  generated samples (eqs. 26-28), see `em_sample_with_entropy`.

Like with like: a model trained on data centred by a constant c (data.center) generates
in centred coordinates; every metric takes that `offset` c and compares x + c with P_0
(the score at x_t in centred coordinates is compared with P_t's at x_t + e^{-t} c). A
class-conditional model (paper SM B.3) is compared with the component it was asked for:
`labels` y in {0, 1} select N((2y - 1) mu, I) (label 1 <-> +mu, as the data's labels).

Usage:

  mu = gmm_mean(8)
  est = gmm_kl(eps_fn, schedule, key, 10_000, mu)        # est.kl, est.samples
  err = score_error(eps_fn, schedule, mu, key, 10_000)   # scalar
  per_t = score_error_at(eps_fn, schedule, sample_gmm(key, 10_000, mu), key,
                         jnp.array([40, 200]), mu)       # [2]
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import diffusion

EpsFn = diffusion.EpsFn


def gmm_mean(dim: int, scale: float = 1.0) -> jax.Array:
  """mu = scale * 1_d (the paper: scale 1; config key data.gmm_mean)."""
  return jnp.full((dim,), scale, jnp.float32)


def sample_gmm(key: jax.Array, num: int, mu: jax.Array) -> jax.Array:
  """num draws of P_0 = 1/2 N(mu, I) + 1/2 N(-mu, I): [num, d]."""
  k_sign, k_noise = jax.random.split(key)
  sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (num, 1)), 1.0, -1.0)
  return sign * mu + jax.random.normal(k_noise, (num, mu.shape[0]), jnp.float32)


def _mean_at(mu: jax.Array, t) -> jax.Array:
  """m_t = mu e^{-t}, broadcast to [..., d] for t scalar or [...]."""
  t = jnp.asarray(t, jnp.float32)
  return mu * jnp.exp(-t)[..., None]


def _log_cosh(z: jax.Array) -> jax.Array:
  """log cosh z without overflow: |z| + log(1 + e^{-2|z|}) - log 2."""
  a = jnp.abs(z)
  return a + jnp.log1p(jnp.exp(-2.0 * a)) - math.log(2.0)


def log_density(x: jax.Array, mu: jax.Array, t=0.0) -> jax.Array:
  """log P_t(x) of the noised mixture (t = 0: the data density P_0), x: [..., d] -> [...]."""
  m = _mean_at(mu, t)
  d = x.shape[-1]
  return (-0.5 * d * math.log(2.0 * math.pi) - 0.5 * jnp.sum(x * x, axis=-1)
          - 0.5 * jnp.sum(m * m, axis=-1) + _log_cosh(jnp.sum(x * m, axis=-1)))


def population_score(x: jax.Array, t, mu: jax.Array) -> jax.Array:
  """s(x, t) = mu e^{-t} tanh(x . mu e^{-t}) - x (paper eq. 24); x: [..., d], t: [] or [...]."""
  m = _mean_at(mu, t)
  return m * jnp.tanh(jnp.sum(x * m, axis=-1, keepdims=True)) - x


def _signs(labels: jax.Array) -> jax.Array:
  """Component signs [B, 1] (+1 for label 1, -1 for label 0)."""
  return (2.0 * jnp.asarray(labels, jnp.float32) - 1.0)[:, None]


def component_log_density(x: jax.Array, mu: jax.Array, labels: jax.Array, t=0.0) -> jax.Array:
  """log N(x; (2y - 1) m_t, I) of each row's component y (t = 0: the data's components)."""
  m = _signs(labels) * _mean_at(mu, t)
  d = x.shape[-1]
  return -0.5 * d * math.log(2.0 * math.pi) - 0.5 * jnp.sum(jnp.square(x - m), axis=-1)


def component_score(x: jax.Array, t, mu: jax.Array, labels: jax.Array) -> jax.Array:
  """s(x, t | y) = (2y - 1) mu e^{-t} - x: the noised component N((2y - 1) m_t, I)'s score."""
  return _signs(labels) * _mean_at(mu, t) - x


def _shift(schedule, offset, index):
  """e^{-t_i} c [B, d]: where the centred coordinates' x_t sits in the raw ones (minus x_t)."""
  if offset is None:
    return 0.0
  return jnp.sqrt(schedule.alpha_bars[index])[:, None] * jnp.asarray(offset, jnp.float32)


def _true_score(x, index, schedule, mu, labels):
  t = diffusion.ou_time(schedule, index)
  if labels is None:
    return population_score(x, t, mu)
  return component_score(x, t, mu, labels)


def population_eps_fn(schedule: diffusion.Schedule, mu: jax.Array, offset=None,
                      labels=None) -> EpsFn:
  """The exact noise predictor eps*(x, i) = -sqrt(1 - alpha_bar_i) s(x, t_i) of P_0.

  Plugged into a sampler it generates P_0 up to discretisation; plugged into the metrics
  it gives score error 0 and KL ~ 0 (the tests' reference model).

  Args:
    offset: the exact predictor of P_0 shifted by -offset (of data centred by `offset`),
      s_c(x, t) = s(x + e^{-t} offset, t); None: no shift.
    labels: [B] components: the exact predictor of each row's component (a perfect
      class-conditional model); None: of the mixture.
  """
  def eps_fn(x, index):
    raw = x + _shift(schedule, offset, index)
    return (-jnp.sqrt(1.0 - schedule.alpha_bars[index])[:, None]
            * _true_score(raw, index, schedule, mu, labels))
  return eps_fn


def score_error_at(eps_fn: EpsFn, schedule: diffusion.Schedule, x0: jax.Array,
                   key: jax.Array, indices: jax.Array, mu: jax.Array,
                   weighted: bool = False) -> jax.Array:
  """Exact score error of a model against the population score, per DDPM index.

    E_score(t_i) = (1/d) E_{x_0 ~ P_0, xi} |s_theta(x_{t_i}, t_i) - s(x_{t_i}, t_i)|^2,

  Monte Carlo over the given x_0 (fresh draws of P_0, e.g. `sample_gmm` or the test set)
  with one noise draw each; s_theta = -eps_theta / sqrt(Delta_t). With weighted=True the
  error is multiplied by Delta_t = 1 - alpha_bar_i, i.e. measured in eps space (bounded
  as t -> 0, where the unweighted error of any imperfect model grows like 1/Delta_t).

  Args:
    eps_fn: the model, eps_fn(x [B, d], i [B]) -> [B, d].
    x0: [B, d] draws of P_0.
    indices: [K] DDPM indices (int32).
    mu: [d] the mixture mean.

  Returns:
    [K] errors, one per index.
  """
  batch = x0.shape[0]
  keys = jax.random.split(key, indices.shape[0])

  def one(inp):
    i, k = inp
    idx = jnp.full((batch,), i, jnp.int32)
    noise = jax.random.normal(k, x0.shape, x0.dtype)
    x_t = diffusion.q_sample(schedule, x0, idx, noise)
    s_model = diffusion.score_from_eps(schedule, eps_fn(x_t, idx), idx)
    s_true = population_score(x_t, diffusion.ou_time(schedule, i), mu)
    err = jnp.mean(jnp.square(s_model - s_true))
    return err * (1.0 - schedule.alpha_bars[i]) if weighted else err

  return jax.lax.map(one, (jnp.asarray(indices, jnp.int32), keys))


def score_error(eps_fn: EpsFn, schedule: diffusion.Schedule, mu: jax.Array, key: jax.Array,
                num_samples: int, min_index: int = 1, offset=None, labels=None) -> jax.Array:
  """The scalar score error of the metrics rows: Delta-weighted, averaged over noise levels.

    score_error = E_{i ~ U[min_index, T-1], x_0 ~ P_0, xi} (Delta_{t_i} / d) |s_theta - s|^2
                = (1/d) E |eps_theta(x_i, i) - eps*(x_i, i)|^2,   eps* = -sqrt(Delta_t) s,

  i.e. the excess of the model's DDPM loss (per coordinate, index drawn as in training)
  over the loss of the exact score, on fresh draws of P_0 rather than the training set:
  0 for the population score, and it grows when a model memorizes (its score then points
  at the training points). Monte Carlo with num_samples draws of (x_0, i, xi), one
  network evaluation each.

  With `offset` c (a model of data centred by c) the model is evaluated at the centred
  x_t - e^{-t} c; with `labels` [num_samples] (a conditional model, eps_fn conditioned on
  them) x_0 is drawn from each row's component and compared with that component's score.
  """
  k_x, k_i, k_eps = jax.random.split(key, 3)
  if labels is None:
    x0 = sample_gmm(k_x, num_samples, mu)
  else:
    x0 = _signs(labels) * mu + jax.random.normal(k_x, (num_samples, mu.shape[0]), jnp.float32)
  idx = jax.random.randint(k_i, (num_samples,), min_index, schedule.num_steps)
  noise = jax.random.normal(k_eps, x0.shape, x0.dtype)
  x_t = diffusion.q_sample(schedule, x0, idx, noise)
  eps_true = -jnp.sqrt(1.0 - schedule.alpha_bars[idx])[:, None] * _true_score(
      x_t, idx, schedule, mu, labels)
  eps_model = eps_fn(x_t - _shift(schedule, offset, idx), idx)
  return jnp.mean(jnp.square(eps_model - eps_true))


# ------------------------------------------------------------------------- KL estimate


def em_sample_with_entropy(eps_fn: EpsFn, schedule: diffusion.Schedule, x_T: jax.Array,
                           key: jax.Array, num_steps: int | None = None
                           ) -> tuple[jax.Array, jax.Array]:
  """Euler-Maruyama sampling that also estimates E_{P_theta}[log P_theta] (paper eqs. 27-28).

  The samples are those of `diffusion.em_sample` with the same arguments (same grid,
  same keys; tested equal). Along the way it accumulates, in OU time,

    E[log P_theta] ~= -d/2 log(2 pi e)
                      + int_0^{t_max} E_{q_t}[x . s_theta(x, t) + |s_theta(x, t)|^2] dt.

  Why: let q_t be the density of the reverse process (started from N(0, I) at t_max,
  whose E[log q] = -d/2 log(2 pi e)). Running backwards, dx = (x + 2 s_theta) dtau +
  sqrt(2) dB, its Fokker-Planck equation gives
  d/dtau E[log q] = E[(x + 2 s_theta) . grad log q] - E[|grad log q|^2], which is
  E[x . s_theta + |s_theta|^2] when s_theta = grad log q_t (the model is taken as the
  score of the distribution it generates; exact for the population score). The paper
  writes the integrand as I(t) = beta_t / (2N) sum_mu [...] in DDPM time t, where
  beta_t / 2 ~= -1/2 d log(alpha_bar) = dt_OU per index: the same integral. Here the
  expectation is the mean over the N trajectories at each grid point, and the integral
  a left Riemann sum with the sampler's own steps dt_k (the state and score at the
  start of each step, as the EM update uses them; the final noise-free step is treated
  like the others, an O(dt_0) = O(1e-4) difference).

  Args:
    eps_fn: the model.
    x_T: [N, d] initial draws of N(0, I).
    key: the sampler's noise key (as for em_sample).
    num_steps: EM steps (None: every index, T - 1 steps; the paper used T = 1000).

  Returns:
    (samples [N, d], the estimate of E_{P_theta}[log P_theta] (scalar)).
  """
  dim = int(np.prod(x_T.shape[1:]))

  def rate(x, score):
    flat_x, flat_s = x.reshape(x.shape[0], -1), score.reshape(x.shape[0], -1)
    return jnp.mean(jnp.sum(flat_x * flat_s + flat_s * flat_s, axis=-1))

  x, integral = diffusion.em_sample(eps_fn, schedule, x_T, key, num_steps, rate_fn=rate)
  return x, integral - 0.5 * dim * math.log(2.0 * math.pi * math.e)


class KLEstimate(NamedTuple):
  """D_KL(P_theta || P_0) = neg_entropy + cross_entropy (scalars) and the samples used."""
  kl: jax.Array
  cross_entropy: jax.Array   # -E_{P_theta}[log P_0], Monte Carlo (eq. 26)
  neg_entropy: jax.Array     # E_{P_theta}[log P_theta], eqs. 27-28
  samples: jax.Array         # [N, d]


def gmm_kl(eps_fn: EpsFn, schedule: diffusion.Schedule, key: jax.Array, num_samples: int,
           mu: jax.Array, num_steps: int | None = None, offset=None,
           labels=None) -> KLEstimate:
  """The paper's KL estimate from num_samples Euler-Maruyama samples (SM B, eqs. 26-28).

  The key is used as `diffusion.sample("em", ...)` uses it (x_T from its first split, the
  sampler noise from the second), so the returned samples equal that function's and can
  serve the memorization metrics as well.

  Args:
    offset: the model generates data centred by `offset` ([d] or scalar; None = 0): the
      cross-entropy is taken at samples + offset. The entropy needs no shift: the centred
      process x - e^{-t} c is again the OU process, and entropy is shift-invariant.
    labels: [num_samples] the component each trajectory was conditioned on (a
      conditional model): the estimate is then the mean over trajectories of the
      component KLs, (1/2) sum_y KL(P_theta(.|y) || N((2y - 1) mu, I)) for balanced labels,
      with eq. 27's entropy integral along each trajectory's own conditional score.

  Returns:
    KLEstimate; its samples are in the model's (centred) coordinates.
  """
  k_init, k_run = jax.random.split(key)
  x_T = jax.random.normal(k_init, (num_samples, mu.shape[0]), jnp.float32)
  samples, neg_entropy = em_sample_with_entropy(eps_fn, schedule, x_T, k_run, num_steps)
  raw = samples if offset is None else samples + jnp.asarray(offset, jnp.float32)
  if labels is None:
    cross_entropy = -jnp.mean(log_density(raw, mu))
  else:
    cross_entropy = -jnp.mean(component_log_density(raw, mu, labels))
  return KLEstimate(neg_entropy + cross_entropy, cross_entropy, neg_entropy, samples)


def kl_estimate(eps_fn: EpsFn, schedule: diffusion.Schedule, mu: jax.Array, key: jax.Array,
                num_samples: int, num_steps: int | None = None, offset=None,
                labels=None) -> jax.Array:
  """The scalar KL estimate D_KL(P_theta || P_0) of `gmm_kl` (the metrics rows' "kl")."""
  return gmm_kl(eps_fn, schedule, key, num_samples, mu, num_steps, offset, labels).kl
