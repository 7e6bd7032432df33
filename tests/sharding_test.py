"""Laying runs out on a device: `lift` (unroll / vmap) and `map_groups` (G runs at a time)
compute the same per-run function; grouping bounds the memory of a program; and the
trainer itself (train.Sweep on a real tiny sweep) gives the same rows and parameters
under models_axis = vmap as under unroll."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from jaxdiff import checkpointing
from jaxdiff import fileio
from jaxdiff import models_axis
from jaxdiff import setup
from jaxdiff import train
from jaxdiff import train_state


def one_run(per_model, shared):
  """A per-run function with a tree in and out and a shared argument."""
  w, b = per_model["w"], per_model["b"]
  h = jnp.tanh(shared @ w + b)
  return {"y": h.sum(0), "norm": jnp.sum(h * h)}


def stacked(num):
  keys = jax.random.split(jax.random.PRNGKey(0), num)
  return {"w": jax.vmap(lambda k: jax.random.normal(k, (6, 4)))(keys),
          "b": jnp.arange(num * 4, dtype=jnp.float32).reshape(num, 4) / 10}


@pytest.mark.parametrize("strategy", ["unroll", "vmap"])
@pytest.mark.parametrize("group", [0, 1, 2, 3, 5, 8])
def test_lift_in_groups_equals_one_run_at_a_time(strategy, group):
  num, x = 5, jnp.linspace(-1, 1, 18).reshape(3, 6)
  per_model = stacked(num)
  out = jax.jit(models_axis.lift(one_run, strategy, group))(per_model, x)
  for m in range(num):
    want = one_run(jax.tree.map(lambda a: a[m], per_model), x)
    for k in want:
      np.testing.assert_allclose(out[k][m], want[k], rtol=1e-6, atol=1e-6)


def test_map_groups_runs_groups_in_order_with_a_remainder():
  seen = []
  out = models_axis.map_groups(lambda t: (seen.append(t.shape[0]), t * 2)[1], jnp.arange(7.0), 3)
  np.testing.assert_array_equal(out, 2 * np.arange(7.0))
  assert seen == [3, 1]  # one traced group of 3 (lax.map over 2 of them), then the rest


@pytest.mark.parametrize("strategy", ["unroll", "vmap"])
def test_groups_bound_the_temporaries(strategy):
  """XLA's memory analysis: a backward pass keeps each run's activations ([512, 256] x 3);
  8 runs computed 2 at a time need a fraction of the temporaries of all 8 at once."""
  def loss(w, x):
    return jnp.sum(jnp.tanh(jnp.tanh(x @ w) @ w) ** 2)

  grad_one = lambda per_model, x: jax.grad(loss)(per_model["w"], x)
  per_model, x = {"w": jnp.ones((8, 256, 256))}, jnp.ones((512, 256))

  def temp(group):
    lifted = jax.jit(models_axis.lift(grad_one, strategy, group))
    return lifted.lower(per_model, x).compile().memory_analysis().temp_size_in_bytes

  activations = 512 * 256 * 4  # bytes of one run's [512, 256] activation
  all_at_once, grouped = temp(0), temp(2)
  assert all_at_once >= 8 * 2 * activations, all_at_once
  assert grouped < all_at_once / 2, (grouped, all_at_once)


# ------------------------------------------------ the trainer: vmap equals unroll


def _tiny_sweep_config(models_axis, models_group=0):
  """configs/test.py cut to 4 runs (n = 8, 16 x seeds 0, 1) and 40 steps, 2 evaluations."""
  c = test_config.get_config()
  c.data.n_train, c.data.seeds = (8, 16), (0, 1)
  c.model.width = 16
  c.train.update(num_steps=40, steps_per_dispatch=20, models_axis=models_axis,
                 models_group=models_group)
  c.eval.update(times=(20, 40), num_samples=16, sample_batch=16, sampler_steps=5,
                n_bootstrap=50, grid_runs=0, quality="pixel_fd", fid_set_size=50)
  c.report.auto = False
  return c


@pytest.fixture(scope="module")
def unrolled(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("unroll"))
  train.train_and_evaluate(_tiny_sweep_config("unroll"), wd, devices=jax.devices()[:1])
  return wd


@pytest.mark.slow
@pytest.mark.parametrize("models_group", [0, 3])
def test_trainer_under_vmap_equals_unroll(unrolled, tmp_path, models_group):
  """The same 4-run sweep (train.Sweep on one device, every run on it) with the models
  axis batched by vmap (all 4 at once, or 3 then 1) and unrolled (one copy per run): the
  same metrics rows and final parameters, to float32 reassociation (vmap batches the
  matmuls, which may sum in another order)."""
  wd = str(tmp_path / "vmap")
  sweep = train.Sweep(_tiny_sweep_config("vmap", models_group), wd,
                      devices=jax.devices()[:1])
  assert sweep.strategy == "vmap" and sweep.table.num_runs == 4
  sweep.run()
  want = {(r["step"], r["run"]): r for r in fileio.read_jsonl(f"{unrolled}/metrics.jsonl")}
  got = {(r["step"], r["run"]): r for r in fileio.read_jsonl(f"{wd}/metrics.jsonl")}
  assert sorted(got) == sorted(want) == [(s, r) for s in (20, 40) for r in range(4)]
  for key, row in want.items():
    for name in ("loss", "train_loss", "test_loss", "f_mem", "ratio_median", "quality"):
      np.testing.assert_allclose(got[key][name], row[name], rtol=2e-4, atol=1e-5,
                                 err_msg=f"{key} {name}")
  final = lambda d: checkpointing.Checkpointer(d).restore_arrays()["params"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               final(unrolled), final(wd))


@pytest.mark.slow
def test_sweep_programs_communicate_only_over_data():
  """compile_check_test's layout checks at test size (it compiles the paper's CelebA sweep
  for 16 devices; slow): the models axis split over devices, 2 runs per device batched
  with vmap, each run's batch split over 2 'data' devices. The compiled chunk only
  all-reduces over each run's 2 'data' devices, updates the donated state in place, and
  the evaluation has no cross-device operation."""
  from jaxdiff import plan
  c = _tiny_sweep_config("vmap")
  c.train.data_parallel = 2
  p = plan.make_plan(c, jax.devices()[:4], probe_steps=0, device_memory=2**40,
                     roofline=False)
  assert p.mesh_shape == {"models": 2, "data": 2}
  assert (p.num_runs, p.num_padded, p.runs_per_device, p.strategy) == (4, 4, 2, "vmap")
  assert p.chunk.outputs - p.chunk.aliased < 0.01 * p.resident["state"], p.chunk
  assert set(p.collectives["chunk"]) == {"all-reduce"}, p.collectives
  assert set(p.collectives["chunk"]["all-reduce"]) == {2}, p.collectives
  assert p.collectives["evaluate"] == {}, p.collectives


# ------------------------------------------------ the init: one run's draws, batched


def _init_config(model):
  c = test_config.get_config()
  c.data.n_train, c.data.seeds = (8, 16), (0, 1, 2)
  c.train.models_axis = "unroll"  # per-run copies for the step; the init is vmapped anyway
  if model == "unet":  # one ResBlock and attention at two levels of width 8, as the smoke check
    c.model.update(name="unet", width=8, channel_mult=(1, 1), attention=(False, True),
                   num_res_blocks=1)
  return c


@pytest.mark.parametrize("model", ["mlp", pytest.param("unet", marks=pytest.mark.slow)])
def test_programs_init_equals_each_run_initialised_alone(model):
  """programs.Programs vmaps the init under every models-axis strategy (its parameter
  draws cost nothing batched): each run's state is bit for bit that of
  train_state.create_train_state for that run alone, i.e. what per-run copies give."""
  built = setup.build(_init_config(model), jax.devices()[:1], stand_in=True)
  assert built.layout.strategy == "unroll"
  inputs = built.host_inputs
  stacked_state = built.programs.init(inputs)
  alone = jax.jit(lambda inp: train_state.create_train_state(
      built.model, built.tx, inp["key"], inp["lr"], inp["n"], built.example,
      built.table.capacity, built.config.optim.ema_decay > 0))
  for m in range(built.num_padded):
    state = alone({k: v[m] for k, v in inputs.items()})
    jax.tree.map(lambda s, a: np.testing.assert_array_equal(np.asarray(s)[m], np.asarray(a)),
                 stacked_state, state)
