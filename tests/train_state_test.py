"""One run's state: optimizer semantics (PyTorch's SGD and Adam), per-run learning rates,
EMA, the run table and the evaluation grid."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import base
from configs import test as test_config
from jaxdiff import eval_times
from jaxdiff import runs as runs_lib
from jaxdiff import train_state as ts


def optim_cfg(name, **kw):
  cfg = base.get_config().optim
  with cfg.unlocked():
    cfg.name = name
    for k, v in kw.items():
      cfg[k] = v
  return cfg


def test_sgd_momentum_is_pytorchs():
  # PyTorch SGD(momentum=m), no dampening/Nesterov: buf = m buf + g; p -= lr buf.
  tx = ts.make_optimizer(optim_cfg("sgd", momentum=0.95))
  p = jnp.array([1.0, -2.0])
  state = ts.set_learning_rate(tx.init(p), 0.01)
  buf, ref = np.zeros(2), np.array([1.0, -2.0])
  for g in ([0.5, 1.0], [-0.2, 0.3], [1.0, 1.0]):
    upd, state = tx.update(jnp.array(g), state, p)
    p = optax.apply_updates(p, upd)
    buf = 0.95 * buf + np.array(g)
    ref = ref - 0.01 * buf
  np.testing.assert_allclose(p, ref, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.torch
def test_adam_matches_torch():
  import torch
  tx = ts.make_optimizer(optim_cfg("adam", b1=0.9, b2=0.999, eps=1e-8))
  p = jnp.array([1.0, -2.0, 0.5])
  state = ts.set_learning_rate(tx.init(p), 1e-3)
  tp = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
  opt = torch.optim.Adam([tp], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
  for g in ([0.5, 1.0, -3.0], [-0.2, 0.3, 0.0], [1.0, 1.0, 2.0]):
    upd, state = tx.update(jnp.array(g), state, p)
    p = optax.apply_updates(p, upd)
    tp.grad = torch.tensor(g)
    opt.step()
  np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5)


def test_per_run_learning_rates_under_vmap():
  tx = ts.make_optimizer(optim_cfg("sgd", momentum=0.0))

  def one(lr):
    p = jnp.ones(3)
    state = ts.set_learning_rate(tx.init(p), lr)
    upd, _ = tx.update(jnp.ones(3), state, p)
    return optax.apply_updates(p, upd)

  out = jax.vmap(one)(jnp.array([0.1, 0.01]))
  np.testing.assert_allclose(out, [[0.9] * 3, [0.99] * 3], rtol=1e-6)


def test_unknown_optimizer():
  from jaxdiff.errors import ConfigError
  with pytest.raises(ConfigError, match="optim.name"):
    ts.make_optimizer(optim_cfg("lamb"))


def test_run_table_order_capacity_and_batches():
  config = test_config.get_config()
  with config.unlocked():
    config.data.n_train = (8, 20, 100)
    config.data.seeds = (0, 1)
    config.data.index = (0, 2)
    config.optim.lr = (1e-3, 3e-3)
    config.train.batch_size = 16
  table = runs_lib.build_run_table(config)
  assert table.num_runs == 3 * 2 * 2 * 2
  assert [(r.n, r.seed, r.index, r.lr) for r in table.runs[:3]] == [
      (8, 0, 0, 1e-3), (8, 0, 0, 3e-3), (8, 0, 2, 1e-3)]
  assert [r.run for r in table.runs] == list(range(24))
  assert table.capacity == 128  # next power of two above max n
  assert table.batch == 16
  assert table.pool_size == 300  # (index 2 + 1) x n 100
  assert table.runs[2].offset == 16
  assert runs_lib.effective_batch(8, 16, "min") == 8
  assert runs_lib.effective_batch(8, 16, "replacement") == 16
  assert runs_lib.effective_batch(100, 16, "full") == 100


def test_run_key_depends_on_seeds_only():
  a = runs_lib.run_key(0, 3)
  assert np.array_equal(a, runs_lib.run_key(0, 3))
  assert not np.array_equal(a, runs_lib.run_key(0, 4))
  assert not np.array_equal(a, runs_lib.run_key(1, 3))


def test_paper_grid():
  grid = eval_times.paper_grid()
  for t in (100_000, 190_000, 1_620_000):  # the times of the paper's Figs 2 and 6
    assert t in grid
  assert np.all(np.diff(grid) > 0)
  cfg = ml_collections.ConfigDict(dict(times=(), grid="paper", num_times=40, first_time=250))
  steps = eval_times.evaluation_steps(cfg, 2_000_000)
  assert 35 <= len(steps) <= 45 and steps[-1] == 2_000_000
  assert eval_times.evaluation_steps(cfg, 12_345)[-1] == 12_345
  cfg.grid = "log"
  cfg.num_times = 10
  steps = eval_times.evaluation_steps(cfg, 10_000)
  assert steps[0] == 250 and steps[-1] == 10_000 and len(steps) == 10
  cfg.times = (5, 50)
  assert eval_times.evaluation_steps(cfg, 100) == [5, 50, 100]


def test_octave_grid_follows_the_budget():
  cfg = ml_collections.ConfigDict(dict(times=(), grid="octaves", num_times=40, first_time=100))
  assert eval_times.evaluation_steps(cfg, 400) == [100, 150, 200, 300, 400]
  steps = eval_times.evaluation_steps(cfg, 32_000)
  assert steps[:5] == [100, 125, 188, 250, 375] and steps[-3:] == [16_000, 24_000, 32_000]
  # Two points per octave: consecutive ratios alternate between 4/3 and 3/2 above step 250.
  ratios = np.diff(np.log2(steps[3:]))
  assert np.allclose(ratios, np.where(np.arange(len(ratios)) % 2 == 0,
                                      np.log2(1.5), np.log2(4 / 3)), atol=1e-9)
  assert eval_times.evaluation_steps(cfg, 60) == [60]  # a budget below first_time


def test_digits_default_accepts_a_short_budget():
  """The first quick experiment (`--config.train.num_steps=400`) is not refused."""
  from configs import digits
  from jaxdiff import validation
  config = digits.get_config()
  config.train.num_steps = 400
  validation.validate_sweep(config)
  assert eval_times.evaluation_steps(config.eval, 400) == [100, 150, 200, 300, 400]


def test_ema_follows_parameters():
  from jaxdiff.models.mlp import ResidualMLP
  model = ResidualMLP(width=8, num_blocks=1)
  tx = ts.make_optimizer(optim_cfg("sgd"))
  state = ts.create_train_state(model, tx, runs_lib.run_key(0, 0), 0.1, 4,
                                jnp.zeros((1, 2)), 4, ema=True)
  jax.tree.map(np.testing.assert_array_equal, state.params, state.ema_params)
  assert int(state.order.pos) == 4  # the first step starts a new epoch
