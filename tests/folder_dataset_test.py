"""data.dataset = folder / npz / npy: the user's files as a sweep's ordered pool.

The bundled digits (values k/16, k = 0..16) are written as files and read back:
  - float32 TIFFs hold k/16 exactly, so the folder gives the built-in digits bit for bit
    (same images, same order), and a sweep trains to the same metrics;
  - 8-bit PNGs cannot hold k/16 (255 is odd): they hold round(255 k / 16), read back as
    that / 255, in the same order;
  - 16-bit PNGs are read as value / 65535 (not cut to 8 bits).
"""

import json
import os
import sys

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import datasets as sk_datasets

from jaxdiff import errors
from jaxdiff import data as data_lib
from jaxdiff.data import preprocess
from jaxdiff import validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import base  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import test as test_config  # pylint: disable=g-import-not-at-top,wrong-import-position


def _digits():
  return sk_datasets.load_digits().images  # [1797, 8, 8], values 0..16


def _data(**overrides):
  d = base.get_config().data
  d.dataset, d.image_size, d.num_test, d.order_seed = "digits", 8, 100, 0
  for k, v in overrides.items():
    d[k] = v
  return d


@pytest.fixture(scope="module")
def tiff_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp("digits_tiff")
  for i, im in enumerate(_digits()):
    sub = folder / f"part{i // 1000}"  # recursive, and sorted by relative path
    sub.mkdir(exist_ok=True)
    Image.fromarray((im / 16).astype(np.float32), mode="F").save(sub / f"{i:04d}.tif")
  return str(folder)


def test_float_tiff_folder_is_the_builtin_digits_exactly(tiff_folder):
  a = data_lib.load_dataset(_data(), reference=200)
  b = data_lib.load_dataset(_data(dataset="folder", path=tiff_folder), reference=200)
  for x, y in ((a.pool, b.pool), (a.test, b.test), (a.reference, b.reference)):
    assert x.dtype == y.dtype and np.array_equal(x, y)
  assert b.pool_labels is None and b.metadata["path"] == tiff_folder
  assert "1,797 TIF files" in b.metadata["source"]


def test_png_folder_order_and_documented_8_bit_scaling(tmp_path):
  images = _digits()[:300]
  q = np.round(images * 255 / 16).astype(np.uint8)
  for i, im in enumerate(q):
    Image.fromarray(im, mode="L").save(tmp_path / f"{i:03d}.png")
  # Natural order (order_seed -1): sorted paths; then blocks are contiguous in it.
  d = data_lib.load_dataset(_data(dataset="folder", path=str(tmp_path), order_seed=-1,
                                        num_test=50))
  assert np.array_equal(d.pool[..., 0], q[:250].astype(np.float32) / np.float32(255))
  assert np.array_equal(d.test[..., 0], q[250:].astype(np.float32) / np.float32(255))
  assert np.abs(d.pool[..., 0] - images[:250] / 16).max() <= 0.5 / 255 + 1e-7
  # A seeded order is numpy's default_rng(seed) permutation, as for the digits.
  s = data_lib.load_dataset(_data(dataset="folder", path=str(tmp_path), order_seed=3,
                                        num_test=50))
  perm = np.random.default_rng(3).permutation(300)
  assert np.array_equal(s.pool[..., 0], q[perm[:250]].astype(np.float32) / 255)


def test_16_bit_png_is_not_cut_to_8_bits(tmp_path):
  values = np.array([[0, 257, 40000, 65535]] * 4, np.uint16)
  Image.fromarray(values).save(tmp_path / "a.png")
  Image.fromarray(values).save(tmp_path / "b.png")
  d = data_lib.load_dataset(_data(dataset="folder", path=str(tmp_path), image_size=4,
                                        num_test=1, order_seed=-1))
  np.testing.assert_allclose(d.pool[0, 0, :, 0], values[0] / 65535, atol=1e-6)


def test_mixed_sizes_are_resized_and_cropped_like_celeba(tmp_path):
  rng = np.random.default_rng(0)
  shapes = [(20, 12, 3), (12, 20, 3), (16, 16, 3)]
  raw = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
  for i, im in enumerate(raw):
    Image.fromarray(im).save(tmp_path / f"{i}.png")
  d = data_lib.load_dataset(_data(dataset="folder", path=str(tmp_path), image_size=8,
                                        grayscale=False, num_test=1, order_seed=-1))
  want = [preprocess.preprocess_images(im[None], 8, False)[0] for im in raw]
  np.testing.assert_allclose(d.pool, np.stack(want[:2]), atol=1e-6)
  np.testing.assert_allclose(d.test[0], want[2], atol=1e-6)


def test_npz_and_npy_layouts_are_detected_and_stated(tmp_path):
  images = (_digits()[:120] / 16).astype(np.float32)
  np.save(tmp_path / "nchw.npy", images[:, None])  # [N, 1, 8, 8] float in [0, 1]
  np.savez(tmp_path / "nhwc.npz", images=np.round(images * 255).astype(np.uint8)[..., None])
  a = data_lib.load_dataset(_data(dataset="npy", path=str(tmp_path / "nchw.npy"),
                                        num_test=20, order_seed=-1))
  assert "NCHW" in a.metadata["source"] and "in [0, 1]" in a.metadata["source"]
  assert np.array_equal(a.pool[..., 0], images[:100])  # exact: k/16 * 255 / 255
  b = data_lib.load_dataset(_data(dataset="npz", path=str(tmp_path / "nhwc.npz"),
                                        num_test=20, order_seed=-1))
  assert "NHWC" in b.metadata["source"] and "uint8" in b.metadata["source"]
  with pytest.raises(errors.DataError, match="nhwc.npz: not a .npy file"):
    data_lib.load_dataset(_data(dataset="npy", path=str(tmp_path / "nhwc.npz")))


def test_bad_input_is_one_line_naming_the_file(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(errors.DataError, match=f"{empty}: no image files"):
    data_lib.load_dataset(_data(dataset="folder", path=str(empty)))
  folder = tmp_path / "imgs"
  folder.mkdir()
  for i in range(3):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / f"{i}.png")
  data = open(folder / "1.png", "rb").read()
  with open(folder / "1.png", "wb") as f:
    f.write(data[:len(data) // 2])  # truncated
  with pytest.raises(errors.DataError) as info:
    data_lib.load_dataset(_data(dataset="folder", path=str(folder), num_test=1))
  assert str(info.value).startswith(f"{folder / '1.png'}: not a readable image")
  assert "\n" not in str(info.value)
  with pytest.raises(errors.DataError, match="not a folder"):
    data_lib.load_dataset(_data(dataset="folder", path=str(folder / "0.png")))
  with pytest.raises(errors.DataError, match="no such file or folder"):
    data_lib.load_dataset(_data(dataset="folder", path=str(tmp_path / "missing")))
  with pytest.raises(errors.ConfigError, match="data.path"):
    data_lib.load_dataset(_data(dataset="folder", path=""))


def test_fewer_images_than_the_grid_needs_names_the_path(tmp_path):
  for i in range(30):
    Image.fromarray(np.full((8, 8), i, np.uint8)).save(tmp_path / f"{i:02d}.png")
  d = data_lib.load_dataset(_data(dataset="folder", path=str(tmp_path), num_test=5),
                                  reference=10)
  with pytest.raises(errors.ConfigError) as info:
    data_lib.check_subsets(d, (8, 16), (0,))
  message = str(info.value)
  assert "data.n_train" in message and f"data.path = {tmp_path}" in message
  assert "has 15 images" in message and "\n" not in message


def test_validation_asks_the_registry():
  cfg = test_config.get_config()
  cfg.data.dataset = "folder"
  with pytest.raises(errors.ConfigError, match="data.path"):
    validation.validate_sweep(cfg)
  cfg.data.path = "somewhere"
  validation.validate_sweep(cfg)  # the path itself is checked when the data are loaded
  for name in ("tfds:mnist", "tfds:oxford_flowers102", "npz"):
    cfg.data.dataset, cfg.data.path = name, "x.npz"
    validation.validate_sweep(cfg)
  cfg.data.dataset = "tfds:"
  with pytest.raises(errors.ConfigError, match="tfds:NAME"):
    validation.validate_sweep(cfg)
  assert not hasattr(validation, "DATASETS")  # one list of datasets: jaxdiff.data's


def _tiny_sweep():
  cfg = test_config.get_config()
  cfg.data.n_train = (8, 16)
  cfg.data.seeds = (0,)
  cfg.train.num_steps = 100
  cfg.train.steps_per_dispatch = 100
  cfg.eval.times = (50, 100)
  cfg.eval.num_samples = 16
  cfg.eval.sample_batch = 16
  cfg.eval.grid_runs = 0
  cfg.report.auto = False
  return cfg


def _metrics(workdir):
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  drop = ("wall_time", "time", "eval_time", "dataset")
  return [{k: v for k, v in r.items() if k not in drop and "time" not in k} for r in rows]


@pytest.mark.slow  # two sweeps (the data equality: the float-TIFF test above)
def test_folder_sweep_trains_to_the_same_metrics_as_the_builtin_digits(tiff_folder, tmp_path):
  from jaxdiff import train  # pylint: disable=g-import-not-at-top
  cfg = _tiny_sweep()
  # One device for both: the same programs (the second sweep loads them from the test
  # session's compilation cache).
  train.train_and_evaluate(cfg, str(tmp_path / "digits"), devices=jax.devices()[:1])
  cfg.data.dataset, cfg.data.path = "folder", tiff_folder
  train.train_and_evaluate(cfg, str(tmp_path / "folder"), devices=jax.devices()[:1])
  a, b = _metrics(str(tmp_path / "digits")), _metrics(str(tmp_path / "folder"))
  assert len(a) == len(b) == 4
  assert a == b
