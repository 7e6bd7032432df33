"""The conditional GMM of paper SM B.3 (Fig. 10): label conditioning, label dropout and
classifier-free guidance, and an end-to-end tiny conditional sweep."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import gmm as gmm_config
from jaxdiff import diffusion
from jaxdiff import evaluate
from jaxdiff import fileio
from jaxdiff import programs as programs_lib
from jaxdiff import train
from jaxdiff import train_state as ts
from jaxdiff.errors import ConfigError
from jaxdiff.models import mlp


def _model_and_params(num_classes=2, width=16, d=8):
  model = mlp.ResidualMLP(width=width, num_classes=num_classes)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, d)), jnp.zeros((1,), jnp.int32))
  # A random label table (its init is random already; make the null row distinct too).
  return model, params["params"]


@pytest.mark.slow
def test_guidance_scale_0_and_1_are_the_unconditional_and_conditional_eps():
  model, params = _model_and_params()
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8))
  t = jnp.asarray([1, 50, 200, 500, 800, 999], jnp.int32)
  y = jnp.asarray([0, 1, 0, 1, 1, 0], jnp.int32)
  null = jnp.full_like(y, 2)
  cond = lambda x_, t_: model.apply({"params": params}, x_, t_, y)
  uncond = lambda x_, t_: model.apply({"params": params}, x_, t_, null)
  e_c, e_u = cond(x, t), uncond(x, t)
  assert float(jnp.max(jnp.abs(e_c - e_u))) > 1e-3  # the label matters
  np.testing.assert_array_equal(diffusion.guided_eps_fn(cond, uncond, 1.0)(x, t), e_c)
  np.testing.assert_array_equal(diffusion.guided_eps_fn(cond, uncond, 0.0)(x, t), e_u)
  # s = 3: eps_u + 3 (eps_c - eps_u) = 3 eps_c - 2 eps_u.
  np.testing.assert_allclose(diffusion.guided_eps_fn(cond, uncond, 3.0)(x, t),
                             3.0 * e_c - 2.0 * e_u, rtol=1e-5, atol=1e-6)
  # No labels means the null class.
  np.testing.assert_array_equal(model.apply({"params": params}, x, t), e_u)
  # The parameter count: the unconditional one plus (C + 1) W.
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert count == mlp.num_params(8, 16, 2) == mlp.num_params(8, 16) + 3 * 16


def test_unconditional_model_refuses_labels():
  model, params = _model_and_params(num_classes=0)
  with pytest.raises(ValueError, match="unconditional"):
    model.apply({"params": params}, jnp.zeros((2, 8)), jnp.zeros((2,), jnp.int32),
                jnp.zeros((2,), jnp.int32))


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
@pytest.mark.slow
def test_label_dropout_uses_the_null_class_at_the_configured_rate(rate):
  """train_step hands the network the item's label, or the null class with prob. rate."""
  seen = []

  class Net:
    def apply(self, variables, x, t, y=None, **kwargs):
      seen.append(y)
      return x * variables["params"]["w"]

  n, capacity, batch = 512, 512, 512
  labels = (np.arange(capacity) % 2).astype(np.int32)
  spec = programs_lib.StepSpec(batch=batch, batch_size=batch, policy="full", min_index=1,
                               data_parallel=1, ema_decay=0.0, num_classes=2, label_dropout=rate)
  schedule = diffusion.make_schedule()
  tx = optax.sgd(0.0)
  params = {"w": jnp.ones(())}
  state = ts.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                        opt_state=tx.init(params), ema_params=None,
                        order=jnp.arange(capacity, dtype=jnp.int32), key=jax.random.PRNGKey(0),
                        loss_sum=jnp.zeros(()), loss_count=jnp.zeros(()))
  inputs = dict(n=jnp.asarray(n), offset=jnp.asarray(0), mean=jnp.zeros((1,)),
                lr=jnp.asarray(0.0), labels=jnp.asarray(labels))
  pool = jnp.zeros((capacity, 1))
  with jax.disable_jit():  # eagerly, so that the recorded labels are concrete
    programs_lib.train_step(state, inputs, pool, model=Net(), tx=tx, schedule=schedule, spec=spec)
  y = np.asarray(seen[-1])
  dropped = y == 2
  assert set(np.unique(y)) <= {0, 1, 2}
  if rate == 0.0:
    assert not dropped.any()
  elif rate == 1.0:
    assert dropped.all()
  else:
    # Binomial(512, 0.3): 3.5 standard deviations.
    assert abs(dropped.mean() - rate) < 3.5 * np.sqrt(rate * (1 - rate) / batch)
  # Kept labels are the items' own: the full batch is the block in some order, so the
  # kept labels must be balanced as the block is (alternating components).
  kept = y[~dropped]
  if len(kept) > 50:
    assert abs(kept.mean() - 0.5) < 0.15


def test_sample_labels_are_balanced():
  y = np.asarray(evaluate.sample_labels(10, 2))
  np.testing.assert_array_equal(y, [0, 1] * 5)
  np.testing.assert_array_equal(np.asarray(evaluate.sample_labels(4, 3, start=2)), [2, 0, 1, 2])


def _tiny_cfg(**overrides):
  c = gmm_config.get_config("cfg_cpu")
  c.data.n_train = (16, 32)
  c.data.pool_size = 256
  c.data.num_test = 64
  c.train.num_steps = 40
  c.train.steps_per_dispatch = 40
  c.eval.times = (20, 40)
  c.eval.num_samples = 32
  c.eval.sample_batch = 32
  c.eval.sampler_steps = 10
  c.eval.n_bootstrap = 50
  c.eval.loss_noise_draws = 2
  c.report.auto = False
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


@pytest.mark.slow
def test_tiny_conditional_sweep_end_to_end(tmp_path):
  config = _tiny_cfg()
  sweep = train.Sweep(config, str(tmp_path / "w"), devices=jax.devices()[:1])
  assert sweep.inputs["labels"].shape[1] == 32  # [padded runs, capacity]
  # Each run's labels are those of its training block, which alternates the components.
  np.testing.assert_array_equal(np.asarray(sweep.inputs["labels"])[0, :16], np.arange(16) % 2)
  sweep.run()
  rows = fileio.read_jsonl(os.path.join(tmp_path, "w", "metrics.jsonl"))
  assert {r["step"] for r in rows} == {20, 40} and {r["n"] for r in rows} == {16, 32}
  for r in rows:
    assert np.isfinite(r["kl"]) and np.isfinite(r["score_error"]) and 0 <= r["f_mem"] <= 1
    assert np.isfinite(r["train_loss"]) and np.isfinite(r["test_loss"])
  assert sweep.num_params == mlp.num_params(8, 64, 2)
  with open(os.path.join(tmp_path, "w", "reference_sets.json")) as f:
    assert json.load(f)["source"] == "none"  # the GMM's KL needs no reference images


def test_conditional_config_errors():
  from jaxdiff import validation
  for key, value, name in [("model.num_classes", -1, "model.num_classes"),
                           ("train.label_dropout", 1.0, "train.label_dropout"),
                           ("eval.guidance", -0.5, "eval.guidance")]:
    with pytest.raises(ConfigError, match=name):
      validation.validate_sweep(_tiny_cfg(**{key: value}))
  with pytest.raises(ConfigError, match="model.num_classes"):
    validation.validate_sweep(_tiny_cfg(**{"model.name": "unet", "model.num_classes": 2}))
