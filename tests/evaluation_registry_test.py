"""Adding a per-evaluation output or a sampler touches one module and a config (issue 13).

The test registers, in this module only, (1) an output "sample_norm" (the mean squared
norm of a run's samples), enabled by eval.extra_outputs, and (2) a sampler "euler_ode"
(Euler steps of the probability-flow ODE), selected by eval.sampler; trains a tiny sweep
through train.train_and_evaluate and checks that every metrics row carries the value that
an independent recomputation from the final checkpoint gives, that TensorBoard and the
report's curves list it, and that the samples were drawn by that sampler.
"""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from jaxdiff import checkpointing
from jaxdiff import diffusion
from jaxdiff import evaluation
from jaxdiff import fileio
from jaxdiff import metrics_writer
from jaxdiff import models
from jaxdiff import train
from jaxdiff.errors import ConfigError
from jaxdiff.models import layers

STEPS = 40
CALLS = []  # (x_T shape, num_steps) of every trace of the test sampler


def euler_ode(eps_fn, schedule, x_T, key, num_steps, eta):
  """Euler steps of the probability-flow ODE of the OU process, dx/dt = -x - s(x, t),
  backwards in OU time over the strided index grid:

    x_{t - dt} = x_t + (x_t + s(x_t, t)) dt,   s = -eps_hat / sqrt(1 - alpha_bar).
  """
  del key, eta  # deterministic
  CALLS.append((tuple(x_T.shape), int(num_steps)))
  grid = diffusion.sampler_indices(schedule.num_steps, num_steps)
  times = -0.5 * np.log(np.asarray(schedule.alpha_bars, np.float64))
  dts = jnp.asarray(times[grid[:-1]] - times[grid[1:]], jnp.float32)

  def step(x, inp):
    i, dt = inp
    idx = jnp.full((x.shape[0],), i, jnp.int32)
    score = diffusion.score_from_eps(schedule, eps_fn(x, idx), idx)
    return x + (x + score) * dt, None

  x, _ = jax.lax.scan(step, x_T, (jnp.asarray(grid[:-1]), dts))
  return x


def squared_norm(samples):
  """(1/S) sum_j ||x_j||^2 of samples [S, ...]."""
  return jnp.mean(jnp.sum(jnp.square(samples).reshape(samples.shape[0], -1), axis=1))


SAMPLE_NORM = evaluation.Output(
    name="sample_norm",
    compute=lambda run: {"sample_norm": squared_norm(run.samples)},
    row=lambda outs, i, ctx: {"sample_norm": metrics_writer.digits(outs["sample_norm"][i])},
    fields=("sample_norm",), tensorboard=("sample_norm",), curves=("sample_norm",))


@pytest.fixture
def registered():
  evaluation.register(SAMPLE_NORM)
  diffusion.register_sampler("euler_ode", euler_ode)
  CALLS.clear()
  yield
  evaluation.unregister("sample_norm")
  diffusion.unregister_sampler("euler_ode")


def _config():
  c = test_config.get_config()
  c.data.n_train = (8, 16)
  c.data.seeds = (0,)
  c.model.width = 16
  c.train.num_steps = STEPS
  c.train.batch_size = 8
  c.train.steps_per_dispatch = STEPS
  c.eval.times = (20, STEPS)
  c.eval.num_samples = 16
  c.eval.sample_batch = 16
  c.eval.sampler_steps = 5
  c.eval.n_bootstrap = 50
  c.eval.loss_noise_draws = 2
  c.eval.grid_runs = 0
  c.eval.quality = "none"
  c.report.auto = False
  c.eval.sampler = "euler_ode"
  c.eval.extra_outputs = ("sample_norm",)
  return c


def _recomputed_norms(config, workdir, sampler):
  """The sample_norm of every run at the last step, from the checkpoint's parameters and
  keys with the evaluation's documented key chain (evaluate.evaluate_run: the samples'
  key is the first of 5 splits of fold_in(fold_in(run key, 2), step); one sample batch)."""
  state = checkpointing.Checkpointer(workdir).restore_arrays()
  model = layers.float32_twin(models.get_model(config.model, config.diffusion.num_steps))
  schedule = diffusion.schedule_from_config(config.diffusion)
  shape = (config.eval.num_samples, 8, 8, 1)

  @jax.jit
  def norm(params, run_key):
    key = jax.random.fold_in(jax.random.fold_in(run_key, 2), STEPS)
    batch_key = jax.random.split(jax.random.split(key, 5)[0], 1)[0]
    eps_fn = lambda x, t: model.apply({"params": params}, x, t, train=False)
    return squared_norm(diffusion.sample(sampler, eps_fn, schedule, batch_key, shape,
                                         config.eval.sampler_steps))

  return [float(norm(jax.tree.map(lambda x: jnp.asarray(x[m]), state["params"]),
                     jnp.asarray(state["key"][m])))
          for m in range(len(config.data.n_train) * len(config.data.seeds))]


@pytest.mark.slow
def test_registered_output_and_sampler_reach_rows_tensorboard_and_report(registered, tmp_path):
  config, workdir = _config(), str(tmp_path / "sweep")
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])

  rows = fileio.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert len(rows) == 2 * 2
  for row in rows:
    assert np.isfinite(row["sample_norm"]) and row["sample_norm"] > 0
  final = sorted((r for r in rows if r["step"] == STEPS), key=lambda r: r["run"])
  expected = _recomputed_norms(config, workdir, "euler_ode")
  np.testing.assert_allclose([r["sample_norm"] for r in final], expected, rtol=1e-4)
  # ...and the sampler was ours: DDIM from the same x_T gives other norms.
  ddim = _recomputed_norms(config, workdir, "ddim")
  assert np.min(np.abs(np.subtract(ddim, expected)) / np.asarray(expected)) > 1e-3
  assert CALLS and all(c == ((16, 8, 8, 1), 5) for c in CALLS)

  events = b"".join(open(p, "rb").read()
                    for p in glob.glob(os.path.join(workdir, "tensorboard", "*")))
  assert b"sample_norm/n8_seed0" in events and b"f_mem/n8_seed0" in events
  assert "sample_norm" in evaluation.report_curves()


def test_curves_and_rows_without_extras_are_the_built_in_ones():
  assert evaluation.report_curves() == (
      "loss", "train_loss", "train_loss_std", "test_loss", "test_loss_std", "f_mem",
      "f_mem_lo", "f_mem_hi", "ratio_median", "quality", "quality_std", "score_error", "kl")
  assert "sample_norm" not in evaluation.names()
  assert "euler_ode" not in diffusion.sampler_names()


def test_unknown_extra_output_and_sampler_name_their_key(registered):
  with pytest.raises(ConfigError, match="eval.extra_outputs.*sample_norm"):
    evaluation.check_extra_outputs(("sample_nrom",))
  with pytest.raises(ConfigError, match="eval.sampler = 'eulr'.*euler_ode"):
    diffusion.sampler_for("eulr")
  with pytest.raises(ConfigError, match="eval.extra_outputs = 'sample_norm'"):
    evaluation.check_extra_outputs("sample_norm")  # a string, not a tuple of names
  evaluation.check_extra_outputs(("sample_norm",))
  evaluation.check_extra_outputs(())
