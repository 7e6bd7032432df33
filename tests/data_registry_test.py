"""Adding a dataset touches one module and a config (issue 13, "Done when").

This file is that module: it registers "rings", a test-only vector dataset (2-d points on
`data.rings` concentric circles of radii 1..R with Gaussian noise), with its own key and
its own check, and runs a real tiny sweep on it through the trainer. Nothing else in
jaxdiff names it.
"""

import json
import math
import os

import jax
import numpy as np
import pytest

from configs import test as test_config
from jaxdiff import data as data_lib
from jaxdiff import train
from jaxdiff import validation
from jaxdiff.data import dataset as dataset_lib
from jaxdiff.errors import ConfigError

NOISE = 0.05


def _check_rings(cfg):
  rings = dataset_lib.value(cfg, "rings")
  if not dataset_lib.is_int(rings) or rings < 1:
    raise ConfigError("data.rings", rings, "a positive number of circles for data.dataset = "
                                           "'rings'")
  dataset_lib.integer(cfg, "pool_size", minimum=1)


def _load_rings(cfg, *, num_test, order_seed, max_pool, reference):
  """pool_size + num_test points; point j lies on circle 1 + (j mod R) (its label)."""
  rings, total = cfg.rings, cfg.pool_size + num_test
  rng = np.random.default_rng(max(order_seed, 0))
  labels = (np.arange(total) % rings).astype(np.int32)
  angle = rng.uniform(0.0, 2 * math.pi, total)
  radius = 1.0 + labels + NOISE * rng.standard_normal(total)
  points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1).astype(np.float32)
  # data.order_seed seeds the draws; their order is kept (-1: no permutation on top).
  return dataset_lib.from_arrays("rings", points, labels, num_test, -1, max_pool, reference,
                                 {"source": f"{rings} rings"}, kind="vector")


RINGS = data_lib.DatasetSource(
    name="rings", kind="vector", labelled=True, default_quality="pixel_fd",
    item_shape=lambda cfg: (2,), loader=_load_rings,
    checks=_check_rings, description="concentric rings (a test-only dataset)")


@pytest.fixture
def rings():
  data_lib.register(RINGS)
  try:
    yield RINGS
  finally:
    data_lib.unregister("rings")


def _rings_config(**data_overrides):
  """configs/test.py on the rings (a config: the other half of adding a dataset)."""
  cfg = test_config.get_config()
  cfg.data.dataset = "rings"
  cfg.data.rings = 3
  cfg.data.pool_size = 400
  cfg.data.n_train = (8, 32)
  cfg.data.seeds = (0,)
  cfg.train.num_steps = 100
  cfg.train.steps_per_dispatch = 100
  cfg.eval.times = (50, 100)
  cfg.eval.num_samples = 16
  cfg.eval.sample_batch = 16
  cfg.eval.grid_runs = 0
  cfg.report.auto = False
  for key, value in data_overrides.items():
    cfg.data[key] = value
  return cfg


def test_a_registered_dataset_is_named_checked_shaped_and_loaded(rings):
  cfg = _rings_config()
  assert data_lib.source_for("rings") is rings
  assert "rings" in data_lib.names()
  assert rings.shape(cfg.data) == (2,)
  validation.validate_sweep(cfg)
  # Its own key is refused with its own message, by validation and by the loader alike.
  bad = _rings_config(rings=0)
  with pytest.raises(ConfigError, match=r"data.rings = 0: expected a positive number of "
                                        r"circles for data.dataset = 'rings'"):
    validation.validate_sweep(bad)
  with pytest.raises(ConfigError, match=r"data.rings = 0"):
    data_lib.load_dataset(bad.data)
  # The shared keys keep their shared checks (num_test, order_seed).
  with pytest.raises(ConfigError, match=r"data.num_test = 0"):
    validation.validate_sweep(_rings_config(num_test=0))
  dataset = data_lib.load_dataset(cfg.data, max_pool=40, reference=100)
  assert dataset.kind == "vector" and dataset.pool.shape == (40, 2)
  assert dataset.reference.shape == (100, 2) and dataset.test.shape == (100, 2)
  radii = np.linalg.norm(dataset.pool, axis=1)
  np.testing.assert_allclose(radii, 1.0 + dataset.pool_labels, atol=5 * NOISE)


def test_unregistered_it_is_unknown_again(rings):
  data_lib.unregister("rings")
  try:
    with pytest.raises(ConfigError, match=r"data.dataset = 'rings': expected one of digits"):
      validation.validate_sweep(_rings_config())
  finally:
    data_lib.register(rings)


@pytest.mark.slow
def test_a_sweep_on_a_registered_dataset_writes_its_rows(rings, tmp_path):
  workdir = str(tmp_path / "rings")
  train.train_and_evaluate(_rings_config(), workdir, devices=jax.devices()[:1])
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert len(rows) == 4  # 2 runs x 2 evaluation times
  assert {r["dataset"] for r in rows} == {"rings"}
  assert sorted((r["n"], r["step"]) for r in rows) == [(8, 50), (8, 100), (32, 50), (32, 100)]
  for r in rows:
    assert 0.0 <= r["f_mem"] <= 1.0
    assert math.isfinite(r["train_loss"]) and r["train_loss"] > 0
    assert math.isfinite(r["test_loss"]) and r["test_loss"] > 0
    assert r["quality_name"] == "pixel_fd"  # what eval.quality = "pixel_fd" measures
    assert math.isfinite(r["quality"]) and r["quality"] >= 0
  with open(os.path.join(workdir, "runs.json")) as f:
    assert {run["dataset"] for run in json.load(f)} == {"rings"}


def _facts_match(name, cfg, **load):
  source = data_lib.source_for(name)
  dataset = data_lib.load_dataset(cfg, **load)
  assert dataset.kind == source.kind, name
  assert (dataset.pool_labels is not None) == source.labelled, name
  assert tuple(dataset.pool.shape[1:]) == source.shape(cfg), name
  assert source.default_quality != "classifier_fd" or (source.kind == "image"
                                                       and source.labelled), name


def test_every_builtin_source_declares_what_it_loads(tmp_path):
  """What the planner reads (kind, labels, shape) is what the loader gives, per source."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  base = test_config.get_config().data
  checked = set()

  def with_(**overrides):
    cfg = base.copy_and_resolve_references()
    for key, value in overrides.items():
      cfg[key] = value
    return cfg

  _facts_match("digits", with_(dataset="digits"))
  _facts_match("gmm", with_(dataset="gmm", dim=3, pool_size=50, num_test=10), max_pool=20)
  _facts_match("gaussian", with_(dataset="gaussian", dim=4, pool_size=50, num_test=10))
  checked.update(("digits", "gmm", "gaussian"))
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(6):
    Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
  np.save(tmp_path / "a.npy", np.zeros((6, 9, 9), np.uint8))
  np.savez(tmp_path / "a.npz", images=np.zeros((6, 9, 9, 3), np.float32))
  for name, path, gray in (("folder", folder, False), ("npy", tmp_path / "a.npy", True),
                           ("npz", tmp_path / "a.npz", False)):
    _facts_match(name, with_(dataset=name, path=str(path), image_size=8, grayscale=gray,
                             num_test=2))
    checked.add(name)
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=4):
    for name, gray in (("celeb_a", True), ("cifar10", False), ("tfds:mnist", True)):
      _facts_match(name, with_(dataset=name, image_size=8, grayscale=gray, num_test=3,
                               tfds_data_dir=str(tmp_path / "tfds")))
      checked.add("tfds:" if name.startswith("tfds:") else name)
  # Every built-in source was loaded above (the "tfds:" prefix through tfds:mnist): a new
  # built-in source adds its line here.
  assert checked == {s.name for s in data_lib.registered()}
