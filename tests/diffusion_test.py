"""Schedule, noising, losses and samplers against closed forms.

The samplers are checked with the exact score of Gaussian data N(m, s^2 I): at DDPM
index i, x_i ~ N(sqrt(ab) m, ab s^2 + 1 - ab), so the exact noise predictor is
eps*(x, i) = sqrt(1 - ab) (x - sqrt(ab) m) / (ab s^2 + 1 - ab).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion

SCHED = diffusion.make_schedule()
M, S2 = np.array([1.5, -0.5]), 0.25


def exact_eps(x, i):
  ab = SCHED.alpha_bars[i][:, None]
  return jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * M) / (ab * S2 + 1 - ab)


def test_schedule_values():
  ab = np.asarray(SCHED.alpha_bars, np.float64)
  assert SCHED.betas.shape == (1000,)
  np.testing.assert_allclose(SCHED.betas[0], 1e-4, rtol=1e-6)
  np.testing.assert_allclose(SCHED.betas[-1], 2e-2, rtol=1e-6)
  # paper.md 1.3: t = 0.01 <-> index 40 (alpha_bar = 0.9798, t = 0.0102).
  assert diffusion.index_for_ou_time(SCHED, 0.01) == 40
  np.testing.assert_allclose(ab[40], 0.9798, atol=1e-4)
  np.testing.assert_allclose(float(diffusion.ou_time(SCHED, 40)), 0.0102, atol=1e-4)
  # OU time is increasing and inverts.
  t = np.asarray(diffusion.ou_time(SCHED, jnp.arange(1000)))
  assert np.all(np.diff(t) > 0)
  for i in (0, 7, 500, 999):
    assert diffusion.index_for_ou_time(SCHED, float(t[i])) == i


def test_q_sample_moments():
  key = jax.random.PRNGKey(0)
  x0 = jnp.ones((20000, 3))
  idx = jnp.full((20000,), 300)
  noise = jax.random.normal(key, x0.shape)
  xt = diffusion.q_sample(SCHED, x0, idx, noise)
  ab = float(SCHED.alpha_bars[300])
  np.testing.assert_allclose(xt.mean(), np.sqrt(ab), atol=0.01)
  np.testing.assert_allclose(xt.var(), 1 - ab, rtol=0.03)


def test_eps_loss_weights_select_samples():
  key = jax.random.PRNGKey(1)
  x0 = jax.random.normal(key, (8, 4))
  zero_fn = lambda x, i: jnp.zeros_like(x)
  w = jnp.array([1.0] * 3 + [0.0] * 5)
  idx, noise = diffusion.sample_train_noise(key, x0, SCHED)
  total, count = diffusion.eps_loss(zero_fn, SCHED, x0, w, idx, noise)
  # With eps_hat = 0 the per-sample loss is mean(eps^2) over the first three samples.
  assert idx.min() >= 1 and idx.max() <= 999
  expected = jnp.sum(jnp.mean(noise[:3] ** 2, axis=1))
  np.testing.assert_allclose(total, expected, rtol=1e-6)
  assert float(count) == 3.0


def test_fixed_time_loss_exact_predictor_is_exact():
  # With the exact eps* for x0 = m (a point mass: s^2 = 0), eps_hat = eps exactly -> loss 0.
  def point_eps(x, i):
    ab = SCHED.alpha_bars[i][:, None]
    return (x - jnp.sqrt(ab) * M) / jnp.sqrt(1 - ab)
  x0 = jnp.tile(jnp.asarray(M, jnp.float32), (37, 1))
  w = jnp.ones((37,))
  mean, std = diffusion.fixed_time_loss(point_eps, SCHED, x0, w, 40, jax.random.PRNGKey(2),
                                        num_draws=3, batch_size=16)
  assert float(mean) < 1e-6
  # A zero predictor has loss E[eps^2] = 1, padded chunks excluded by the weights.
  zero_fn = lambda x, i: jnp.zeros_like(x)
  mean, std = diffusion.fixed_time_loss(zero_fn, SCHED, x0, w, 40, jax.random.PRNGKey(2),
                                        num_draws=4, batch_size=16)
  np.testing.assert_allclose(float(mean), 1.0, atol=0.2)
  assert float(std) > 0


def test_sampler_indices_match_authors_grid():
  grid = diffusion.sampler_indices(1000, 99)
  np.testing.assert_array_equal(grid, np.linspace(0, 999, 100, dtype=int)[::-1])
  assert len(diffusion.sampler_indices(1000, 200)) == 201
  with pytest.raises(ValueError):
    diffusion.sampler_indices(1000, 1000)


@pytest.mark.parametrize("kind,steps,eta", [("ddim", 200, 0.0), ("ddim", 999, 1.0),
                                            ("ddpm", 999, 0.0), ("em", 999, 0.0)])
@pytest.mark.slow
def test_samplers_reproduce_gaussian(kind, steps, eta):
  n = 20000
  x = jax.jit(lambda k: diffusion.sample(kind, exact_eps, SCHED, k, (n, 2), steps, eta))(
      jax.random.PRNGKey(3))
  x = np.asarray(x, np.float64)
  # Sampling error of the mean: sqrt(s^2 / n) = 0.0035; of the variance: s^2 sqrt(2/n) = 0.0025.
  # The discretisation adds a little; the final iterate is at index 0 (variance + 1e-4).
  np.testing.assert_allclose(x.mean(0), M, atol=0.02)
  np.testing.assert_allclose(x.var(0), S2, atol=0.02)
  assert abs(np.cov(x.T)[0, 1]) < 0.015


def test_ddim_deterministic_and_invertible():
  key = jax.random.PRNGKey(4)
  x_T = jax.random.normal(key, (64, 2))
  run = jax.jit(lambda x: diffusion.ddim_sample(exact_eps, SCHED, x, 999))
  a, b = run(x_T), run(x_T)
  np.testing.assert_array_equal(a, b)
  # Encoding the samples with the same ODE returns the starting noise.
  back = jax.jit(lambda x: diffusion.ddim_encode(exact_eps, SCHED, x, 999))(a)
  np.testing.assert_allclose(back, x_T, atol=2e-2)


def test_vmappable_over_models():
  # Two "models" (different means) sampled in one vmapped call equal separate calls.
  means = jnp.array([[1.0, 0.0], [-1.0, 2.0]])

  def run(m, key):
    def eps(x, i):
      ab = SCHED.alpha_bars[i][:, None]
      return jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * m) / (ab * S2 + 1 - ab)
    return diffusion.sample("ddim", eps, SCHED, key, (16, 2), 50)

  keys = jax.random.split(jax.random.PRNGKey(5), 2)
  together = jax.jit(jax.vmap(run))(means, keys)
  for r in range(2):
    np.testing.assert_allclose(together[r], jax.jit(run)(means[r], keys[r]), atol=1e-5)


def test_fixed_time_loss_independent_of_chunking_and_padding():
  # A run alone (12 images) and inside a sweep of larger capacity (padded to 32) must see
  # the same noise per image, whatever the chunk size.
  key = jax.random.PRNGKey(6)
  x0 = jax.random.normal(key, (12, 3))
  eps_fn = lambda x, i: 0.5 * x
  a = diffusion.fixed_time_loss(eps_fn, SCHED, x0, jnp.ones(12), 40, key, 3, batch_size=4)
  padded = jnp.concatenate([x0, jnp.full((20, 3), 7.0)])
  w = jnp.concatenate([jnp.ones(12), jnp.zeros(20)])
  b = diffusion.fixed_time_loss(eps_fn, SCHED, padded, w, 40, key, 3, batch_size=8)
  np.testing.assert_allclose(a, b, rtol=1e-6)


def test_fixed_time_loss_hands_each_item_its_own_label_in_every_chunking():
  """A conditional model's fixed-time loss: the labels travel with their items' chunks."""
  schedule = diffusion.make_schedule()
  x0 = jax.random.normal(jax.random.PRNGKey(0), (10, 3))
  labels = jnp.asarray([0, 1, 2, 0, 1, 2, 2, 1, 0, 1], jnp.int32)
  weights = jnp.ones((10,))
  # A model whose prediction depends on the label only: eps_hat = y * 1.
  eps_fn = lambda x, i, y: jnp.broadcast_to(y[:, None].astype(x.dtype), x.shape)
  key = jax.random.PRNGKey(1)
  whole = diffusion.fixed_time_loss(eps_fn, schedule, x0, weights, 40, key, 3, 1024,
                                    labels=labels)
  chunked = diffusion.fixed_time_loss(eps_fn, schedule, x0, weights, 40, key, 3, 4,
                                      labels=labels)
  np.testing.assert_allclose(whole, chunked, rtol=1e-6)
  # The same loss by hand: the noise of item j in draw k is drawn from fold_in(fold_in(key, k), j).
  per_draw = []
  for k in range(3):
    dk = jax.random.fold_in(key, k)
    noise = jnp.stack([jax.random.normal(jax.random.fold_in(dk, j), (3,)) for j in range(10)])
    per_draw.append(float(jnp.mean((noise - labels[:, None]) ** 2)))
  np.testing.assert_allclose(whole[0], np.mean(per_draw), rtol=1e-5)
