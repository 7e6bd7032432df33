"""Every bad config value ends with one ConfigError naming the key, the value and what is allowed."""

import types

import jax
import numpy as np
import pytest

from configs import base
from configs import celeba, cifar, digits, gmm
from configs import test as test_config
from jaxdiff import data as data_lib
from jaxdiff import runs as runs_lib
from jaxdiff import sharding
from jaxdiff import validation
from jaxdiff.errors import ConfigError
# Pool items a sweep holds out at the end of the pool order for its quality reference sets
# (as train.Sweep loads the data).
from jaxdiff.setup import reference_size


def with_(config, key, value):
  node = config
  *path, last = key.split(".")
  for p in path:
    node = node[p]
  with config.unlocked():
    node[last] = value
  return config


BAD = [
    ("data.dataset", "mnist", r"data.dataset = 'mnist': expected one of digits, gmm, .*folder, "
                              r"npz, npy, or tfds:NAME"),
    ("data.n_train", (), r"data.n_train = \(\): expected a non-empty tuple"),
    ("data.n_train", (16, 8), r"data.n_train = \(16, 8\): expected strictly increasing"),
    ("data.n_train", (8, 8), r"expected strictly increasing values without duplicates"),
    ("data.n_train", (0, 8), r"expected a non-empty tuple of positive integers"),
    ("data.seeds", (1, 1), r"data.seeds = \(1, 1\): expected a non-empty tuple of distinct"),
    ("data.index", (-1,), r"data.index = \(-1,\)"),
    ("eval.k", 1.5, r"eval.k = 1.5: expected a number strictly between 0 and 1"),
    ("eval.k", 0.0, r"eval.k = 0.0: expected a number strictly between 0 and 1"),
    ("eval.k_extra", (0.5, 1.0), r"eval.k_extra = 1.0"),
    ("optim.lr", (0.0,), r"optim.lr = \(0.0,\): expected a non-empty tuple of positive"),
    ("optim.lr", (-1e-3,), r"optim.lr = \(-0.001,\)"),
    ("optim.name", "rmsprop", r"optim.name = 'rmsprop': expected one of \('sgd', 'adam'\)"),
    ("train.batch_size", 0, r"train.batch_size = 0: expected a positive integer"),
    ("train.batch_size", -4, r"train.batch_size = -4: expected a positive integer"),
    ("train.batch_policy", "drop", r"train.batch_policy = 'drop': expected one of"),
    ("train.num_steps", 0, r"train.num_steps = 0"),
    ("eval.times", (100, 5000), r"eval.times = \(100, 5000\): expected steps within the budget "
                                r"train.num_steps=200 \(beyond it: \[5000\]\); give times up to 200, "
                                r"or --config.eval.times='\(\)' to use eval.grid="),
    ("eval.sampler", "euler", r"eval.sampler = 'euler': expected one of \('ddim', 'ddpm', 'em'\)"),
    ("eval.sampler_steps", 1000, r"eval.sampler_steps = 1000: expected an integer in \[1, 999\]"),
    ("eval.quality", "is", r"eval.quality = 'is'"),
    ("model.name", "transformer", r"model.name = 'transformer': expected one of \('unet', 'mlp'\)"),
    ("model.dropout", 1.0, r"model.dropout = 1.0"),
    ("diffusion.beta_max", 1e-5, r"0 < diffusion.beta_min < diffusion.beta_max < 1"),
    ("train.models_axis", "pmap", r"train.models_axis = 'pmap': expected one of"),
    ("train.models_group", -1, r"train.models_group = -1: expected an integer >= 0"),
    ("experiment", "gan", r"experiment = 'gan'"),
    # Non-finite numbers (a config file's 1e309 is inf) are refused wherever numbers are.
    ("optim.lr", (1e309,), r"optim.lr = \(inf,\): expected .*\(finite numbers\)"),
    ("optim.lr", (float("nan"),), r"optim.lr = \(nan,\)"),
    ("optim.eps", float("inf"), r"optim.eps = inf: expected a positive number"),
    ("eval.loss_t", float("nan"), r"eval.loss_t = nan"),
    ("train.checkpoint_every_secs", float("inf"), r"train.checkpoint_every_secs = inf"),
    ("eval.ddim_eta", float("inf"), r"eval.ddim_eta = inf"),
    ("report.tau_gen_tol", float("inf"), r"report.tau_gen_tol = inf"),
]


@pytest.mark.parametrize("key,value,message", BAD)
def test_bad_value_named(key, value, message):
  config = with_(test_config.get_config(), key, value)
  with pytest.raises(ConfigError, match=message):
    validation.validate_sweep(config)


def test_unet_width_must_divide_into_groups():
  config = base.get_config()
  config = with_(config, "model.width", 12)
  with pytest.raises(ConfigError, match=r"model.width = 12: expected a multiple of "
                                        r"model.num_groups=8"):
    validation.validate_sweep(config)
  config = with_(base.get_config(), "model.attention", (False, True))
  with pytest.raises(ConfigError, match=r"model.attention .* one boolean per resolution level"):
    validation.validate_sweep(config)


def check_against_real_data(config):
  """The checks train.Sweep runs once the data is loaded (n against the pool, the model
  against the data's kind and size, the batch against the mesh, quality and labels),
  on the dataset itself (digits, gmm: offline)."""
  validation.validate_sweep(config)
  table = runs_lib.build_run_table(config)
  dataset = data_lib.load_dataset(config.data, reference=reference_size(config))
  data_lib.check_subsets(dataset, config.data.n_train, config.data.index)
  mesh = sharding.make_mesh(config.train.data_parallel, jax.devices())
  validation.validate_against_data(config, table, dataset, mesh)
  return dataset


# What a shape-only stand-in needs to know of the datasets that are not on this machine.
STAND_IN = {"celeb_a": dict(labelled=False), "cifar10": dict(labelled=True)}


def check_against_shapes(config):
  """The same checks with a shape-only stand-in of the data (CelebA and CIFAR-10 are not
  downloaded here): zero-strided arrays of the configured image shape, labels where the
  dataset has them (as the planner's stand-in)."""
  validation.validate_sweep(config)
  d = config.data
  facts = STAND_IN[d.dataset]
  shape = (int(d.image_size), int(d.image_size), 1 if d.grayscale else 3)
  table = runs_lib.build_run_table(config)
  zeros = lambda n: np.broadcast_to(np.zeros((), np.float32), (n,) + shape)
  labels = lambda n: np.zeros((n,), np.int32) if facts["labelled"] else None
  dataset = types.SimpleNamespace(
      name=d.dataset, kind="image", pool=zeros(table.pool_size), test=zeros(d.num_test),
      pool_labels=labels(table.pool_size), test_labels=labels(d.num_test), metadata={})
  mesh = sharding.make_mesh(config.train.data_parallel, jax.devices())
  validation.validate_against_data(config, table, dataset, mesh)
  return table


OFFLINE = {"digits": digits.get_config, "digits:unet": lambda: digits.get_config("unet"),
           "gmm": gmm.get_config, "gmm:cpu": lambda: gmm.get_config("cpu"),
           "test": test_config.get_config}
SHAPES_ONLY = {"base": base.get_config, "celeba": celeba.get_config,
               "celeba:small": lambda: celeba.get_config("small"),
               "cifar": cifar.get_config, "cifar:rgb": lambda: cifar.get_config("rgb")}


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_every_shipped_config_is_valid_on_its_data(name):
  config = OFFLINE[name]()
  dataset = check_against_real_data(config)
  assert dataset.name == config.data.dataset
  assert len(dataset.pool) >= max(config.data.n_train) * (max(config.data.index, default=0) + 1)


@pytest.mark.parametrize("name", sorted(SHAPES_ONLY))
def test_every_shipped_config_is_valid_on_its_data_shapes(name):
  config = SHAPES_ONLY[name]()
  table = check_against_shapes(config)
  assert table.num_runs == len(config.data.n_train) * len(config.data.seeds) * max(
      1, len(config.data.index)) * len(config.optim.lr)


@pytest.mark.parametrize("key,value,check,message", [
    ("model.name", "unet", check_against_real_data, r"model.name = 'unet': expected 'mlp' "
                                                    r"for vector data \(gmm\)"),
    ("data.n_train", (8, 1600), check_against_real_data, r"data.n_train = \(8, 1600\)"),
    ("eval.quality", "classifier_fd", check_against_real_data, r"eval.quality"),
    ("data.image_size", 30, check_against_shapes, r"data.image_size = 30: expected a "
                                                  r"multiple of 4"),
])
def test_the_data_checks_refuse_what_the_data_cannot_do(key, value, check, message):
  """The two helpers above do run the data-dependent checks: a config valid on its keys
  alone is refused by them (the U-Net on vector data, more images than digits has, a
  classifier on data without labels)."""
  base_config = {"data.n_train": test_config.get_config,
                 "data.image_size": celeba.get_config}.get(key, lambda: gmm.get_config("cpu"))()
  config = with_(base_config, key, value)
  validation.validate_sweep(config)  # valid without the data
  with pytest.raises(ConfigError, match=message):
    check(config)


def test_n_larger_than_the_data():
  config = with_(test_config.get_config(), "data.n_train", (8, 4000))
  dataset = data_lib.load_dataset(config.data)
  with pytest.raises(ConfigError, match=r"data.n_train"):
    data_lib.check_subsets(dataset, config.data.n_train, config.data.index)
