"""The evaluation of ONE run at one training time, on device.

For a run it generates `eval.num_samples` samples with the configured sampler, measures
memorization against the run's own training set (paper eq. 6), computes the fixed-time
train and test losses (paper Fig. 2 middle), and returns the images the quality metric
needs plus a few samples with their nearest training images for the grids. The trainer
lifts `evaluate_run` over the models axis and computes the quality features of all runs
together (the quality network's parameters are shared, so the models axis folds into its
batch).

All arrays stay on device; only small per-run summaries go to the host.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxdiff import diffusion
from jaxdiff.metrics import memorization


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """Static settings of the evaluation (hashable: part of the compiled program)."""
  sampler: str
  sampler_steps: int
  ddim_eta: float
  num_samples: int
  sample_batch: int
  ks: tuple[float, ...]          # ks[0] is the main threshold
  n_bootstrap: int
  loss_index: int
  loss_draws: int
  loss_batch: int
  grid_samples: int
  data_shape: tuple[int, ...]
  capacity: int
  image_data: bool               # clip to [0, 1] for the quality metric
  gmm_mean: Any = None           # tuple for gmm data: the component mean (enables KL / score error)


def generate(eps_fn, schedule, key: jax.Array, spec: EvalSpec) -> jax.Array:
  """num_samples samples in batches of sample_batch (bounded memory): [S, *data_shape]."""
  num_batches = -(-spec.num_samples // spec.sample_batch)
  keys = jax.random.split(key, num_batches)
  shape = (spec.sample_batch,) + spec.data_shape
  xs = jax.lax.map(lambda k: diffusion.sample(spec.sampler, eps_fn, schedule, k, shape,
                                              spec.sampler_steps, spec.ddim_eta), keys)
  return xs.reshape((-1,) + spec.data_shape)[:spec.num_samples]


def run_training_set(pool: jax.Array, offset, n, mean, capacity: int):
  """The run's centered training images [capacity, ...] and their validity weights."""
  start = (offset,) + (0,) * (pool.ndim - 1)
  images = jax.lax.dynamic_slice(pool, start, (capacity,) + pool.shape[1:]) - mean
  weights = (jnp.arange(capacity) < n).astype(jnp.float32)
  return images, weights


def evaluate_run(model, schedule, spec: EvalSpec, params, n, offset, mean, key,
                 pool: jax.Array, test: jax.Array) -> dict[str, jax.Array]:
  """All per-run metrics of one run (see the module docstring).

  Args:
    params: the run's (EMA or raw) parameters.
    n, offset, mean: the run's training-set size, first pool index and centering constant.
    key: the run's evaluation key for this training time.
    pool: [pool_size + capacity, ...] the raw (uncentered) pool, zero-padded.
    test: [num_test, ...] the raw held-out data.

  Returns:
    f_mem statistics, median ratio, losses, `images` [S, ...] (raw scale, clipped for image
    data) for the quality metric, and grid arrays (samples, neighbours, ratios).
  """
  eps_fn = lambda x, t: model.apply({"params": params}, x, t, train=False)
  k_sample, k_boot, k_train, k_test, k_gmm = jax.random.split(key, 5)
  kl = None
  if spec.gmm_mean is not None:
    # The KL estimate's entropy term integrates along the sampling trajectories (paper
    # eqs. 27-28), so its Euler-Maruyama samples are the samples of every other metric.
    from jaxdiff.metrics import gmm
    mu = jnp.asarray(spec.gmm_mean, jnp.float32)
    est = gmm.gmm_kl(eps_fn, schedule, k_sample, spec.num_samples, mu, spec.sampler_steps)
    samples, kl = est.samples, est.kl
  else:
    samples = generate(eps_fn, schedule, k_sample, spec)
  train_set, weights = run_training_set(pool, offset, n, mean, spec.capacity)

  mem = memorization.memorization_metrics(samples, train_set, n, k_boot, spec.ks,
                                         spec.n_bootstrap)
  ratios, idx1 = mem.pop("ratios"), mem.pop("idx1")
  mem.pop("d1")
  out = dict(mem)

  out["train_loss"], out["train_loss_std"] = diffusion.fixed_time_loss(
      eps_fn, schedule, train_set, weights, spec.loss_index, k_train, spec.loss_draws,
      spec.loss_batch)
  test_c = test - mean
  out["test_loss"], out["test_loss_std"] = diffusion.fixed_time_loss(
      eps_fn, schedule, test_c, jnp.ones((test.shape[0],), jnp.float32), spec.loss_index,
      k_test, spec.loss_draws, spec.loss_batch)

  raw = samples + mean
  if spec.image_data:
    raw = jnp.clip(raw, 0.0, 1.0)
  out["images"] = raw
  g = spec.grid_samples
  out["grid_samples"] = raw[:g]
  out["grid_neighbours"] = train_set[jnp.maximum(idx1[:g], 0)] + mean
  out["grid_ratios"] = ratios[:g]

  if kl is not None:
    out["kl"] = kl
    out["score_error"] = gmm.score_error(eps_fn, schedule, mu, k_gmm, spec.num_samples)
  return out
