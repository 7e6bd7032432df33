"""Synthetic vector data: the GMM of paper SM B ("gmm") and N(0, Sigma) ("gaussian").

gmm: P0 = 1/2 N(+mu 1_d, I) + 1/2 N(-mu 1_d, I), mu = data.gmm_mean, d = data.dim. Its
pool and test set alternate the two components (-mu, +mu, -mu, ...), so every even
prefix and every block [i n, (i+1) n) of even n holds exactly n/2 points of each (as the
authors draw them), where coin-flip labels would add a binomial imbalance. The labels are
the component (1 for +mu); the quality metric is the exact mixture's KL (eval.quality
"gmm").

gaussian: N(0, Sigma) with a discrete spectrum (paper Sect. 3): eigenvalue
data.cov_eigs[k] on a fraction data.cov_weights[k] of the d coordinates.

Both draw `data.pool_size` points once from `data.order_seed` (the pool, stream 0) and
`data.num_test` test points (stream 1).
"""

from __future__ import annotations

import math

import numpy as np

from jaxdiff import errors
from jaxdiff.data import dataset as dataset_lib
from jaxdiff.data import registry


def _draw(seed: int, stream: int, count: int, dim: int):
  """Alternating labels 0, 1, 0, 1, ... and standard normal noise [count, dim].

  The labels alternate (rather than being coin flips) so that every even-length block
  starting at an even position holds exactly half of each; the noise fills its output in
  order, so a larger `count` extends the draws without changing the first ones:
  `max_pool` truncation and `pool_size` do not move any point, and the test points
  (stream 1) do not depend on the pool size.
  """
  # The second child stream feeds the noise (the first is kept unused so that the noise
  # is the same as when the labels were drawn from it).
  _, noise_seq = np.random.SeedSequence([seed, stream]).spawn(2)
  labels = np.arange(count) % 2
  noise = np.random.default_rng(noise_seq).standard_normal((count, dim))
  return labels, noise


def _sizes(cfg) -> tuple[int, int]:
  return (dataset_lib.integer(cfg, "dim", minimum=1),
          dataset_lib.integer(cfg, "pool_size", minimum=1))


def _check_gmm(cfg) -> None:
  _sizes(cfg)
  dataset_lib.number(cfg, "gmm_mean")


def _check_gaussian(cfg) -> None:
  dim, _ = _sizes(cfg)
  gaussian_spectrum(cfg, dim)


def _load(name, cfg, *, num_test, order_seed, max_pool, reference) -> dataset_lib.Dataset:
  dim, pool_size = _sizes(cfg)
  seed = max(order_seed, 0)
  # Draws [0, pool_size) in order; a reference block needs the end of them.
  ref_start = pool_size - reference if 0 < reference < pool_size else None
  train_end = pool_size if ref_start is None else ref_start
  count = train_end if max_pool is None else min(train_end, max_pool)
  if name == "gmm":
    mu = dataset_lib.number(cfg, "gmm_mean")
    mean = np.full((dim,), mu, np.float64)

    def sample(stream, n):
      # P0 = 1/2 N(+mu 1_d, I) + 1/2 N(-mu 1_d, I); label 1 <-> +mu.
      labels, noise = _draw(seed, stream, n, dim)
      x = (2.0 * labels - 1.0)[:, None] * mean + noise
      return x.astype(np.float32), labels.astype(np.int32)

    metadata = {"mean": mean.astype(np.float32), "gmm_mean": mu}
  else:
    variances = gaussian_spectrum(cfg, dim)

    def sample(stream, n):
      _, noise = _draw(seed, stream, n, dim)
      return (noise * np.sqrt(variances)).astype(np.float32), None

    metadata = {"cov_eigs": variances.astype(np.float32)}
  ref = None
  if ref_start is None:
    pool, pool_labels = sample(0, count)
  else:
    everything, all_labels = sample(0, pool_size)
    pool, pool_labels = everything[:count], None if all_labels is None else all_labels[:count]
    ref = everything[ref_start:]
    metadata["reference_start"] = ref_start
  test, test_labels = sample(1, num_test)
  metadata.update({"source": f"synthetic:{name}", "seed": seed, "dim": dim,
                   "pool_available": pool_size})
  return dataset_lib.Dataset(name=name, kind="vector", pool=pool, test=test,
                             pool_labels=pool_labels, test_labels=test_labels,
                             metadata=metadata, reference=ref)


def gaussian_spectrum(cfg, dim) -> np.ndarray:
  """Per-coordinate variances: eigenvalue e_k on a fraction w_k of the d coordinates.

  Sigma is diagonal (in its eigenbasis): the random-features results depend on the
  spectrum only, W being isotropic.
  """
  eigs = tuple(dataset_lib.as_tuple(dataset_lib.value(cfg, "cov_eigs")))
  weights = tuple(dataset_lib.as_tuple(dataset_lib.value(cfg, "cov_weights")))
  if not eigs or any(isinstance(e, bool) or not isinstance(e, (int, float, np.number))
                     or not math.isfinite(e) or e <= 0 for e in eigs):
    raise errors.ConfigError("data.cov_eigs", eigs, "a non-empty tuple of positive numbers")
  if len(weights) != len(eigs) or any(
      isinstance(w, bool) or not isinstance(w, (int, float, np.number)) or not 0 < w <= 1
      for w in weights):
    raise errors.ConfigError("data.cov_weights", weights,
                             f"{len(eigs)} numbers in (0, 1], one per data.cov_eigs value")
  if abs(sum(weights) - 1.0) > 1e-6:
    raise errors.ConfigError("data.cov_weights", weights, "weights that sum to 1")
  counts = [w * dim for w in weights]
  if any(abs(c - round(c)) > 1e-6 for c in counts):
    raise errors.ConfigError(
        "data.cov_weights", weights,
        f"fractions of data.dim = {dim} that give whole numbers of coordinates")
  return np.repeat(np.asarray(eigs, np.float64), [int(round(c)) for c in counts])


def _vector_shape(cfg) -> tuple[int]:
  return (dataset_lib.integer(cfg, "dim", minimum=1),)


GMM = registry.register(registry.DatasetSource(
    name="gmm", kind="vector", labelled=True, default_quality="gmm",
    item_shape=_vector_shape, checks=_check_gmm,
    loader=lambda cfg, **kw: _load("gmm", cfg, **kw),
    description="the two-component Gaussian mixture of paper SM B"))
GAUSSIAN = registry.register(registry.DatasetSource(
    name="gaussian", kind="vector", labelled=False, default_quality="pixel_fd",
    item_shape=_vector_shape, checks=_check_gaussian,
    loader=lambda cfg, **kw: _load("gaussian", cfg, **kw),
    description="N(0, Sigma) with a discrete spectrum"))
