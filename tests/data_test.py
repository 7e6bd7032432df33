"""Tests of jaxdiff.data: orders, splits, preprocessing on known pixels, caching.

CelebA and CIFAR-10 are exercised offline: through `tfds.testing.mock_data` with our own
examples (known pixel values), and through a tiny CelebA written by TFDS's real CelebA
builder from fake raw files, which checks the file-name order against TFDS's own writer.
"""

import hashlib
import importlib.util
import io
import json
import os
import time
import zipfile
from unittest import mock

import ml_collections
import numpy as np
import pytest
from sklearn import datasets as sk_datasets

from jaxdiff import data as data_lib
from jaxdiff import errors
from jaxdiff.data import preprocess
from jaxdiff.data import tfds_images

_BASE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                     "base.py")


def _data_config(**overrides) -> ml_collections.ConfigDict:
  """configs/base.py's data block (the real key names) with overrides."""
  spec = importlib.util.spec_from_file_location("jaxdiff_base_config", _BASE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  data = module.get_config().data
  for key, value in overrides.items():
    data[key] = value
  return data


# ---------------------------------------------------------------------- digits


def test_digits_shapes_range_and_natural_order():
  raw = sk_datasets.load_digits()
  data = data_lib.load_dataset(_data_config(dataset="digits", image_size=8, num_test=500))
  assert data.kind == "image"
  assert data.pool.shape == (1297, 8, 8, 1) and data.test.shape == (500, 8, 8, 1)
  assert data.pool.dtype == np.float32 and data.test.dtype == np.float32
  assert data.pool.min() == 0.0 and data.pool.max() == 1.0
  # order_seed = -1 keeps scikit-learn's order; the test set is its end.
  np.testing.assert_array_equal(data.pool[..., 0] * 16, raw.images[:1297])
  np.testing.assert_array_equal(data.test[..., 0] * 16, raw.images[1297:])
  np.testing.assert_array_equal(data.pool_labels, raw.target[:1297])
  np.testing.assert_array_equal(data.test_labels, raw.target[1297:])
  assert data.metadata["pool_available"] == 1297


def test_digits_seeded_order_is_a_fixed_permutation():
  raw = sk_datasets.load_digits()
  cfg = _data_config(dataset="digits", image_size=8, num_test=500, order_seed=0)
  a = data_lib.load_dataset(cfg)
  b = data_lib.load_dataset(cfg)
  np.testing.assert_array_equal(a.pool, b.pool)
  np.testing.assert_array_equal(a.test, b.test)
  other = data_lib.load_dataset(
      _data_config(dataset="digits", image_size=8, num_test=500, order_seed=1))
  assert not np.array_equal(a.pool, other.pool)
  assert not np.array_equal(a.pool[..., 0] * 16, raw.images[:1297])
  # Pool + test is a permutation of all 1797 digits, labels kept with their images.
  labels_of = {}
  for image, label in zip(raw.images, raw.target):
    labels_of.setdefault(image.astype(np.uint8).tobytes(), set()).add(int(label))
  together = np.concatenate([a.pool, a.test])[..., 0] * 16
  together_labels = np.concatenate([a.pool_labels, a.test_labels])
  assert sorted(x.astype(np.uint8).tobytes() for x in together) == sorted(
      x.astype(np.uint8).tobytes() for x in raw.images)
  for image, label in zip(together, together_labels):
    assert int(label) in labels_of[image.astype(np.uint8).tobytes()]
  # max_pool keeps the first images of the same order; the test set does not move.
  head = data_lib.load_dataset(cfg, max_pool=100)
  np.testing.assert_array_equal(head.pool, a.pool[:100])
  np.testing.assert_array_equal(head.test, a.test)
  assert head.metadata["pool_available"] == 1297


@pytest.mark.parametrize("key,value,needle", [
    ("image_size", 32, "data.image_size"),
    ("grayscale", False, "data.grayscale"),
    ("num_test", 0, "data.num_test"),
    ("num_test", 1797, "[1, 1796]"),
    ("order_seed", -2, "data.order_seed"),
])
def test_digits_config_errors(key, value, needle):
  cfg = _data_config(dataset="digits", image_size=8, num_test=500)
  cfg[key] = value
  with pytest.raises(errors.ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
    data_lib.load_dataset(cfg)


def test_unknown_dataset_lists_the_allowed_ones():
  with pytest.raises(errors.ConfigError) as info:
    data_lib.load_dataset(_data_config(dataset="mnist"))
  message = str(info.value)
  assert "data.dataset" in message and "'mnist'" in message
  for source in data_lib.registered():
    assert source.name in message
  assert "tfds:NAME" in message  # "mnist" alone is not a name; "tfds:mnist" is


# ---------------------------------------------------------------------- gmm, gaussian


def test_gmm_moments_and_determinism():
  d, mu = 8, 1.5
  cfg = _data_config(dataset="gmm", dim=d, gmm_mean=mu, pool_size=40000, num_test=3000)
  data = data_lib.load_dataset(cfg)
  assert data.kind == "vector"
  assert data.pool.shape == (40000, d) and data.test.shape == (3000, d)
  assert data.pool.dtype == np.float32
  np.testing.assert_allclose(data.metadata["mean"], np.full(d, mu))
  x, labels = data.pool.astype(np.float64), data.pool_labels
  assert abs(labels.mean() - 0.5) < 0.01
  # Each component is N(+-mu 1_d, I): conditional means and covariances.
  for label, sign in ((1, 1.0), (0, -1.0)):
    part = x[labels == label]
    np.testing.assert_allclose(part.mean(0), sign * mu * np.ones(d), atol=0.04)
    np.testing.assert_allclose(np.cov(part.T), np.eye(d), atol=0.05)
  # Mixture moments: mean 0, covariance I + mu^2 1 1^T.
  np.testing.assert_allclose(x.mean(0), 0.0, atol=0.05)
  np.testing.assert_allclose(np.cov(x.T), np.eye(d) + mu**2 * np.ones((d, d)), atol=0.1)
  # Same seed, same points; max_pool is a prefix; the test points do not depend on the pool.
  again = data_lib.load_dataset(cfg)
  np.testing.assert_array_equal(again.pool, data.pool)
  head = data_lib.load_dataset(cfg, max_pool=100)
  np.testing.assert_array_equal(head.pool, data.pool[:100])
  np.testing.assert_array_equal(head.pool_labels, data.pool_labels[:100])
  smaller = data_lib.load_dataset(
      _data_config(dataset="gmm", dim=d, gmm_mean=mu, pool_size=500, num_test=3000))
  np.testing.assert_array_equal(smaller.pool, data.pool[:500])
  np.testing.assert_array_equal(smaller.test, data.test)
  other = data_lib.load_dataset(
      _data_config(dataset="gmm", dim=d, gmm_mean=mu, pool_size=500, num_test=10, order_seed=3))
  assert not np.array_equal(other.pool, data.pool[:500])


def test_gaussian_covariance_spectrum():
  d = 40
  cfg = _data_config(dataset="gaussian", dim=d, cov_eigs=(0.5, 2.0), cov_weights=(0.25, 0.75),
                     pool_size=20000, num_test=16)
  data = data_lib.load_dataset(cfg)
  assert data.pool.shape == (20000, d) and data.pool_labels is None
  expected = np.array([0.5] * 10 + [2.0] * 30)
  np.testing.assert_allclose(data.metadata["cov_eigs"], expected)
  x = data.pool.astype(np.float64)
  np.testing.assert_allclose(x.mean(0), 0.0, atol=0.05)
  eigs = np.linalg.eigvalsh(x.T @ x / len(x))
  # Sample eigenvalues of a 40-d covariance from 20000 points are within ~5% (Marchenko-Pastur).
  np.testing.assert_allclose(eigs, np.sort(expected), rtol=0.1)
  assert abs(np.mean(eigs) - expected.mean()) < 0.02


@pytest.mark.parametrize("overrides,key", [
    ({"cov_eigs": (1.0, 2.0), "cov_weights": (0.5, 0.4)}, "data.cov_weights"),
    ({"cov_eigs": (1.0, 2.0), "cov_weights": (1 / 3, 2 / 3)}, "data.cov_weights"),
    ({"cov_eigs": (1.0, -2.0), "cov_weights": (0.5, 0.5)}, "data.cov_eigs"),
    ({"cov_eigs": (1.0, 2.0), "cov_weights": (1.0,)}, "data.cov_weights"),
    ({"dim": 0}, "data.dim"),
    ({"pool_size": 0}, "data.pool_size"),
])
def test_gaussian_config_errors(overrides, key):
  cfg = _data_config(dataset="gaussian", dim=8, pool_size=100, num_test=10)
  for k, v in overrides.items():
    cfg[k] = v
  with pytest.raises(errors.ConfigError, match=key):
    data_lib.load_dataset(cfg)


def test_gmm_bad_mean():
  with pytest.raises(errors.ConfigError, match="data.gmm_mean"):
    data_lib.load_dataset(
        _data_config(dataset="gmm", gmm_mean=float("nan"), pool_size=10, num_test=2))


# ---------------------------------------------------------------------- subsets, centering


def test_check_subsets():
  data = data_lib.load_dataset(_data_config(dataset="digits", image_size=8, num_test=500))
  data_lib.check_subsets(data, (128, 1024), (0,))
  data_lib.check_subsets(data, (128, 256), (0, 4))  # 5 * 256 = 1280 <= 1297
  data_lib.check_subsets(data, (1000,), (0,), reserve=297)
  with pytest.raises(errors.ConfigError, match=r"data\.n_train.*1297") as info:
    data_lib.check_subsets(data, (128, 2048), (0,))
  assert "digits" in str(info.value)
  with pytest.raises(errors.ConfigError, match=r"data\.index.*1297"):
    data_lib.check_subsets(data, (128, 1024), (0, 1))
  with pytest.raises(errors.ConfigError, match=r"data\.n_train"):
    data_lib.check_subsets(data, (1000,), (0,), reserve=298)
  with pytest.raises(errors.ConfigError, match=r"data\.n_train"):
    data_lib.check_subsets(data, (0, 8), (0,))
  with pytest.raises(errors.ConfigError, match=r"data\.index"):
    data_lib.check_subsets(data, (8,), (-1,))


def test_train_mean():
  rng = np.random.default_rng(0)
  gray = rng.random((5, 4, 4, 1)).astype(np.float32)
  mean = data_lib.train_mean(gray)
  assert mean.shape == (1,)
  np.testing.assert_allclose(mean, [gray.astype(np.float64).mean()], rtol=1e-6)
  rgb = np.zeros((2, 3, 3, 3), np.float32)
  rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.2, 0.5, 1.0
  rgb[1, ..., 0] = 0.4
  np.testing.assert_allclose(data_lib.train_mean(rgb), [0.3, 0.5, 1.0], rtol=1e-6)
  vectors = np.array([[1.0, 3.0], [5.0, 7.0]], np.float32)
  mean = data_lib.train_mean(vectors)
  assert mean.shape == () and float(mean) == 4.0
  with pytest.raises(ValueError):
    data_lib.train_mean(np.zeros((2, 3, 3)))


# ---------------------------------------------------------------------- image preprocessing


def test_resize_matrices_on_hand_computed_values():
  # 32 -> 16: a factor 2, whose antialiased triangle filter weighs input pixels
  # 2i-1, 2i, 2i+1, 2i+2 by 1, 3, 3, 1 (/8); at the borders the missing pixel drops
  # out and the weights renormalise to 3, 3, 1 (/7).
  rows, cols = preprocess.resize_crop_matrices(32, 32, 16)
  np.testing.assert_allclose(rows, cols)
  np.testing.assert_allclose(rows[0, :3], np.array([3, 3, 1]) / 7, rtol=1e-6)
  np.testing.assert_allclose(rows[5, 9:13], np.array([1, 3, 3, 1]) / 8, rtol=1e-6)
  np.testing.assert_allclose(rows[15, 29:], np.array([1, 3, 3]) / 7, rtol=1e-6)
  np.testing.assert_allclose(rows.sum(1), 1.0, rtol=1e-6)
  # Same size: identity.
  rows, cols = preprocess.resize_crop_matrices(8, 8, 8)
  np.testing.assert_array_equal(rows, np.eye(8))
  # 218 x 178 -> 39 x 32 (int(32 * 218 / 178) = 39), rows 4..35 kept (round(3.5) = 4).
  # Output row i is centred at input row (i + 1/2) s - 1/2, s = 218/39, and reaches
  # input rows j with |j + 1/2 - (i + 1/2) s| < s: row 4 starts at j = 20 (3.5 s = 19.56),
  # row 35 ends at j = 203 (36.5 s = 204.03). A crop off by one row would reach 14 or 209.
  rows, cols = preprocess.resize_crop_matrices(218, 178, 32)
  assert rows.shape == (32, 218) and cols.shape == (32, 178)
  assert np.all(rows[:, :20] == 0) and np.all(rows[:, 204:] == 0)
  assert rows[0, 20] > 0 and rows[-1, 203] > 0
  # Columns 178 -> 32 are not cropped: the first and last reach the image borders.
  assert cols[0, 0] > 0 and cols[-1, -1] > 0
  np.testing.assert_allclose(rows.sum(1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(cols.sum(1), 1.0, rtol=1e-6)
  # Wide images crop the columns instead.
  rows, cols = preprocess.resize_crop_matrices(10, 30, 10)
  np.testing.assert_array_equal(rows, np.eye(10))
  np.testing.assert_array_equal(cols, np.eye(30)[10:20])


def test_preprocess_grayscale_and_range():
  image = np.zeros((1, 4, 4, 3), np.uint8)
  image[..., 0] = 255  # pure red
  out = preprocess.preprocess_images(image, 4, grayscale=True)
  assert out.shape == (1, 4, 4, 1) and out.dtype == np.float32
  np.testing.assert_allclose(out, 0.2989, rtol=1e-6)
  image = np.full((1, 4, 4, 3), 255, np.uint8)  # white stays 1 (weights sum to 0.9999)
  np.testing.assert_allclose(preprocess.preprocess_images(image, 2, True), 0.9999, rtol=1e-6)
  rgb = preprocess.preprocess_images(np.full((2, 6, 6, 3), 51, np.uint8), 3, False)
  assert rgb.shape == (2, 3, 3, 3)
  np.testing.assert_allclose(rgb, 0.2, rtol=1e-6)


@pytest.mark.torch
@pytest.mark.slow
def test_preprocess_matches_torchvision():
  import torch  # pylint: disable=g-import-not-at-top
  from torchvision import transforms  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  for h, w, size in [(218, 178, 32), (32, 32, 32), (32, 32, 16), (50, 77, 13), (20, 30, 25)]:
    images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    for gray in (True, False):
      # The authors' chain: ToTensor -> Resize -> CenterCrop -> Grayscale.
      chain = transforms.Compose([transforms.Resize(size, antialias=True),
                                  transforms.CenterCrop(size)]
                                 + ([transforms.Grayscale(1)] if gray else []))
      expected = chain(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
      np.testing.assert_allclose(preprocess.preprocess_images(images, size, gray),
                                 expected.permute(0, 2, 3, 1).numpy(), atol=2e-6)


# ---------------------------------------------------------------------- TFDS (mocked)

_CELEBA_SPLITS = {"train": 6, "validation": 3, "test": 3}  # 12 files, contiguous ranges


def _celeba_pattern(code: int) -> np.ndarray:
  """218 x 178 image: R and G vary over rows and columns, B = code (constant)."""
  r, c = np.arange(218)[:, None], np.arange(178)[None, :]
  image = np.empty((218, 178, 3), np.uint8)
  image[..., 0] = (37 * r + 11 * c) % 256
  image[..., 1] = (7 * r * c) % 256
  image[..., 2] = code
  return image


def _celeba_reference(code: int, grayscale: bool) -> np.ndarray:
  """Resize(32) + CenterCrop(32) of _celeba_pattern(code) by another implementation.

  jax.image.resize (antialiased linear) to 39 x 32 (int(32 * 218 / 178) = 39), then the
  rows 4..35 (round((39 - 32) / 2) = 4); grayscale by hand with torchvision's weights.
  """
  import jax  # pylint: disable=g-import-not-at-top

  x = _celeba_pattern(code).astype(np.float64) / 255
  if grayscale:
    x = x @ np.array([0.2989, 0.587, 0.114])[:, None]
  resized = jax.image.resize(x.astype(np.float32), (39, 32, x.shape[-1]), method="linear",
                             antialias=True)
  return np.asarray(resized)[4:36]


def _hash_order(split: str, keys):
  """Keys in the order TFDS stores them: by md5(split name + key)."""
  return sorted(keys, key=lambda k: hashlib.md5((split + k).encode()).hexdigest())


def _mock_celeba_examples():
  """Per split, the examples in TFDS's stored order; file k (0-based) has B = 10 k."""
  examples, offset = {}, 0
  for split, length in _CELEBA_SPLITS.items():
    keys = [f"{k:06d}.jpg" for k in range(offset + 1, offset + length + 1)]
    examples[split] = [{"image": _celeba_pattern(10 * (int(key[:6]) - 1))}
                       for key in _hash_order(split, keys)]
    offset += length
  return examples


class _CountingList(list):
  """A random-access data source that counts its reads."""

  reads = 0

  def __getitem__(self, i):
    _CountingList.reads += 1
    return list.__getitem__(self, i)


def _mock_source(examples):
  def as_data_source(builder, split=None, **kwargs):
    del builder, kwargs
    return _CountingList(examples[split])
  return as_data_source


def test_celeba_mock_order_pixels_crop_and_centering(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")

  monkeypatch.setattr(tfds_images, "CACHE_BLOCK", 4)
  cfg = _data_config(dataset="celeb_a", image_size=32, grayscale=True, num_test=2,
                     tfds_data_dir=str(tmp_path))
  with tfds.testing.mock_data(as_data_source_fn=_mock_source(_mock_celeba_examples())):
    data = data_lib.load_dataset(cfg)
  assert data.pool.shape == (10, 32, 32, 1) and data.test.shape == (2, 32, 32, 1)
  assert data.pool_labels is None and data.metadata["order"] == "file name"
  # Pixels: the pattern of file k (B = 10 k) resized and cropped, in file order across
  # train, validation and test; the test set is the last two files.
  images = np.concatenate([data.pool, data.test])
  for k, image in enumerate(images):
    np.testing.assert_allclose(image, _celeba_reference(10 * k, True), atol=2e-5)
  # The training mean of the first n = 4 images equals the by-hand luma offset of B.
  base = _celeba_reference(0, True).mean()
  expected_mean = base + 0.114 * np.mean([0, 10, 20, 30]) / 255
  np.testing.assert_allclose(data_lib.train_mean(data.pool[:4]), [expected_mean],
                             rtol=1e-5)
  # The pool itself stays in [0, 1]: centering is the trainer's, and no [-1, 1] rescale.
  assert 0.0 <= data.pool.min() and data.pool.max() <= 1.0 and data.pool.max() > 0.5


def test_celeba_mock_rgb_and_cache_round_trip(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")

  monkeypatch.setattr(tfds_images, "CACHE_BLOCK", 4)
  cfg = _data_config(dataset="celeb_a", image_size=32, grayscale=False, num_test=2,
                     tfds_data_dir=str(tmp_path))
  source = _mock_source(_mock_celeba_examples())
  _CountingList.reads = 0
  with tfds.testing.mock_data(as_data_source_fn=source):
    head = data_lib.load_dataset(cfg, max_pool=3)
  # Natural items 0..2 and 10..11 were needed: blocks 0 and 2 (of 4 items) were decoded.
  assert _CountingList.reads == 8
  assert head.pool.shape == (3, 32, 32, 3)
  np.testing.assert_allclose(head.pool[1], _celeba_reference(10, False), atol=2e-5)
  np.testing.assert_allclose(head.pool[:, 0, 0, 2], np.array([0, 10, 20]) / 255, atol=1e-6)
  np.testing.assert_allclose(head.test[:, 0, 0, 2], np.array([100, 110]) / 255, atol=1e-6)
  cache_dirs = os.listdir(tmp_path / "jaxdiff_cache")
  assert len(cache_dirs) == 1 and "rgb" in cache_dirs[0]
  assert sorted(os.listdir(tmp_path / "jaxdiff_cache" / cache_dirs[0])) == [
      "block-00000.npz", "block-00002.npz", "key.json"]
  # The full pool decodes only the missing block; a repeat reads nothing.
  _CountingList.reads = 0
  with tfds.testing.mock_data(as_data_source_fn=source):
    full = data_lib.load_dataset(cfg)
  assert _CountingList.reads == 4
  np.testing.assert_array_equal(full.pool[:3], head.pool)
  np.testing.assert_array_equal(full.test, head.test)
  np.testing.assert_allclose(full.pool[:, 0, 0, 2], 10 * np.arange(10) / 255, atol=1e-6)
  _CountingList.reads = 0
  with tfds.testing.mock_data(as_data_source_fn=source):
    again = data_lib.load_dataset(cfg)
  assert _CountingList.reads == 0
  np.testing.assert_array_equal(again.pool, full.pool)
  # A corrupt block is rebuilt, not trusted.
  block = tmp_path / "jaxdiff_cache" / cache_dirs[0] / "block-00001.npz"
  block.write_bytes(b"garbage")
  with tfds.testing.mock_data(as_data_source_fn=source):
    repaired = data_lib.load_dataset(cfg)
  assert _CountingList.reads == 4
  np.testing.assert_array_equal(repaired.pool, full.pool)
  # A different size is a different cache.
  with tfds.testing.mock_data(as_data_source_fn=source):
    small = data_lib.load_dataset(
        _data_config(dataset="celeb_a", image_size=16, grayscale=False, num_test=2,
                     tfds_data_dir=str(tmp_path)))
  assert small.pool.shape == (10, 16, 16, 3)
  assert len(os.listdir(tmp_path / "jaxdiff_cache")) == 2


def _cifar_examples(split, count, first_label):
  """32x32 images: R = 8 * row, G = label code, B = 255 - 8 * column."""
  examples = []
  for i in range(count):
    image = np.empty((32, 32, 3), np.uint8)
    image[..., 0] = 8 * np.arange(32)[:, None]
    image[..., 1] = 20 * (first_label + i)
    image[..., 2] = 255 - 8 * np.arange(32)[None, :]
    examples.append({"image": image, "label": np.int64(first_label + i), "id": f"{split}_{i}"})
  return examples


def test_cifar10_mock_order_labels_and_resize(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")

  examples = {"train": _cifar_examples("train", 5, 0), "test": _cifar_examples("test", 3, 5)}
  cfg = _data_config(dataset="cifar10", image_size=16, grayscale=False, num_test=2,
                     tfds_data_dir=str(tmp_path))
  with tfds.testing.mock_data(as_data_source_fn=_mock_source(examples)):
    data = data_lib.load_dataset(cfg)
  # Train split then test split, in stored order; the test set is the last two images.
  np.testing.assert_array_equal(data.pool_labels, [0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(data.test_labels, [6, 7])
  assert data.pool.shape == (6, 16, 16, 3)
  np.testing.assert_allclose(data.pool[:, 3, 3, 1], 20 * np.arange(6) / 255, atol=1e-6)
  # 32 -> 16 by hand: interior rows average pixels 2i-1..2i+2 with weights 1,3,3,1 (/8),
  # which keeps a ramp 8 r at 8 (2i + 1/2); the border rows use 3,3,1 (/7).
  expected = 8 * (2 * np.arange(16) + 0.5)
  expected[0], expected[15] = 8 * (3 * 1 + 1 * 2) / 7, 8 * (29 + 3 * 30 + 3 * 31) / 7
  np.testing.assert_allclose(data.pool[2, :, 7, 0], expected / 255, rtol=1e-5)
  np.testing.assert_allclose(data.pool[2, 7, :, 2], (255 - expected) / 255, rtol=1e-5)
  # Grayscale at the native size is the luma of each pixel, untouched by the resize.
  with tfds.testing.mock_data(as_data_source_fn=_mock_source(examples)):
    gray = data_lib.load_dataset(
        _data_config(dataset="cifar10", image_size=32, grayscale=True, num_test=2,
                     tfds_data_dir=str(tmp_path)))
  r, c = np.arange(32)[:, None], np.arange(32)[None, :]
  luma = (0.2989 * 8 * r + 0.587 * 20 * 7 + 0.114 * (255 - 8 * c)) / 255
  np.testing.assert_allclose(gray.test[1, ..., 0], luma, rtol=1e-5)
  with pytest.raises(errors.ConfigError, match=r"data\.image_size.*not upsampled"):
    data_lib.load_dataset(_data_config(dataset="cifar10", image_size=64,
                                             tfds_data_dir=str(tmp_path)))
  with tfds.testing.mock_data(as_data_source_fn=_mock_source(examples)):
    with pytest.raises(errors.ConfigError, match=r"data\.num_test.*\[1, 7\]"):
      data_lib.load_dataset(_data_config(dataset="cifar10", num_test=8,
                                               tfds_data_dir=str(tmp_path)))


def test_tfds_default_mock_data(tmp_path):
  """The plain mock (random examples through a mocked ArrayRecordDataSource) loads too."""
  tfds = pytest.importorskip("tensorflow_datasets")

  with tfds.testing.mock_data(num_examples=4):
    data = data_lib.load_dataset(
        _data_config(dataset="celeb_a", num_test=3, tfds_data_dir=str(tmp_path)))
    cifar = data_lib.load_dataset(
        _data_config(dataset="cifar10", num_test=3, grayscale=False,
                     tfds_data_dir=str(tmp_path)))
  assert data.pool.shape == (9, 32, 32, 1) and data.metadata["version"] == "2.1.0"
  assert 0.0 <= data.pool.min() and data.pool.max() <= 1.0 and data.pool.std() > 0.01
  assert cifar.pool.shape == (5, 32, 32, 3) and cifar.pool_labels.shape == (5,)


# ---------------------------------------------------------------------- TFDS (real files)


@pytest.mark.parametrize("name", ["celeb_a", "cifar10"])
def test_missing_data_fails_fast_with_instructions(tmp_path, name):
  empty = tmp_path / "empty"
  empty.mkdir()
  start = time.monotonic()
  with pytest.raises(errors.DataError) as info:
    data_lib.load_dataset(_data_config(dataset=name, tfds_data_dir=str(empty)))
  assert time.monotonic() - start < 10
  message = str(info.value)
  assert f"tfds build {name} --data_dir={empty}" in message
  assert "data.tfds_data_dir" in message and "array_record" in message
  if name == "celeb_a":
    assert "--manual_dir" in message
  assert not (empty / "jaxdiff_cache").exists()


def _build_fake_celeba(data_dir, raw_dir, partitions, num_shards=None,
                       file_format="array_record"):
  """Runs TFDS's CelebA builder on fake raw files (image k is gray level 20 k)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder as celeb_a

  names = [f"{k:06d}.jpg" for k in range(1, len(partitions) + 1)]
  paths = {key: os.path.join(raw_dir, key) for key in (
      "img_align_celeba", "list_eval_partition", "list_attr_celeba", "landmarks_celeba",
      "identity_celeba")}
  with zipfile.ZipFile(paths["img_align_celeba"], "w") as archive:
    for k, name in enumerate(names):
      buf = io.BytesIO()
      Image.fromarray(np.full((218, 178, 3), 20 * k, np.uint8)).save(buf, format="JPEG")
      archive.writestr("img_align_celeba/" + name, buf.getvalue())
  with open(paths["list_eval_partition"], "w") as f:
    f.writelines(f"{name} {p}\n" for name, p in zip(names, partitions))
  for key, headings in (("list_attr_celeba", celeb_a.ATTR_HEADINGS),
                        ("landmarks_celeba", celeb_a.LANDMARK_HEADINGS)):
    with open(paths[key], "w") as f:
      f.write(f"{len(names)}\n{' '.join(headings)}\n")
      f.writelines(f"{name} {' '.join(['1'] * len(headings))}\n" for name in names)
  with open(paths["identity_celeba"], "w") as f:
    f.writelines(f"{name} {k}\n" for k, name in enumerate(names))

  def iter_archive(self, path):
    del self
    with zipfile.ZipFile(path) as archive:
      for member in archive.namelist():
        yield member, io.BytesIO(archive.read(member))

  builder = tfds.builder("celeb_a", data_dir=str(data_dir), file_format=file_format)
  # Offline: the "downloads" are the local files; TFDS's zip reader needs TensorFlow.
  with mock.patch.object(tfds.download.DownloadManager, "download",
                         lambda self, urls: paths), \
       mock.patch.object(tfds.download.DownloadManager, "iter_archive", iter_archive):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=num_shards))


def test_celeba_built_by_tfds_is_read_in_file_order(tmp_path):
  data_dir, raw_dir = tmp_path / "tfds", tmp_path / "raw"
  raw_dir.mkdir()
  _build_fake_celeba(data_dir, raw_dir, [0] * 7 + [1] * 3 + [2] * 3, num_shards=2)
  cfg = _data_config(dataset="celeb_a", image_size=8, num_test=3, tfds_data_dir=str(data_dir))
  data = data_lib.load_dataset(cfg)
  levels = np.concatenate([data.pool, data.test]).mean(axis=(1, 2, 3)) * 255
  # The grey level of a JPEG of a constant image survives to within a few units.
  np.testing.assert_allclose(levels, 20 * np.arange(13) * 0.9999, atol=3)
  assert data.metadata["split_lengths"] == {"train": 7, "validation": 3, "test": 3}
  # The cache answers the second load without the TFDS files.
  for path in (data_dir / "celeb_a").rglob("*.array_record*"):
    path.unlink()
  again = data_lib.load_dataset(cfg)
  np.testing.assert_array_equal(again.pool, data.pool)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed: TFRecord data are readable")
def test_tfrecord_data_without_tensorflow_says_what_to_do(tmp_path):
  data_dir, raw_dir = tmp_path / "tfds", tmp_path / "raw"
  raw_dir.mkdir()
  _build_fake_celeba(data_dir, raw_dir, [0, 0, 1, 2])
  # Pretend the dataset was prepared in TFDS's default TFRecord format.
  (info_path,) = (data_dir / "celeb_a").rglob("dataset_info.json")
  info = json.loads(info_path.read_text())
  info["fileFormat"] = "tfrecord"
  info_path.write_text(json.dumps(info))
  with pytest.raises(errors.DataError, match=r"TFRecord.*tensorflow-cpu.*array_record"):
    data_lib.load_dataset(
        _data_config(dataset="celeb_a", num_test=1, tfds_data_dir=str(data_dir)))


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="needs TensorFlow to write and read TFRecord files")
def test_tfrecord_data_are_read_in_file_order_with_tensorflow(tmp_path):
  data_dir, raw_dir = tmp_path / "tfds", tmp_path / "raw"
  raw_dir.mkdir()
  _build_fake_celeba(data_dir, raw_dir, [0] * 7 + [1] * 3 + [2] * 3, num_shards=2,
                     file_format="tfrecord")
  data = data_lib.load_dataset(
      _data_config(dataset="celeb_a", image_size=8, num_test=3, tfds_data_dir=str(data_dir)),
      max_pool=4)
  levels = np.concatenate([data.pool, data.test]).mean(axis=(1, 2, 3)) * 255
  np.testing.assert_allclose(levels, 20 * np.array([0, 1, 2, 3, 10, 11, 12]) * 0.9999, atol=3)


# ---------------------------------------------------------------------- tfds:NAME (any image dataset)


def _mnist_examples():
  """train 6, test 3 examples of 28x28x1 digits with known pixels and labels."""
  def ex(code):
    image = np.full((28, 28, 1), code, np.uint8)
    image[0, 0, 0] = 255 - code
    return {"image": image, "label": code % 10}
  return {"train": [ex(10 * k) for k in range(6)], "test": [ex(10 * k + 100) for k in range(3)]}


def test_tfds_any_image_dataset_by_name(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  cfg = _data_config(dataset="tfds:mnist", image_size=28, num_test=2,
                     tfds_data_dir=str(tmp_path))
  with tfds.testing.mock_data(as_data_source_fn=_mock_source(_mnist_examples())):
    data = data_lib.load_dataset(cfg)
    rgb = data_lib.load_dataset(_data_config(
        dataset="tfds:mnist", image_size=14, grayscale=False, num_test=2,
        tfds_data_dir=str(tmp_path)))
  # Natural order: train then test; the test set is its end; pixels / 255, labels kept.
  codes = [10 * k for k in range(6)] + [100, 110, 120]
  assert data.pool.shape == (7, 28, 28, 1) and data.test.shape == (2, 28, 28, 1)
  np.testing.assert_array_equal(data.pool[:, 1, 1, 0] * 255, np.float32(codes[:7]))
  np.testing.assert_allclose(data.pool[:, 0, 0, 0] * 255, 255 - np.float32(codes[:7]), atol=1e-4)
  np.testing.assert_array_equal(data.pool_labels, np.array(codes[:7]) % 10)
  assert data.metadata["source"] == "tfds:mnist"
  assert "tfds splits train + test" in data.metadata["order"]
  # RGB from one channel, resized (antialiased) to 14.
  assert rgb.pool.shape == (7, 14, 14, 3)
  np.testing.assert_allclose(rgb.pool[:, 5, 5, 0] * 255, np.float32(codes[:7]), atol=1e-3)
  # Not upsampled beyond the native 28 x 28.
  with pytest.raises(errors.ConfigError, match="data.image_size.*28x28"):
    data_lib.load_dataset(_data_config(dataset="tfds:mnist", image_size=32,
                                             tfds_data_dir=str(tmp_path)))


def test_tfds_name_not_prepared_or_unknown(tmp_path):
  with pytest.raises(errors.DataError) as info:
    data_lib.load_dataset(_data_config(dataset="tfds:fashion_mnist", image_size=28,
                                             tfds_data_dir=str(tmp_path)))
  message = str(info.value)
  assert f"tfds build fashion_mnist --data_dir={tmp_path}" in message and "\n" not in message
  assert not (tmp_path / "jaxdiff_cache").exists()
  with pytest.raises(errors.ConfigError, match="data.dataset.*tfds:no_such_dataset_zz"):
    data_lib.load_dataset(_data_config(dataset="tfds:no_such_dataset_zz",
                                             tfds_data_dir=str(tmp_path)))
  with pytest.raises(errors.ConfigError, match="an image dataset"):
    data_lib.load_dataset(_data_config(dataset="tfds:imdb_reviews",
                                             tfds_data_dir=str(tmp_path)))


def test_unprepared_tfds_dataset_is_one_message_without_tfds_warnings(tmp_path):
  """TFDS's own "Variant folder ... has no dataset_info.json" warnings (twice before) are
  silenced: jaxdiff's one-line DataError says what to do."""
  pytest.importorskip("tensorflow_datasets")
  import io
  import logging
  buf = io.StringIO()
  handler = logging.StreamHandler(buf)
  logging.getLogger("absl").addHandler(handler)
  try:
    cfg = ml_collections.ConfigDict(dict(dataset="cifar10", image_size=32, grayscale=True,
                                         num_test=2048, order_seed=-1,
                                         tfds_data_dir=str(tmp_path)))
    with pytest.raises(errors.DataError, match=r"tfds build cifar10 .*--file_format=array_record"):
      data_lib.load_dataset(cfg, max_pool=100)
  finally:
    logging.getLogger("absl").removeHandler(handler)
  assert "dataset_info.json" not in buf.getvalue()
  assert logging.getLogger("absl").level < logging.ERROR  # restored afterwards
