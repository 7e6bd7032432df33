"""Datasets of a jaxdiff sweep as host arrays: the ordered pool, the test set, centering.

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
* the GMM's pool and test set alternate the two components (-mu, +mu, -mu, ...), so every
  even prefix and every block [i n, (i+1) n) of even n holds exactly n/2 points of each (as
  the authors draw them), where coin-flip labels would add a binomial imbalance;
* the only preprocessing besides resizing is centering by the run's own training mean
  (`train_mean`), done by the trainer: values stay in [0, 1] here, no std division and
  no [-1, 1] rescale.

Images (CelebA, CIFAR-10) follow the authors' torchvision chain `ToTensor -> Resize(S)
-> CenterCrop(S) -> Grayscale(1)` on float tensors: the shorter side is resized to S with
an antialiased bilinear (triangle) filter, then the centre S x S is cropped, then luma
0.2989 R + 0.587 G + 0.114 B (torchvision's tensor weights). All three steps are linear
in float arithmetic, so grayscale is applied first (one channel to resize instead of 3):
the result is the same up to float rounding.

The user's own images: `data.dataset = "folder"` (image files under `data.path`, natural
order = sorted relative paths), `"npz"` / `"npy"` (one array, its own order), read by
jaxdiff.image_files with the same chain; and any image dataset of tensorflow-datasets as
`"tfds:NAME"` (natural order: its splits train, validation, test, then the others). The
registry of names is `DATASETS` + `check_dataset_name` here; validation asks it.

Real image data come from tensorflow-datasets without TensorFlow, through
`tfds.data_source` (array_record files); data prepared as TFRecord are read with
`tfds.load` machinery when TensorFlow is importable. The preprocessed arrays are cached
in blocks of `_CACHE_BLOCK` images under `<tfds data_dir>/jaxdiff_cache/`, so a later run
loads in seconds and decodes only the blocks it needs (`max_pool`).

Usage:

  data = input_pipeline.load_dataset(config.data, max_pool=needed)
  input_pipeline.check_subsets(data, config.data.n_train, config.data.index)
  train = data.pool[i * n:(i + 1) * n]
  centered = train - input_pipeline.train_mean(train)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import io
import json
import contextlib
import logging
import math
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np

from jaxdiff import errors
from jaxdiff import fileio

# The dataset registry: every value `data.dataset` can take is decided here (validation
# asks `check_dataset_name`). Built-in datasets, the user's own files (data.path), and
# any image dataset of tensorflow-datasets as "tfds:NAME".
DATASETS = ("digits", "gmm", "gaussian", "celeb_a", "cifar10", "folder", "npz", "npy")
TFDS_PREFIX = "tfds:"
# Datasets read from data.path (jaxdiff.image_files), with what the path must be.
FILE_DATASETS = {"folder": "a folder of PNG/JPEG/BMP/TIFF files (read recursively)",
                 "npz": "a .npz file holding one image array (or one named images/x/...)",
                 "npy": "a .npy file holding an image array"}
_VECTOR_DATASETS = ("gmm", "gaussian")


def dataset_names() -> str:
  """The allowed values of data.dataset, in words (for messages)."""
  return ", ".join(DATASETS) + f", or {TFDS_PREFIX}NAME (an image dataset of tensorflow-datasets)"


def check_dataset_name(name) -> None:
  """Raises a ConfigError naming data.dataset unless `name` is a dataset this module loads."""
  # TFDS names: NAME, NAME/CONFIG, NAME:VERSION (as tfds.builder takes them).
  ok = isinstance(name, str) and (
      name in DATASETS or (name.startswith(TFDS_PREFIX) and re.fullmatch(
          r"[a-z0-9_]+(/[A-Za-z0-9_.-]+)?(:[0-9.]+)?", name[len(TFDS_PREFIX):]) is not None))
  if not ok:
    raise errors.ConfigError("data.dataset", name, f"one of {dataset_names()}")


def dataset_kind(name: str) -> str:
  """"image" or "vector" for a valid data.dataset value (from the name alone)."""
  return "vector" if name in _VECTOR_DATASETS else "image"

# torchvision's Grayscale on float tensors (ITU-R 601-2 luma, R weight as torchvision has it).
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)

# Images per cache file; also the unit of decoding work handed to the progress bar.
_CACHE_BLOCK = 4096
# Images decoded and preprocessed together by one worker thread.
_DECODE_CHUNK = 64
# Bump when the preprocessing changes, so that stale caches are not reused.
_PIPELINE_VERSION = 2  # 2: division by 255 instead of a product with 1/255


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


# ---------------------------------------------------------------------- public API


def load_dataset(data_cfg, *, max_pool: int | None = None, reference: int = 0) -> Dataset:
  """Loads `data_cfg.dataset` as an ordered pool and a held-out test set.

  Args:
    data_cfg: `config.data` (keys: dataset, image_size, grayscale, num_test,
      order_seed, dim, gmm_mean, pool_size, cov_eigs, cov_weights, tfds_data_dir).
    max_pool: at most this many pool items are returned (the first ones); None = all.
      For CelebA/CIFAR-10 only the cache blocks holding the needed images are decoded.
    reference: hold out the last `reference` items of the pool order as
      `Dataset.reference` (they leave `pool`); ignored (reference None) when the pool
      has no more than `reference` items.

  Returns:
    A `Dataset`.

  Raises:
    ConfigError: a data key has a value that is not allowed.
    DataError: a TFDS dataset is not prepared (the message says how to prepare it).
  """
  name = _get(data_cfg, "dataset", None)
  check_dataset_name(name)
  if max_pool is not None and (isinstance(max_pool, bool) or int(max_pool) != max_pool
                               or max_pool < 1):
    raise ValueError(f"max_pool must be a positive integer or None, got {max_pool!r}")
  if not _is_int(reference) or reference < 0:
    raise ValueError(f"reference must be a non-negative integer, got {reference!r}")
  num_test = _get_int(data_cfg, "num_test", 2048, minimum=1)
  order_seed = _get_int(data_cfg, "order_seed", -1, minimum=-1)
  if name == "digits":
    return _load_digits(data_cfg, num_test, order_seed, max_pool, reference)
  if name in ("gmm", "gaussian"):
    return _load_synthetic(name, data_cfg, num_test, order_seed, max_pool, reference)
  if name in FILE_DATASETS:
    return _load_files(name, data_cfg, num_test, order_seed, max_pool, reference)
  return _load_tfds(name, data_cfg, num_test, order_seed, max_pool, reference)


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
  n_train, index = tuple(_as_tuple(n_train)), tuple(_as_tuple(index))
  if not n_train or any(not _is_int(n) or n < 1 for n in n_train):
    raise errors.ConfigError("data.n_train", n_train, "a non-empty tuple of positive integers")
  if not index or any(not _is_int(i) or i < 0 for i in index):
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


def preprocess_images(images: np.ndarray, image_size: int, grayscale: bool) -> np.ndarray:
  """The authors' torchvision chain on uint8 images (module docstring).

  Args:
    images: [B, H, W, C] (C = 1 or 3), all the same size: uint8, or float on the same
      0..255 scale (16-bit and float image files, float arrays).
    image_size: S, the side after resizing the shorter side to S and center-cropping.
    grayscale: convert to one luma channel (LUMA_WEIGHTS).

  Returns:
    float32 [B, S, S, 1 or 3] in [0, 1].
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"expected [B, H, W, 1 or 3] images, got shape {images.shape}")
  b, h, w, c = images.shape
  x = images.astype(np.float32)  # values 0..255; the 1/255 is applied to the small result
  if grayscale and c == 3:
    x = (x.reshape(-1, 3) @ np.asarray(LUMA_WEIGHTS, np.float32)).reshape(b, h, w, 1)
  rows, cols = resize_crop_matrices(h, w, image_size)
  # Each contraction is one BLAS matrix product (tensordot reshapes around np.dot).
  x = np.tensordot(x, cols, axes=([2], [1]))  # [B, H, C, S]
  x = np.tensordot(rows, x, axes=([1], [1]))  # [S, B, C, S]
  # Divided (not multiplied by 1/255, which is inexact in float32): the quotient is
  # correctly rounded, so values that are exact on the 0..255 scale (e.g. the digits'
  # k/16 * 255) come back exactly when the resize is the identity.
  x = x.transpose(1, 0, 3, 2) / np.float32(255)  # [B, S, S, C]
  if not grayscale and c == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)


def resize_crop_matrices(height: int, width: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Row and column matrices of torchvision's Resize(size) + CenterCrop(size).

  Resize (antialias=True, bilinear, align_corners=False) maps the shorter side to `size`
  and the longer to int(size * long / short); CenterCrop keeps rows/columns from
  int(round((new - size) / 2)). Both are linear, so the image is `rows @ x @ cols.T`.

  Returns:
    float32 `rows` [size, height] and `cols` [size, width].
  """
  if width <= height:
    new_w, new_h = size, int(size * height / width)
  else:
    new_h, new_w = size, int(size * width / height)
  top = int(round((new_h - size) / 2.0))
  left = int(round((new_w - size) / 2.0))
  rows = _resize_matrix(height, new_h)[top:top + size]
  cols = _resize_matrix(width, new_w)[left:left + size]
  return rows.astype(np.float32), cols.astype(np.float32)


def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of antialiased bilinear resizing (PIL / torch `antialias=True`).

  Output pixel i is centred at c_i = (i + 1/2) * s in input coordinates, s = in/out.
  When shrinking (s > 1) the triangle filter is stretched by s so that every input
  pixel contributes (antialiasing): w_ij = max(0, 1 - |j + 1/2 - c_i| / max(s, 1)),
  normalised over j (which also renormalises at the borders).
  """
  scale = in_size / out_size
  centers = (np.arange(out_size) + 0.5) * scale
  dist = np.abs(np.arange(in_size)[None, :] + 0.5 - centers[:, None]) / max(scale, 1.0)
  weights = np.maximum(0.0, 1.0 - dist)
  return weights / weights.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------- config access


def _get(cfg, key, default):
  try:
    return cfg.get(key, default)
  except AttributeError:
    return getattr(cfg, key, default)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _as_tuple(value):
  return value if isinstance(value, (tuple, list)) else (value,)


def _get_int(cfg, key, default, minimum=None, maximum=None, extra=""):
  value = _get(cfg, key, default)
  if not _is_int(value) or (minimum is not None and value < minimum) or (
      maximum is not None and value > maximum):
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" and <= {maximum}"
    raise errors.ConfigError(f"data.{key}", value, f"an integer{lo}{hi}{extra}")
  return int(value)


def _get_float(cfg, key, default):
  value = _get(cfg, key, default)
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(
      value):
    raise errors.ConfigError(f"data.{key}", value, "a finite number")
  return float(value)


def _check_num_test(num_test, total, name):
  if num_test >= total:
    raise errors.ConfigError(
        "data.num_test", num_test,
        f"an integer in [1, {total - 1}]: {name} has {total} items and the pool keeps the rest")


def _split(order, num_test, max_pool, reference=0):
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


def _reference_metadata(ref, available):
  return {} if ref is None else {"reference_start": available - len(ref)}


# ---------------------------------------------------------------------- digits


def _load_digits(cfg, num_test, order_seed, max_pool, reference) -> Dataset:
  """scikit-learn's bundled 8x8 digits (1797 images, values 0..16 scaled by 1/16).

  The images are 8x8 and are not resized: `data.image_size` must be 8 (upsampling an
  8x8 digit adds no information, only cost) and `data.grayscale` True.
  """
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top

  size = _get(cfg, "image_size", 8)
  if size != 8:
    raise errors.ConfigError("data.image_size", size, "8 for digits (8x8 images, not resized)")
  if not _get(cfg, "grayscale", True):
    raise errors.ConfigError("data.grayscale", _get(cfg, "grayscale", True),
                             "True for digits (one-channel images)")
  digits = sk_datasets.load_digits()
  # Values 0..16 (scikit-learn's integer counts) scaled by 1/16; exact in float32.
  images = (digits.images / 16.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1]
  labels = digits.target.astype(np.int32)
  return _from_arrays("digits", images, labels, num_test, order_seed, max_pool, reference,
                      {"source": "sklearn.datasets.load_digits"})


def _from_arrays(name, images, labels, num_test, order_seed, max_pool, reference,
                 metadata) -> Dataset:
  """A Dataset of images held in memory in their natural order (digits, the user's files).

  The natural order is permuted by `order_seed >= 0` (numpy's default_rng(order_seed)
  permutation of all items), then split as `_split` does: test = the end, reference block
  = the end of what remains.
  """
  total = len(images)
  _check_num_test(num_test, total, name)
  order = np.arange(total)
  if order_seed >= 0:
    order = np.random.default_rng(order_seed).permutation(total)
  pool_idx, ref_idx, test_idx = _split(order, num_test, max_pool, reference)
  return Dataset(
      name=name, kind="image", pool=images[pool_idx], test=images[test_idx],
      pool_labels=None if labels is None else labels[pool_idx],
      test_labels=None if labels is None else labels[test_idx],
      metadata={**metadata, "num_total": total, "order_seed": order_seed,
                "pool_available": total - num_test,
                **_reference_metadata(ref_idx, total - num_test)},
      reference=None if ref_idx is None else images[ref_idx])


# ---------------------------------------------------------------------- the user's files


def _load_files(name, cfg, num_test, order_seed, max_pool, reference) -> Dataset:
  """data.dataset = folder / npz / npy: the images at data.path (jaxdiff.image_files).

  Natural order: a folder's files sorted by their path relative to it; an array's own
  order. Preprocessing: the paper's CelebA chain (`preprocess_images`) to
  data.image_size, grayscale per data.grayscale; images smaller than data.image_size
  are refused (not upsampled), as for the TFDS datasets. No labels.
  """
  from jaxdiff import image_files  # pylint: disable=g-import-not-at-top

  path = _get(cfg, "path", "")
  if not isinstance(path, str) or not path:
    raise errors.ConfigError("data.path", path,
                             f"the path of {FILE_DATASETS[name]} for data.dataset = {name!r}")
  path = os.path.expanduser(path)
  size = _get_int(cfg, "image_size", 32, minimum=1)
  grayscale = _get(cfg, "grayscale", True)
  if not isinstance(grayscale, (bool, np.bool_)):
    raise errors.ConfigError("data.grayscale", grayscale, "True or False")
  if not os.path.exists(path):
    raise errors.DataError(f"{path}: no such file or folder (data.path, data.dataset = "
                           f"{name!r} reads {FILE_DATASETS[name]})")
  if name == "folder" and not os.path.isdir(path):
    raise errors.DataError(f"{path}: not a folder (data.dataset = 'folder' reads "
                           f"{FILE_DATASETS[name]}; use 'npz' / 'npy' for array files)")
  if name != "folder" and not (os.path.isfile(path) and path.lower().endswith("." + name)):
    raise errors.DataError(f"{path}: not a .{name} file (data.dataset = {name!r} reads "
                           f"{FILE_DATASETS[name]})")
  images = image_files.load_images(path, image_size=size, grayscale=bool(grayscale),
                                   upsample=False)
  return _from_arrays(name, images.pixels, None, num_test, order_seed, max_pool, reference,
                      {"source": images.description, "path": path, "image_size": size,
                       "grayscale": bool(grayscale)})


# ---------------------------------------------------------------------- gmm, gaussian


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


def _load_synthetic(name, cfg, num_test, order_seed, max_pool, reference) -> Dataset:
  """The GMM of paper SM B, or N(0, Sigma) with a discrete spectrum (paper Sect. 3)."""
  dim = _get_int(cfg, "dim", 8, minimum=1)
  pool_size = _get_int(cfg, "pool_size", 65536, minimum=1)
  seed = max(order_seed, 0)
  # Draws [0, pool_size) in order; a reference block needs the end of them.
  ref_start = pool_size - reference if 0 < reference < pool_size else None
  train_end = pool_size if ref_start is None else ref_start
  count = train_end if max_pool is None else min(train_end, max_pool)
  if name == "gmm":
    mu = _get_float(cfg, "gmm_mean", 1.0)
    mean = np.full((dim,), mu, np.float64)

    def sample(stream, n):
      # P0 = 1/2 N(+mu 1_d, I) + 1/2 N(-mu 1_d, I); label 1 <-> +mu.
      labels, noise = _draw(seed, stream, n, dim)
      x = (2.0 * labels - 1.0)[:, None] * mean + noise
      return x.astype(np.float32), labels.astype(np.int32)

    metadata = {"mean": mean.astype(np.float32), "gmm_mean": mu}
  else:
    variances = _gaussian_spectrum(cfg, dim)

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
  return Dataset(name=name, kind="vector", pool=pool, test=test, pool_labels=pool_labels,
                 test_labels=test_labels, metadata=metadata, reference=ref)


def _gaussian_spectrum(cfg, dim) -> np.ndarray:
  """Per-coordinate variances: eigenvalue e_k on a fraction w_k of the d coordinates.

  Sigma is diagonal (in its eigenbasis): the random-features results depend on the
  spectrum only, W being isotropic.
  """
  eigs = tuple(_as_tuple(_get(cfg, "cov_eigs", (1.0,))))
  weights = tuple(_as_tuple(_get(cfg, "cov_weights", (1.0,))))
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


# ---------------------------------------------------------------------- TFDS images


@dataclasses.dataclass(frozen=True)
class _TfdsSpec:
  splits: tuple[str, ...]  # concatenated in this order to form the natural order
  native_hw: tuple[int, int]
  label_key: str | None
  by_filename: bool  # recover the image-file order from TFDS's key hashes (celeb_a)
  how_to_prepare: str
  official_lengths: tuple[int, ...] | None
  image_key: str = "image"


_TFDS = {
    "celeb_a": _TfdsSpec(
        splits=("train", "validation", "test"), native_hw=(218, 178), label_key=None,
        by_filename=True,
        how_to_prepare=(
            "prepare it once with `tfds build celeb_a --data_dir={data_dir} "
            "--file_format=array_record` (building needs TensorFlow, `pip install "
            "tensorflow-cpu`; if Google Drive refuses the download, put img_align_celeba.zip, "
            "list_eval_partition.txt, list_attr_celeba.txt, list_landmarks_align_celeba.txt "
            "and identity_CelebA.txt in a folder and add --manual_dir=FOLDER)"),
        official_lengths=(162770, 19867, 19962)),
    "cifar10": _TfdsSpec(
        splits=("train", "test"), native_hw=(32, 32), label_key="label", by_filename=False,
        how_to_prepare=(
            "prepare it once with `tfds build cifar10 --data_dir={data_dir} "
            "--file_format=array_record` (building needs TensorFlow, `pip install "
            "tensorflow-cpu`)"),
        official_lengths=(50000, 10000)),
}


_HOW_TO_PREPARE = ("prepare it once with `tfds build {name} --data_dir={{data_dir}} "
                   "--file_format=array_record` (building needs TensorFlow, `pip install "
                   "tensorflow-cpu`)")
# Splits concatenated in this order for the natural order (others after, sorted by name).
_SPLIT_ORDER = ("train", "validation", "test")


def _tfds_spec(name: str, data_dir: str) -> _TfdsSpec:
  """How to read `name` ("celeb_a", "cifar10" or "tfds:NAME") from TFDS.

  celeb_a and cifar10 have fixed specs (the paper's order). Any other image dataset is
  described from its builder: the splits it has (train, validation, test first, then the
  others by name; train + test when the builder does not list them yet), the first Image
  feature ("image" when present), and the "label" ClassLabel when it has one.
  """
  tfds_name = name[len(TFDS_PREFIX):] if name.startswith(TFDS_PREFIX) else name
  if tfds_name in _TFDS:
    return _TFDS[tfds_name]
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.DataError(
        f"data.dataset = {name!r} needs tensorflow-datasets: pip install tensorflow-datasets "
        "(or the package's tfds extra)") from e
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir or None)
  except Exception as e:  # pylint: disable=broad-except  (DatasetNotFoundError and kin)
    raise errors.ConfigError("data.dataset", name,
                             f"a tensorflow-datasets name after {TFDS_PREFIX!r} "
                             f"({str(e).splitlines()[0]})") from None
  features = builder.info.features
  images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  if not images:
    raise errors.ConfigError("data.dataset", name,
                             f"an image dataset: {tfds_name} has no Image feature "
                             f"(features: {', '.join(features)})")
  image_key = "image" if "image" in images else images[0]
  shape = features[image_key].shape
  label = features["label"] if "label" in features else None
  label_key = "label" if isinstance(label, tfds.features.ClassLabel) else None
  listed = list(builder.info.splits)
  splits = ([s for s in _SPLIT_ORDER if s in listed]
            + sorted(s for s in listed if s not in _SPLIT_ORDER)) or ["train", "test"]
  return _TfdsSpec(splits=tuple(splits), native_hw=(shape[0], shape[1]), label_key=label_key,
                   by_filename=False, how_to_prepare=_HOW_TO_PREPARE.format(name=tfds_name),
                   official_lengths=None, image_key=image_key)


def _load_tfds(name, cfg, num_test, order_seed, max_pool, reference) -> Dataset:
  data_dir = _get(cfg, "tfds_data_dir", "") or ""
  if not isinstance(data_dir, str):
    raise errors.ConfigError("data.tfds_data_dir", data_dir, "a directory path ('' = TFDS default)")
  data_dir = os.path.expanduser(data_dir)
  spec = _tfds_spec(name, data_dir)
  if name.startswith(TFDS_PREFIX) and name[len(TFDS_PREFIX):] in _TFDS:
    name = name[len(TFDS_PREFIX):]  # "tfds:celeb_a" is celeb_a
  tfds_name = name[len(TFDS_PREFIX):] if name.startswith(TFDS_PREFIX) else name
  fixed = [v for v in spec.native_hw if v is not None]
  size = _get_int(cfg, "image_size", 32, minimum=1, maximum=min(fixed) if fixed else None,
                  extra=(f" ({name} images are {spec.native_hw[0]}x{spec.native_hw[1]}; "
                         "they are not upsampled)") if fixed else "")
  grayscale = _get(cfg, "grayscale", True)
  if not isinstance(grayscale, (bool, np.bool_)):
    raise errors.ConfigError("data.grayscale", grayscale, "True or False")
  grayscale = bool(grayscale)
  source = _open_tfds(tfds_name, spec, data_dir)
  natural = _natural_order(spec, source)
  total = len(natural.split)
  _check_num_test(num_test, total, name)
  order = np.arange(total)
  if order_seed >= 0:
    order = np.random.default_rng(order_seed).permutation(total)
  pool_idx, ref_idx, test_idx = _split(order, num_test, max_pool, reference)
  root = data_dir or _default_tfds_dir()
  cache = _BlockCache(root, tfds_name.replace("/", "-").replace(":", "-"), source, spec,
                      size, grayscale, natural.rule)
  n_pool = len(pool_idx)
  n_ref = 0 if ref_idx is None else len(ref_idx)
  images, labels = cache.gather(
      np.concatenate([pool_idx] + ([] if ref_idx is None else [ref_idx]) + [test_idx]), natural)
  pool_labels = test_labels = None
  if labels is not None:
    pool_labels, test_labels = labels[:n_pool], labels[n_pool + n_ref:]
  return Dataset(
      name=name, kind="image", pool=images[:n_pool], test=images[n_pool + n_ref:],
      reference=None if ref_idx is None else images[n_pool:n_pool + n_ref],
      pool_labels=pool_labels, test_labels=test_labels,
      metadata={"source": f"tfds:{tfds_name}", "version": source.version, "num_total": total,
                "split_lengths": dict(zip(spec.splits, source.lengths)),
                "order": natural.rule, "order_seed": order_seed, "image_size": size,
                "grayscale": grayscale, "pool_available": total - num_test,
                **_reference_metadata(ref_idx, total - num_test)})


def _default_tfds_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                      "tensorflow_datasets"))


class _TfdsSource:
  """The prepared splits of one TFDS dataset: random access (array_record) or a stream."""

  def __init__(self, splits: Sequence[Any], lengths: Sequence[int], version: str,
               shuffled: bool, random_access: bool):
    self._splits = list(splits)
    self.lengths = [int(n) for n in lengths]
    self.version = version
    self.shuffled = shuffled  # stored in md5(key) order (TFDS's default) or generation order
    self.random_access = random_access

  def get(self, split: int, positions: Sequence[int]) -> list[dict]:
    source = self._splits[split]
    return [source[int(p)] for p in positions]

  def stream(self, split: int) -> Iterator[dict]:
    return iter(self._splits[split]())


@contextlib.contextmanager
def _quiet_tfds():
  """TFDS's own warnings (absl's logger: "Variant folder ... has no dataset_info.json" twice
  for an unprepared dataset) off while jaxdiff looks for the data: it explains a missing
  dataset itself, in one line."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(max(level, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(level)


def _open_tfds(name, spec, data_dir) -> _TfdsSource:
  """Opens the prepared splits without downloading; a clear DataError when they are missing."""
  with _quiet_tfds():
    return _open_tfds_quietly(name, spec, data_dir)


def _open_tfds_quietly(name, spec, data_dir) -> _TfdsSource:
  shown_dir = data_dir or _default_tfds_dir()
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.DataError(
        f"data.dataset = {name!r} needs tensorflow-datasets: pip install tensorflow-datasets "
        "(or the package's tfds extra)") from e
  tfds_dir = data_dir or None
  try:
    sources = [tfds.data_source(name, split=s, data_dir=tfds_dir, download=False)
               for s in spec.splits]
  except Exception as e:  # pylint: disable=broad-except
    # Diagnosed below: not prepared (fail fast, never download) or prepared as TFRecord.
    failure = e
  else:
    info = getattr(sources[0], "dataset_info", None)
    return _TfdsSource(sources, [len(s) for s in sources], str(getattr(info, "version", "")),
                       shuffled=not getattr(info, "disable_shuffling", False),
                       random_access=True)
  builder = tfds.builder(name, data_dir=tfds_dir)
  where = (f"data.tfds_data_dir = {data_dir!r}" if data_dir else
           f"the TFDS default data_dir {shown_dir} (data.tfds_data_dir is empty)")
  if not builder.is_prepared():
    raise errors.DataError(
        f"TFDS dataset {name} is not prepared in {where}: "
        + spec.how_to_prepare.format(data_dir=shown_dir)
        + ", or set data.tfds_data_dir to the folder where it is prepared.") from failure
  if str(getattr(builder.info.file_format, "value", "")) == "tfrecord":
    if importlib.util.find_spec("tensorflow") is None:
      raise errors.DataError(
          f"TFDS dataset {name} in {where} is prepared as TFRecord, which only TensorFlow "
          "reads: pip install tensorflow-cpu, or rebuild it with "
          f"`tfds build {name} --data_dir={shown_dir} --file_format=array_record`.") from failure
    return _tfrecord_source(tfds, builder, spec)
  raise failure


def _tfrecord_source(tfds, builder, spec) -> _TfdsSource:
  """Sequential reading of TFRecord files through tf.data (needs TensorFlow)."""

  def opener(split):
    def stream():
      ds = builder.as_dataset(split=split, shuffle_files=False,
                              read_config=tfds.ReadConfig(interleave_cycle_length=1))
      return tfds.as_numpy(ds)
    return stream

  lengths = [builder.info.splits[s].num_examples for s in spec.splits]
  return _TfdsSource([opener(s) for s in spec.splits], lengths, str(builder.info.version),
                     shuffled=not builder.info.disable_shuffling, random_access=False)


@dataclasses.dataclass(frozen=True)
class _NaturalOrder:
  """Where natural item g is stored: split[g], position[g]; and the rule that was used."""

  split: np.ndarray
  position: np.ndarray
  rule: str


def _natural_order(spec: _TfdsSpec, source: _TfdsSource) -> _NaturalOrder:
  """Maps the natural order (splits concatenated, CelebA by file name) to stored positions.

  TFDS writes a split sorted by md5(split name + example key) (tfds.core.hashing; stable
  by design, changing it would bump every dataset's major version). The CelebA builder's
  keys are the file names 000001.jpg ... 202599.jpg and its splits are contiguous ranges
  of them (list_eval_partition: train, validation, test in that order). So the k-th file
  of a split sits at the rank of its key hash: sorting by hash recovers the authors'
  natsorted file order without a file-name feature.
  """
  if spec.official_lengths is not None and tuple(source.lengths) != spec.official_lengths:
    logging.warning("TFDS splits %s have %s examples, not the official %s%s.", spec.splits,
                    source.lengths, spec.official_lengths,
                    ": the file-name order assumes contiguous partitions of 000001.jpg..."
                    if spec.by_filename else "")
  splits, positions = [], []
  offset = 0
  for s, (split_name, length) in enumerate(zip(spec.splits, source.lengths)):
    pos = np.arange(length)
    if spec.by_filename and source.shuffled:
      salt = hashlib.md5(split_name.encode("utf-8"))
      hashes = []
      for k in range(offset + 1, offset + length + 1):
        h = salt.copy()
        h.update(f"{k:06d}.jpg".encode("utf-8"))
        hashes.append(h.hexdigest())
      pos = np.empty(length, np.int64)
      pos[np.argsort(np.asarray(hashes), kind="stable")] = np.arange(length)
    splits.append(np.full(length, s, np.int64))
    positions.append(pos)
    offset += length
  rule = "file name" if spec.by_filename else "tfds splits " + " + ".join(spec.splits)
  return _NaturalOrder(np.concatenate(splits), np.concatenate(positions), rule)


class _BlockCache:
  """Preprocessed images in natural order, cached as .npz blocks of _CACHE_BLOCK items."""

  def __init__(self, root, name, source, spec, size, grayscale, rule):
    self._source, self._spec = source, spec
    self._size, self._grayscale = size, grayscale
    self._channels = 1 if grayscale else 3
    key = {"dataset": name, "version": source.version, "lengths": source.lengths,
           "image_size": size, "grayscale": grayscale, "order": rule,
           "pipeline": _PIPELINE_VERSION, "block": _CACHE_BLOCK}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    self.directory = os.path.join(root, "jaxdiff_cache",
                                  f"{name}-{source.version or 'x'}-{size}px-"
                                  f"{'gray' if grayscale else 'rgb'}-{digest}")
    self._key = key
    self._total = sum(source.lengths)

  def _path(self, block):
    return os.path.join(self.directory, f"block-{block:05d}.npz")

  def _block_range(self, block):
    return block * _CACHE_BLOCK, min((block + 1) * _CACHE_BLOCK, self._total)

  def _read(self, block):
    """A cached block, or None when missing or unreadable (it is then rebuilt)."""
    try:
      with np.load(self._path(block)) as f:
        images = f["images"]
        labels = f["labels"] if "labels" in f.files else None
    except (OSError, ValueError, KeyError):
      return None
    start, stop = self._block_range(block)
    if images.shape != (stop - start, self._size, self._size, self._channels):
      return None
    return images, labels

  def _write(self, block, images, labels):
    buf = io.BytesIO()
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    np.savez(buf, **arrays)
    try:
      fileio.atomic_write_bytes(self._path(block), buf.getvalue())
      fileio.atomic_write_json(os.path.join(self.directory, "key.json"), self._key)
    except OSError as e:  # a read-only data_dir: carry on without a cache
      logging.warning("Could not write the image cache %s (%s); continuing without it.",
                      self.directory, e)

  def gather(self, indices: np.ndarray, natural: _NaturalOrder):
    """Images [len(indices), S, S, C] (and labels) of the given natural indices."""
    indices = np.asarray(indices, np.int64)
    needed = np.unique(indices // _CACHE_BLOCK)
    blocks = {}
    for b in needed:
      got = self._read(int(b))
      if got is not None:
        blocks[int(b)] = got
    missing = [int(b) for b in needed if int(b) not in blocks]
    if missing:
      blocks.update(self._decode(missing, natural))
    has_labels = self._spec.label_key is not None
    images = np.empty((len(indices), self._size, self._size, self._channels), np.float32)
    labels = np.empty((len(indices),), np.int32) if has_labels else None
    for b, (block_images, block_labels) in blocks.items():
      sel = np.nonzero(indices // _CACHE_BLOCK == b)[0]
      local = indices[sel] - b * _CACHE_BLOCK
      images[sel] = block_images[local]
      if has_labels:
        labels[sel] = block_labels[local]
    return images, labels

  def _decode(self, missing: list[int], natural: _NaturalOrder) -> dict:
    """Decodes and preprocesses the missing blocks, writing each to the cache."""
    import tqdm  # pylint: disable=g-import-not-at-top

    count = sum(stop - start for start, stop in map(self._block_range, missing))
    logging.info("Decoding %d images of %s into %s", count, self._key["dataset"], self.directory)
    if not self._source.random_access:
      # A sequential source is read once in full; every block is then cached.
      missing = list(range(-(-self._total // _CACHE_BLOCK)))
      count = self._total
    out = {}
    with tqdm.tqdm(total=count, desc=f"preprocessing {self._key['dataset']}", unit="img",
                   mininterval=2.0) as bar:
      if self._source.random_access:
        workers = min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
          for b in missing:
            start, stop = self._block_range(b)
            chunks = [np.arange(i, min(i + _DECODE_CHUNK, stop))
                      for i in range(start, stop, _DECODE_CHUNK)]
            parts = []
            for part in pool.map(lambda c: self._decode_natural(c, natural), chunks):
              parts.append(part)
              bar.update(len(part[0]))
            images = np.concatenate([p[0] for p in parts])
            labels = (np.concatenate([p[1] for p in parts])
                      if self._spec.label_key else None)
            self._write(b, images, labels)
            out[b] = (images, labels)
      else:
        images, labels = self._decode_stream(natural, bar)
        for b in missing:
          start, stop = self._block_range(b)
          block_labels = None if labels is None else labels[start:stop]
          self._write(b, images[start:stop], block_labels)
          out[b] = (images[start:stop], block_labels)
    return out

  def _preprocess(self, examples: list[dict]):
    """float32 images (grouped by input size, order kept) and int32 labels of examples."""
    images = np.empty((len(examples), self._size, self._size, self._channels), np.float32)
    shapes = [np.shape(ex[self._spec.image_key]) for ex in examples]
    for shape in set(shapes):
      sel = [i for i, s in enumerate(shapes) if s == shape]
      batch = np.stack([examples[i][self._spec.image_key] for i in sel])
      if batch.ndim == 3:  # [B, H, W] single-channel
        batch = batch[..., None]
      images[sel] = preprocess_images(batch, self._size, self._grayscale)
    labels = None
    if self._spec.label_key:
      labels = np.asarray([ex[self._spec.label_key] for ex in examples], np.int32)
    return images, labels

  def _decode_natural(self, natural_indices, natural: _NaturalOrder):
    splits = natural.split[natural_indices]
    positions = natural.position[natural_indices]
    examples = [None] * len(natural_indices)
    for s in np.unique(splits):
      sel = np.nonzero(splits == s)[0]
      for i, ex in zip(sel, self._source.get(int(s), positions[sel])):
        examples[i] = ex
    return self._preprocess(examples)

  def _decode_stream(self, natural: _NaturalOrder, bar):
    """Reads every split in stored order and places each item at its natural index."""
    images = np.empty((self._total, self._size, self._size, self._channels), np.float32)
    labels = np.empty((self._total,), np.int32) if self._spec.label_key else None
    to_natural = {}
    for s in range(len(self._source.lengths)):
      sel = np.nonzero(natural.split == s)[0]
      inverse = np.empty(len(sel), np.int64)
      inverse[natural.position[sel]] = sel
      to_natural[s] = inverse
    for s in range(len(self._source.lengths)):
      batch, start = [], 0
      for ex in self._source.stream(s):
        batch.append(ex)
        if len(batch) == _DECODE_CHUNK:
          start = self._place(batch, to_natural[s], start, images, labels, bar)
          batch = []
      if batch:
        start = self._place(batch, to_natural[s], start, images, labels, bar)
      if start != self._source.lengths[s]:
        raise errors.DataError(
            f"TFDS split {self._spec.splits[s]} of {self._key['dataset']} yielded {start} "
            f"examples where its dataset_info.json says {self._source.lengths[s]}: "
            "rebuild the dataset with `tfds build`.")
    return images, labels

  def _place(self, batch, to_natural, start, images, labels, bar):
    target = to_natural[start:start + len(batch)]
    batch_images, batch_labels = self._preprocess(batch)
    images[target] = batch_images
    if labels is not None:
      labels[target] = batch_labels
    bar.update(len(batch))
    return start + len(batch)
