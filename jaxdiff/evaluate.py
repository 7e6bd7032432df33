"""The evaluation of ONE run at one training time, on device.

For a run it generates `eval.num_samples` samples with the configured sampler (a name of
`diffusion.sampler_names()`), then computes every output of the registry in
jaxdiff.evaluation from them: memorization against the run's own training set (paper
eq. 6), the fixed-time train and test losses (paper Fig. 2 middle), the images the quality
metric needs, a few samples with their nearest training images for the grids, the GMM's
KL and score error, and the extras named in eval.extra_outputs. The trainer lifts
`evaluate_run` over the models axis and computes the quality features of all runs
together (the quality network's parameters are shared, so the models axis folds into its
batch).

A class-conditional model (spec.num_classes > 0, paper SM B.3) generates sample j for
label j mod C (every class equally often) with classifier-free guidance of scale
spec.guidance; its train and test losses use the data's own labels (the training
objective without label dropout).

All arrays stay on device; only small per-run summaries go to the host.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxdiff import diffusion
from jaxdiff import evaluation


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
  num_classes: int = 0           # > 0: a class-conditional model (labels 0..C-1, C = null)
  guidance: float = 1.0          # classifier-free guidance scale s (1 = conditional)
  extra_outputs: tuple[str, ...] = ()  # optional outputs of jaxdiff.evaluation to compute


def generate(eps_fn, schedule, key: jax.Array, spec: EvalSpec, *,
             per_batch: bool = False) -> jax.Array:
  """num_samples samples in batches of sample_batch (bounded memory): [S, *data_shape].

  per_batch: eps_fn is a function of the (traced) batch number b returning the eps_fn of
    batch b (a conditional model's labels differ between batches).
  """
  num_batches = -(-spec.num_samples // spec.sample_batch)
  keys = jax.random.split(key, num_batches)
  shape = (spec.sample_batch,) + spec.data_shape
  one = lambda fn, k: diffusion.sample(spec.sampler, fn, schedule, k, shape,
                                       spec.sampler_steps, spec.ddim_eta)
  if per_batch:
    xs = jax.lax.map(lambda a: one(eps_fn(a[0]), a[1]), (jnp.arange(num_batches), keys))
  else:
    xs = jax.lax.map(lambda k: one(eps_fn, k), keys)
  return xs.reshape((-1,) + spec.data_shape)[:spec.num_samples]


def sample_labels(num: int, num_classes: int, start=0) -> jax.Array:
  """Labels of generated samples start, ..., start + num - 1: sample j gets j mod C."""
  return ((start + jnp.arange(num)) % num_classes).astype(jnp.int32)


def _model_eps_fns(model, params, spec: EvalSpec):
  """eps_fn(x, t) for given labels (None: unconditional) and the guided sampler's eps_fn."""
  def with_labels(labels):
    if spec.num_classes == 0:
      return lambda x, t: model.apply({"params": params}, x, t, train=False)
    return lambda x, t: model.apply({"params": params}, x, t, labels, train=False)

  def guided(labels):
    if spec.num_classes == 0:
      return with_labels(None)
    null = jnp.full_like(labels, spec.num_classes)
    return diffusion.guided_eps_fn(with_labels(labels), with_labels(null), spec.guidance)
  return with_labels, guided


def evaluate_run(model, schedule, spec: EvalSpec, params, n, offset, mean, key,
                 pool: jax.Array, test: jax.Array, labels=None,
                 test_labels=None) -> dict[str, jax.Array]:
  """All per-run outputs of one run: the samples, then every output of the registry
  (`evaluation.outputs_for(spec)`) computed from them.

  Args:
    params: the run's (EMA or raw) parameters.
    n, offset, mean: the run's training-set size, first pool index and centering constant.
    key: the run's evaluation key for this training time.
    pool: [pool_size + capacity, ...] the raw (uncentered) pool, zero-padded.
    test: [num_test, ...] the raw held-out data.
    labels, test_labels: a conditional model's [capacity] labels of the run's training
      block (padded) and [num_test] labels of the test data.

  Returns:
    The outputs' arrays: f_mem statistics, median ratio, losses, `images` [S, ...] (raw
    scale, clipped for image data) for the quality metric, grid arrays (samples,
    neighbours, ratios), the GMM's kl and score_error, and any registered extra.
  """
  with_labels, guided = _model_eps_fns(model, params, spec)
  conditional = spec.num_classes > 0
  if conditional and (labels is None or test_labels is None):
    raise ValueError("a conditional model's evaluation needs labels and test_labels")
  k_sample, k_boot, k_train, k_test, k_gmm = jax.random.split(key, 5)
  aux = {}
  gen_labels = sample_labels(spec.num_samples, spec.num_classes) if conditional else None
  if spec.gmm_mean is not None:
    # The KL estimate's entropy term integrates along the sampling trajectories (paper
    # eqs. 27-28), so its Euler-Maruyama samples are the samples of every other metric.
    # The model generates centred data when data.center is on: `mean` is added back
    # wherever samples meet P_0, so the metrics compare like with like.
    from jaxdiff.metrics import gmm
    mu = jnp.asarray(spec.gmm_mean, jnp.float32)
    est = gmm.gmm_kl(guided(gen_labels), schedule, k_sample, spec.num_samples, mu,
                     spec.sampler_steps, offset=mean, labels=gen_labels)
    samples, aux["kl"] = est.samples, est.kl
  elif conditional:
    def batch_fn(b):
      return guided(sample_labels(spec.sample_batch, spec.num_classes, b * spec.sample_batch))
    samples = generate(batch_fn, schedule, k_sample, spec, per_batch=True)
  else:
    samples = generate(with_labels(None), schedule, k_sample, spec)

  run = evaluation.Run(
      spec=spec, schedule=schedule, params=params, n=n, offset=offset, mean=mean, pool=pool,
      test=test, labels=labels, test_labels=test_labels, with_labels=with_labels,
      guided=guided, gen_labels=gen_labels, samples=samples, aux=aux,
      keys={"base": key, "sample": k_sample, "memorization": k_boot, "train_loss": k_train,
            "test_loss": k_test, "gmm": k_gmm})
  out = {}
  for output in evaluation.outputs_for(spec):
    out.update(output.compute(run))
  return out
