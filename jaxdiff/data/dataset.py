"""The Dataset of a sweep: an ordered pool, a held-out test set, a reference block.

Every dataset is an *ordered pool* plus a held-out *test* set (paper SM A.1 and the
authors' code, see paper.md 1.1):

* the natural order of the data is fixed once (CelebA: image file names; CIFAR-10: the
  TFDS train split then the test split; digits: scikit-learn's order), optionally
  permuted by `data.order_seed >= 0`;
* the test set is the LAST `data.num_test` items of that order (the authors take
  `full_tensor[-2048:]`) and the pool is everything before it;
* run (n, index i) trains on `pool[i*n:(i+1)*n]` (the authors' `-i`), checked by
  `check_subsets`;
* `load_dataset(..., reference=R)` holds out the LAST R pool items as `reference` (the
  quality metric's reference sets): a fixed block of the order that no n-grid moves and no
  training block can reach (the training pool ends where it starts);
* the only preprocessing besides resizing is centering by the run's own training mean
  (`train_mean`), done by the trainer: values stay in [0, 1], no std division and no
  [-1, 1] rescale.

This module holds what every source shares: the `Dataset` type, the split of a natural
order (`split`, `from_arrays`), the subset and centering rules, and the readers of the
`config.data` keys (`value`, `integer`, `number`, `boolean`, `text`). Their defaults are
configs/base.py's: a key missing from the config is a ConfigError, not a silent default.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from jaxdiff import errors


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """One dataset, ordered, on the host.

  Attributes:
    name: `data.dataset`.
    kind: "image" (arrays [N, H, W, C] float32 in [0, 1]) or "vector" ([N, d] float32).
    pool: the ordered pool; run (n, index i) trains on `pool[i*n:(i+1)*n]`. Truncated to
      `max_pool` items when `load_dataset` was given one.
    test: `data.num_test` held-out items, disjoint from the pool (the end of the order).
    pool_labels: int32 labels aligned with `pool` (digits, cifar10: the class; gmm: the
      mixture component, 1 for +mu), else None.
    test_labels: the same for `test`.
    metadata: facts about the data, e.g. gmm {"mean": [d]} (components at +-mean),
      gaussian {"cov_eigs": [d]} (per-coordinate variances), images {"source": ...}.
      Always holds "pool_available": the pool size before `max_pool` truncation and
      before the reference block is taken off; with a reference block also
      "reference_start", its first position in the pool order.
    reference: the reference block `pool_order[reference_start:pool_available]` (the
      last `reference` items of the pool order), or None when none was asked for or the
      pool is too small to hold it (`pool` then excludes it).
  """

  name: str
  kind: str
  pool: np.ndarray
  test: np.ndarray
  pool_labels: np.ndarray | None
  test_labels: np.ndarray | None
  metadata: dict
  reference: np.ndarray | None = None


# ---------------------------------------------------------------------- subsets, centering


def check_subsets(dataset: Dataset, n_train: Sequence[int], index: Sequence[int], *,
                  reserve: int = 0) -> None:
  """Checks that every run's block `pool[i*n:(i+1)*n]` (plus `reserve`) fits in the pool.

  Args:
    dataset: from `load_dataset`.
    n_train: `data.n_train`, the training-set sizes.
    index: `data.index`, the data blocks.
    reserve: pool images the trainer needs beyond the training blocks (e.g. quality
      references taken after them).

  Raises:
    ConfigError: naming data.n_train when even block 0 does not fit, else data.index,
      with the number of images available.
  """
  n_train, index = tuple(as_tuple(n_train)), tuple(as_tuple(index))
  if not n_train or any(not is_int(n) or n < 1 for n in n_train):
    raise errors.ConfigError("data.n_train", n_train, "a non-empty tuple of positive integers")
  if not index or any(not is_int(i) or i < 0 for i in index):
    raise errors.ConfigError("data.index", index, "a non-empty tuple of non-negative integers")
  available = len(dataset.pool)
  n_max, blocks = max(n_train), max(index) + 1
  held = [f"data.num_test = {len(dataset.test)} held out"]
  if dataset.reference is not None:
    held.append(f"the last {len(dataset.reference)} reserved as quality reference sets "
                "(eval.fid_num_sets x eval.fid_set_size)")
  if reserve:
    held.append(f"{reserve} reserved for evaluation")
  source = dataset.metadata.get("path")
  named = dataset.name if source is None else f"{dataset.name} (data.path = {source})"
  where = f"the {named} pool has {available} images ({', '.join(held)})"
  if n_max + reserve > available:
    raise errors.ConfigError(
        "data.n_train", n_train,
        f"max(n_train) <= {available - reserve}: {where}")
  if blocks * n_max + reserve > available:
    raise errors.ConfigError(
        "data.index", index,
        f"(max(index) + 1) * max(n_train) = {blocks} * {n_max} <= {available - reserve}: {where}")


def train_mean(images) -> np.ndarray:
  """The centering constant of a training set (paper.md 1.1: centering only).

  The authors subtract one scalar: the mean over the n training images and all their
  pixels (one grayscale channel). For RGB images we keep one scalar per channel (the
  natural extension, as with per-channel normalisation); for vector data one scalar over
  all items and coordinates (the paper centers by a scalar; a per-coordinate mean would
  also remove the GMM's sampled asymmetry, which is not what the paper does).

  Args:
    images: [N, H, W, C] images or [N, d] vectors (numpy or JAX array).

  Returns:
    float32 array of shape [C] for images, [] (a 0-d array) for vectors; subtracting it
    broadcasts over the data.
  """
  if images.ndim == 4:
    return np.asarray(images.mean(axis=(0, 1, 2)), dtype=np.float32)
  if images.ndim == 2:
    return np.asarray(images.mean(), dtype=np.float32)
  raise ValueError(f"expected [N, H, W, C] images or [N, d] vectors, got shape {images.shape}")


# ---------------------------------------------------------------------- splitting an order


def check_num_test(num_test: int, total: int, name: str) -> None:
  """num_test must leave a pool: one line naming data.num_test and the dataset's size."""
  if num_test >= total:
    raise errors.ConfigError(
        "data.num_test", num_test,
        f"an integer in [1, {total - 1}]: {name} has {total} items and the pool keeps the rest")


def natural_or_seeded(total: int, order_seed: int) -> np.ndarray:
  """The natural order 0..total-1, or numpy's default_rng(order_seed) permutation of it."""
  if order_seed >= 0:
    return np.random.default_rng(order_seed).permutation(total)
  return np.arange(total)


def split(order, num_test, max_pool, reference=0):
  """Pool, reference and test indices of a natural order.

  The test set is the end of the order; the reference block (when `reference` is below
  the pool size, else None) is the end of what remains; the pool is the rest, cut to
  max_pool.
  """
  pool, test = order[:len(order) - num_test], order[len(order) - num_test:]
  ref = None
  if 0 < reference < len(pool):
    pool, ref = pool[:len(pool) - reference], pool[len(pool) - reference:]
  return (pool if max_pool is None else pool[:max_pool]), ref, test


def reference_metadata(ref, available) -> dict:
  """{"reference_start": ...} when a reference block was held out, else {}."""
  return {} if ref is None else {"reference_start": available - len(ref)}


def from_arrays(name, images, labels, num_test, order_seed, max_pool, reference,
                metadata, kind="image") -> Dataset:
  """A Dataset of items held in memory in their natural order (digits, the user's files).

  The natural order is permuted by `order_seed >= 0` (numpy's default_rng(order_seed)
  permutation of all items), then split as `split` does: test = the end, reference block
  = the end of what remains.
  """
  total = len(images)
  check_num_test(num_test, total, name)
  order = natural_or_seeded(total, order_seed)
  pool_idx, ref_idx, test_idx = split(order, num_test, max_pool, reference)
  return Dataset(
      name=name, kind=kind, pool=images[pool_idx], test=images[test_idx],
      pool_labels=None if labels is None else labels[pool_idx],
      test_labels=None if labels is None else labels[test_idx],
      metadata={**metadata, "num_total": total, "order_seed": order_seed,
                "pool_available": total - num_test,
                **reference_metadata(ref_idx, total - num_test)},
      reference=None if ref_idx is None else images[ref_idx])


# ---------------------------------------------------------------------- config.data keys


def is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_tuple(value):
  return value if isinstance(value, (tuple, list)) else (value,)


def value(cfg, key: str):
  """`cfg[key]` of a ConfigDict, a dict or an object; a missing key is a ConfigError
  (every data key, with its default, is in configs/base.py)."""
  try:
    return cfg[key]
  except (KeyError, AttributeError, TypeError):
    pass
  try:
    return getattr(cfg, key)
  except AttributeError:
    raise errors.ConfigError(f"data.{key}", None,
                             "a value, but the key is missing from this config (configs/base.py "
                             "lists every data key with its default)") from None


def integer(cfg, key, minimum=None, maximum=None, extra="") -> int:
  """An integer data key within [minimum, maximum]; `extra` explains the bound."""
  v = value(cfg, key)
  if not is_int(v) or (minimum is not None and v < minimum) or (
      maximum is not None and v > maximum):
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" and <= {maximum}"
    raise errors.ConfigError(f"data.{key}", v, f"an integer{lo}{hi}{extra}")
  return int(v)


def number(cfg, key) -> float:
  """A finite real data key (not a bool)."""
  v = value(cfg, key)
  if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
    raise errors.ConfigError(f"data.{key}", v, "a finite number")
  return float(v)


def boolean(cfg, key) -> bool:
  v = value(cfg, key)
  if not isinstance(v, (bool, np.bool_)):
    raise errors.ConfigError(f"data.{key}", v, "True or False")
  return bool(v)


def image_keys(cfg) -> tuple[int, bool]:
  """(data.image_size, data.grayscale) of an image source that resizes."""
  return integer(cfg, "image_size", minimum=1), boolean(cfg, "grayscale")


def image_shape(cfg) -> tuple[int, int, int]:
  """[S, S, 1 or 3]: one item of an image source resized to data.image_size."""
  size, gray = image_keys(cfg)
  return (size, size, 1 if gray else 3)


def common_keys(cfg) -> tuple[int, int]:
  """(num_test, order_seed): the keys every source reads."""
  return integer(cfg, "num_test", minimum=1), integer(cfg, "order_seed", minimum=-1)
