"""DDPM schedule, noising, losses and samplers, written for ONE model.

Notation (paper eqs. 1, 21, 22; Ho et al. 2020): the DDPM index i in {0, ..., T-1} has
beta_i (linear from beta_min to beta_max), alpha_i = 1 - beta_i and
alpha_bar_i = prod_{s <= i} alpha_s, and

  x_i = sqrt(alpha_bar_i) x_0 + sqrt(1 - alpha_bar_i) eps,   eps ~ N(0, I).

This is the Ornstein-Uhlenbeck process dx = -x dt + sqrt(2) dB at time
t_i = -1/2 log(alpha_bar_i) (paper eq. 21), with e^{-t} = sqrt(alpha_bar) and
Delta_t = 1 - e^{-2t} = 1 - alpha_bar. The paper's "t = 0.01" is index 40 of the default
schedule (alpha_bar = 0.9798). The networks predict eps; the score is
s(x, t) = -eps_hat / sqrt(Delta_t).

Every function takes an `eps_fn(x, i) -> eps_hat` for one model (x: [B, ...], i: [B]
int32) and is jit-able and vmappable over a models axis; loops are `lax.scan`.

The samplers of eval.sampler are a registry (`register_sampler`, `sampler_names`,
`sampler_for`): ddim, ddpm and em here; a new one is one `register_sampler(name, fn)`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.errors import ConfigError

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


class Schedule(NamedTuple):
  """The discrete DDPM schedule; every field has shape [T] (float32)."""
  betas: jax.Array
  alphas: jax.Array
  alpha_bars: jax.Array

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]


def make_schedule(num_steps: int = 1000, beta_min: float = 1e-4,
                  beta_max: float = 2e-2) -> Schedule:
  """The linear schedule of the paper (SM A.1): beta_i = linspace(beta_min, beta_max, T)[i].

  The cumulative product is taken in float64 on the host, then cast to float32.
  """
  betas = np.linspace(beta_min, beta_max, num_steps, dtype=np.float64)
  alphas = 1.0 - betas
  alpha_bars = np.cumprod(alphas)
  return Schedule(*(jnp.asarray(a, jnp.float32) for a in (betas, alphas, alpha_bars)))


def schedule_from_config(diffusion_cfg) -> Schedule:
  return make_schedule(diffusion_cfg.num_steps, diffusion_cfg.beta_min, diffusion_cfg.beta_max)


def ou_time(schedule: Schedule, index) -> jax.Array:
  """OU time of a DDPM index: t = -1/2 log(alpha_bar_i) (paper eq. 21)."""
  return -0.5 * jnp.log(schedule.alpha_bars[index])


def index_for_ou_time(schedule: Schedule, t: float) -> int:
  """The DDPM index whose OU time is nearest to `t` (host side; t = 0.01 -> 40)."""
  times = -0.5 * np.log(np.asarray(schedule.alpha_bars, np.float64))
  return int(np.argmin(np.abs(times - t)))


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes a per-sample vector [B] to broadcast against x [B, ...]."""
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, index: jax.Array,
             noise: jax.Array) -> jax.Array:
  """Forward noising x_i = sqrt(alpha_bar_i) x0 + sqrt(1 - alpha_bar_i) eps; index: [B]."""
  ab = _bcast(schedule.alpha_bars[index], x0)
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def score_from_eps(schedule: Schedule, eps: jax.Array, index: jax.Array) -> jax.Array:
  """s(x, t) = -eps_hat / sqrt(1 - alpha_bar_i)."""
  return -eps / jnp.sqrt(1.0 - _bcast(schedule.alpha_bars[index], eps))


def per_sample_mse(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean over all but the leading axis of (a - b)^2: [B, ...] -> [B]."""
  return jnp.mean(jnp.square(a - b).reshape(a.shape[0], -1), axis=-1)


def sample_train_noise(key: jax.Array, x0: jax.Array, schedule: Schedule,
                       min_index: int = 1) -> tuple[jax.Array, jax.Array]:
  """The training draws: index uniform in [min_index, T-1] (the authors: 1..999) and eps."""
  k_t, k_eps = jax.random.split(key)
  index = jax.random.randint(k_t, (x0.shape[0],), min_index, schedule.num_steps)
  noise = jax.random.normal(k_eps, x0.shape, x0.dtype)
  return index, noise


def eps_loss(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, weights: jax.Array,
             index: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The epsilon-prediction loss of paper eq. (4) (DDPM form), as a weighted sum.

    L = sum_b w_b * mean_pixels (eps_b - eps_hat(x_{i_b}, i_b))^2,

  for given draws (index, noise) (see `sample_train_noise`: i_b uniform in
  [min_index, T-1]). With unit weights L / B is PyTorch's `MSELoss()` (mean over batch and
  pixels); zero weights mask padded batch slots, so a run whose batch is smaller than the
  program's static batch gets exactly its own mean.

  Returns:
    (weighted sum of per-sample losses, sum of weights).
  """
  x_t = q_sample(schedule, x0, index, noise)
  losses = per_sample_mse(noise, eps_fn(x_t, index))
  return jnp.sum(weights * losses), jnp.sum(weights)


def fixed_time_loss(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, weights: jax.Array,
                    index: int, key: jax.Array, num_draws: int = 5,
                    batch_size: int = 1024,
                    labels: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """The loss at one fixed diffusion index over a whole set (paper Fig. 2 middle).

  For each of `num_draws` noise draws, L_k = sum_b w_b mse_b / sum_b w_b over the set,
  computed in chunks of `batch_size` samples (bounded memory for n = 32768). The noise of
  sample j in draw k is drawn from fold_in(fold_in(key, k), j), so it does not depend on
  the chunking or on how many padded rows follow: a run gives the same losses alone and
  inside a sweep of larger capacity.

  Args:
    x0: [N, ...] the (centered) images.
    weights: [N] 1 for real images, 0 for padding.
    labels: [N] int labels of a class-conditional model, or None. When given, eps_fn is
      called as eps_fn(x, i, labels) with the labels of the chunk's items.

  Returns:
    (mean over draws of L_k, standard deviation over draws).
  """
  n = x0.shape[0]
  bs = min(batch_size, n)
  pad = (-n) % bs
  if labels is None:
    labels_in = jnp.zeros((n,), jnp.int32)  # unused: keeps one scan body for both cases
    call = lambda x, i, y: eps_fn(x, i)
  else:
    labels_in = jnp.asarray(labels, jnp.int32)
    call = eps_fn
  if pad:
    x0 = jnp.concatenate([x0, jnp.zeros((pad,) + x0.shape[1:], x0.dtype)])
    weights = jnp.concatenate([weights, jnp.zeros((pad,), weights.dtype)])
    labels_in = jnp.concatenate([labels_in, jnp.zeros((pad,), jnp.int32)])
  chunks_x = x0.reshape((-1, bs) + x0.shape[1:])
  chunks_w = weights.reshape(-1, bs)
  chunks_y = labels_in.reshape(-1, bs)
  chunks_j = jnp.arange(x0.shape[0], dtype=jnp.uint32).reshape(-1, bs)
  idx = jnp.full((bs,), index, jnp.int32)

  def one_draw(draw_key):
    def body(acc, inp):
      xc, wc, yc, jc = inp
      noise = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(draw_key, j),
                                                   xc.shape[1:], xc.dtype))(jc)
      losses = per_sample_mse(noise, call(q_sample(schedule, xc, idx, noise), idx, yc))
      return acc + jnp.sum(wc * losses), None
    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32),
                            (chunks_x, chunks_w, chunks_y, chunks_j))
    return total / jnp.maximum(jnp.sum(weights), 1.0)

  draw_keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.arange(num_draws))
  per_draw = jax.lax.map(one_draw, draw_keys)
  return jnp.mean(per_draw), jnp.std(per_draw)


# ------------------------------------------------------------------------- samplers


def sampler_indices(num_train_steps: int, num_steps: int) -> np.ndarray:
  """Decreasing DDPM indices visited by a strided sampler: T-1, ..., 0 (num_steps + 1 points).

  With num_steps = 99 and T = 1000 this is the authors' grid linspace(0, 999, 100)[::-1].
  """
  if not 1 <= num_steps <= num_train_steps - 1:
    raise ValueError(f"sampler steps must be in [1, {num_train_steps - 1}], got {num_steps}")
  grid = np.linspace(0, num_train_steps - 1, num_steps + 1).astype(np.int32)[::-1]
  if len(np.unique(grid)) != len(grid):
    raise ValueError(f"{num_steps} sampler steps repeat indices of a {num_train_steps}-step schedule")
  return np.ascontiguousarray(grid)


def ddim_sample(eps_fn: EpsFn, schedule: Schedule, x_T: jax.Array, num_steps: int,
                eta: float = 0.0, key: jax.Array | None = None) -> jax.Array:
  """DDIM (Song et al. 2021; paper eq. 22) from index T-1 down to index 0.

    x0_hat = (x_i - sqrt(1 - ab_i) eps_hat) / sqrt(ab_i)
    x_j = sqrt(ab_j) x0_hat + sqrt(1 - ab_j - sigma^2) eps_hat + sigma z,
    sigma = eta sqrt((1 - ab_j) / (1 - ab_i)) sqrt(1 - ab_i / ab_j),

  for consecutive grid indices i > j. eta = 0 is the deterministic sampler the paper
  uses (T' = 200 steps); eta = 1 is DDPM-like. Returns the iterate at index 0 (as the
  authors' sampler does).
  """
  grid = sampler_indices(schedule.num_steps, num_steps)
  pairs = jnp.asarray(np.stack([grid[:-1], grid[1:]], axis=1))
  if key is None:
    if eta != 0.0:
      raise ValueError("stochastic DDIM (eta > 0) needs a key")
    key = jax.random.PRNGKey(0)
  keys = jax.random.split(key, pairs.shape[0])
  batch = x_T.shape[0]

  def step(x, inp):
    (i, j), k = inp
    ab_i, ab_j = schedule.alpha_bars[i], schedule.alpha_bars[j]
    eps = eps_fn(x, jnp.full((batch,), i, jnp.int32))
    x0_hat = (x - jnp.sqrt(1.0 - ab_i) * eps) / jnp.sqrt(ab_i)
    sigma = eta * jnp.sqrt((1.0 - ab_j) / (1.0 - ab_i)) * jnp.sqrt(1.0 - ab_i / ab_j)
    x = (jnp.sqrt(ab_j) * x0_hat + jnp.sqrt(jnp.maximum(1.0 - ab_j - sigma**2, 0.0)) * eps)
    if eta != 0.0:
      x = x + sigma * jax.random.normal(k, x.shape, x.dtype)
    return x, None

  x, _ = jax.lax.scan(step, x_T, (pairs, keys))
  return x


def ddim_encode(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, num_steps: int) -> jax.Array:
  """The deterministic DDIM ODE run forward, index 0 -> T-1 (the inverse of eta=0 sampling)."""
  grid = sampler_indices(schedule.num_steps, num_steps)[::-1]
  pairs = jnp.asarray(np.stack([grid[:-1], grid[1:]], axis=1))
  batch = x0.shape[0]

  def step(x, ij):
    i, j = ij  # i < j: from the less noisy to the noisier level.
    ab_i, ab_j = schedule.alpha_bars[i], schedule.alpha_bars[j]
    eps = eps_fn(x, jnp.full((batch,), i, jnp.int32))
    x0_hat = (x - jnp.sqrt(1.0 - ab_i) * eps) / jnp.sqrt(ab_i)
    return jnp.sqrt(ab_j) * x0_hat + jnp.sqrt(1.0 - ab_j) * eps, None

  x, _ = jax.lax.scan(step, x0, pairs)
  return x


def ddpm_sample(eps_fn: EpsFn, schedule: Schedule, x_T: jax.Array, key: jax.Array) -> jax.Array:
  """Ancestral DDPM sampling over all T indices (Ho et al. 2020, Alg. 2).

    x_{i-1} = (x_i - beta_i / sqrt(1 - ab_i) eps_hat) / sqrt(alpha_i) + sigma_i z,

  with the posterior variance sigma_i^2 = beta_i (1 - ab_{i-1}) / (1 - ab_i) and no noise
  on the last step (it returns the index-0 mean).
  """
  T = schedule.num_steps
  indices = jnp.arange(T - 1, 0, -1)
  keys = jax.random.split(key, T - 1)
  batch = x_T.shape[0]

  def step(x, inp):
    i, k = inp
    b, a, ab = schedule.betas[i], schedule.alphas[i], schedule.alpha_bars[i]
    ab_prev = schedule.alpha_bars[i - 1]
    eps = eps_fn(x, jnp.full((batch,), i, jnp.int32))
    mean = (x - b / jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(a)
    sigma = jnp.sqrt(b * (1.0 - ab_prev) / (1.0 - ab))
    return mean + sigma * jax.random.normal(k, x.shape, x.dtype), None

  x, _ = jax.lax.scan(step, x_T, (indices, keys))
  return x


def em_sample(eps_fn: EpsFn, schedule: Schedule, x_T: jax.Array, key: jax.Array,
              num_steps: int | None = None, rate_fn=None):
  """Euler-Maruyama for the reverse-time SDE of the OU process (paper SM B).

  The forward process dx = -x dt + sqrt(2) dB has the reverse
  dx = [-x - 2 s(x, t)] dt + sqrt(2) dB_bar, integrated backwards in OU time over the
  times of the strided index grid (num_steps steps; default T - 1, every index):

    x_{t - dt} = x_t + (x_t + 2 s(x_t, t)) dt + sqrt(2 dt) z,

  with no noise on the last step. Returns the sample at index 0's time.

  Args:
    rate_fn: optional rate_fn(x, score) -> scalar, integrated along the trajectory as a
      left Riemann sum, sum_k rate_fn(x_k, s_k) dt_k (the GMM entropy estimate uses it).

  Returns:
    x, or (x, the integral) when rate_fn is given.
  """
  T = schedule.num_steps
  grid = sampler_indices(T, (T - 1) if num_steps is None else num_steps)
  times = np.asarray(-0.5 * np.log(np.asarray(schedule.alpha_bars, np.float64)))
  dts = jnp.asarray(times[grid[:-1]] - times[grid[1:]], jnp.float32)
  last = jnp.arange(len(grid) - 1) == len(grid) - 2
  keys = jax.random.split(key, len(grid) - 1)
  batch = x_T.shape[0]

  def step(carry, inp):
    x, integral = carry
    i, dt, k, is_last = inp
    idx = jnp.full((batch,), i, jnp.int32)
    score = score_from_eps(schedule, eps_fn(x, idx), idx)
    if rate_fn is not None:
      integral = integral + rate_fn(x, score) * dt
    x = x + (x + 2.0 * score) * dt
    z = jax.random.normal(k, x.shape, x.dtype)
    return (x + jnp.where(is_last, 0.0, jnp.sqrt(2.0 * dt)) * z, integral), None

  (x, integral), _ = jax.lax.scan(step, (x_T, jnp.zeros((), jnp.float32)),
                                  (jnp.asarray(grid[:-1]), dts, keys, last))
  return x if rate_fn is None else (x, integral)


def guided_eps_fn(eps_cond: EpsFn, eps_null: EpsFn, scale: float) -> EpsFn:
  """Classifier-free guidance (Ho & Salimans 2022) of a class-conditional model.

    eps_s(x, i) = eps(x, i | null) + s [eps(x, i | y) - eps(x, i | null)]
                = (1 + w) eps(x, i | y) - w eps(x, i | null),   w = s - 1,

  i.e. the score s_null + s (s_y - s_null). s = 1 is the conditional model, s = 0 the
  unconditional one (both returned as they are, with one network call per step); s > 1
  sharpens the classes.

  Args:
    eps_cond: the model conditioned on the wanted labels.
    eps_null: the same model given the null label (label dropout trains it).
    scale: s (a Python float: part of the compiled program).
  """
  scale = float(scale)
  if scale == 1.0:
    return eps_cond
  if scale == 0.0:
    return eps_null

  def eps_fn(x, index):
    null = eps_null(x, index)
    return null + scale * (eps_cond(x, index) - null)
  return eps_fn


# ------------------------------------------------------------------ the sampler registry


class Sampler(NamedTuple):
  """A sampler of the evaluation, written for ONE model.

  run(eps_fn, schedule, x_T, key, num_steps, eta) -> x_0: from x_T ~ N(0, I) to a sample
  (its equation is in `doc`, the docstring of the function it calls). uses_steps: whether
  eval.sampler_steps is its number of steps (DDPM always takes all T).
  """
  name: str
  run: Callable
  uses_steps: bool
  doc: str


_SAMPLERS: dict[str, Sampler] = {}


def register_sampler(name: str, run: Callable, *, uses_steps: bool = True,
                     doc: str | None = None) -> Sampler:
  """Adds (or replaces) the sampler `name` of eval.sampler; `doc` defaults to run's docstring."""
  entry = Sampler(name, run, uses_steps, doc if doc is not None else (run.__doc__ or ""))
  _SAMPLERS[name] = entry
  return entry


def unregister_sampler(name: str) -> None:
  """Removes a sampler (a test's own); unknown names are ignored."""
  _SAMPLERS.pop(name, None)


def sampler_names() -> tuple[str, ...]:
  """The values eval.sampler may take, in registration order."""
  return tuple(_SAMPLERS)


def sampler_for(name: str) -> Sampler:
  """The registered sampler `name`; a ConfigError naming eval.sampler when there is none."""
  if name not in _SAMPLERS:
    raise ConfigError("eval.sampler", name, f"one of {sampler_names()}")
  return _SAMPLERS[name]


def _ddim(eps_fn, schedule, x_T, key, num_steps, eta):
  return ddim_sample(eps_fn, schedule, x_T, num_steps, eta, key)


def _ddpm(eps_fn, schedule, x_T, key, num_steps, eta):
  del num_steps, eta  # ancestral sampling visits every index
  return ddpm_sample(eps_fn, schedule, x_T, key)


def _em(eps_fn, schedule, x_T, key, num_steps, eta):
  del eta
  return em_sample(eps_fn, schedule, x_T, key, num_steps)


register_sampler("ddim", _ddim, doc=ddim_sample.__doc__)
register_sampler("ddpm", _ddpm, uses_steps=False, doc=ddpm_sample.__doc__)
register_sampler("em", _em, doc=em_sample.__doc__)


def sample(kind: str, eps_fn: EpsFn, schedule: Schedule, key: jax.Array, shape: tuple,
           num_steps: int, eta: float = 0.0) -> jax.Array:
  """Draws x_T ~ N(0, I) of `shape` and runs the registered sampler `kind` (ddim | ddpm |
  em | one added by `register_sampler`)."""
  run = sampler_for(kind).run
  k_init, k_run = jax.random.split(key)
  x_T = jax.random.normal(k_init, shape, jnp.float32)
  return run(eps_fn, schedule, x_T, k_run, num_steps, eta)
