"""The trainer and the planner build the same sweep (jaxdiff.setup): with the real data
(train.Sweep) and with the shape-only stand-in (plan.AbstractSweep), a config gives the
same run table, layout, specs, parameter count, quality kind, state shapes and the same
lowered chunk and evaluation programs."""

import jax
import numpy as np
import pytest

from configs import test as test_config
from jaxdiff import plan
from jaxdiff import setup
from jaxdiff import sharding
from jaxdiff import train


def _config(variant: str):
  c = test_config.get_config()
  c.data.n_train = (8, 16)
  c.train.num_steps = 40
  c.eval.times = (20, 40)
  if variant == "gmm":  # vector data, the exact-KL quality (gmm_mean in the EvalSpec)
    c.data.dataset = "gmm"
    c.data.dim = 4
    c.eval.quality = "auto"
    c.eval.sampler = "em"
  elif variant == "conditional":  # labels among the per-run inputs
    c.model.num_classes = 10
  return c


def _shapes(tree):
  return jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), tree)


@pytest.mark.parametrize("variant", ["digits", "gmm", "conditional"])
def test_plan_and_train_build_the_same_sweep(tmp_path, variant):
  config = _config(variant)
  devices = jax.devices()[:1]
  sweep = train.Sweep(config, str(tmp_path / "w"), devices=devices)
  try:
    planned = plan.AbstractSweep(config, devices=devices)
    real, stand_in = sweep.built, planned.built
    assert stand_in.table == real.table
    assert stand_in.layout == real.layout
    assert stand_in.num_padded == real.num_padded
    assert stand_in.step_spec == real.step_spec
    assert stand_in.eval_spec == real.eval_spec
    assert (variant == "gmm") == (real.eval_spec.gmm_mean is not None)
    assert stand_in.num_params == real.num_params
    assert stand_in.quality_kind == real.quality_kind
    assert stand_in.data_shape == real.data_shape
    # The per-run inputs: the same arrays, but the centering mean (zero data stand in).
    assert _shapes(stand_in.host_inputs) == _shapes(real.host_inputs)
    for key in ("n", "offset", "lr", "key"):
      np.testing.assert_array_equal(stand_in.host_inputs[key], real.host_inputs[key])
    assert ("labels" in real.host_inputs) == (variant == "conditional")
    # The same programs: the stacked state's shapes and the lowered programs' text.
    state = sweep.programs.abstract_state(sweep.inputs)
    assert _shapes(planned.state) == _shapes(state)
    # (the step count as the planner passes it: replicated over the mesh)
    steps = sharding.global_array(np.asarray(1, np.int32), sharding.replicated(sweep.mesh))
    chunk = sweep.programs.chunk.lower(state, sweep.inputs, sweep.pool, steps)
    assert planned.lower_chunk().as_text() == chunk.as_text()
    evaluation = sweep.programs.evaluate.lower(state, sweep.inputs, sweep.pool, sweep.test,
                                               sweep.qparams, steps)
    assert planned.lower_evaluate().as_text() == evaluation.as_text()
  finally:
    sweep.claim.release()


def test_data_source_matches_the_loaded_dataset():
  """setup.data_source (the stand-in's shapes and labels) agrees with what is loaded."""
  from jaxdiff import data as data_lib, runs as runs_lib
  for variant in ("digits", "gmm"):
    config = _config(variant)
    source = setup.data_source(config)
    table = runs_lib.build_run_table(config)
    data = data_lib.load_dataset(config.data, max_pool=table.pool_size)
    assert tuple(source.shape(config.data)) == tuple(data.pool.shape[1:]), variant
    assert source.kind == data.kind, variant
    assert source.labelled == (data.pool_labels is not None), variant
    config.eval.quality = "auto"
    exact = variant == "gmm"
    assert (setup.quality_kind(config) == "gmm") == exact, variant
    assert (setup.reference_size(config) == 0) == exact, variant


def test_models_axis_keys_are_checked_in_one_place_before_any_data():
  """train.models_axis, train.models_group and model.conv_batching: one ConfigError each
  from the config pass (models_axis.validate, run by validation.validate_sweep)."""
  from jaxdiff import models_axis, validation
  from jaxdiff.errors import ConfigError
  for key, value in (("train.models_axis", "pmap"), ("train.models_group", -1),
                     ("model.conv_batching", "fold")):
    c = _config("digits")
    c.model.name = "unet"
    section, name = key.split(".")
    c[section][name] = value
    with pytest.raises(ConfigError, match=rf"{key} = "):
      validation.validate_sweep(c)
  c = _config("digits")
  c.model.conv_batching = "fold"  # only the U-Net has convolutions: the MLP ignores it
  models_axis.validate(c)


def test_layout_resolves_auto_per_platform():
  from jaxdiff import models_axis
  c = _config("digits")
  c.train.models_axis = "auto"  # configs/test.py chooses vmap
  c.train.models_group = 2
  cpu, gpu = models_axis.layout_of(c, "cpu"), models_axis.layout_of(c, "gpu")
  assert (cpu.strategy, gpu.strategy) == ("unroll", "vmap")
  assert cpu.group == 2 and cpu.at_once(5) == 2 and cpu.at_once(1) == 1
  c.train.models_axis = "vmap"
  assert models_axis.layout_of(c, "cpu").strategy == "vmap"
