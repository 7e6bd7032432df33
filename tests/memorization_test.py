"""Tests of the memorization criterion (paper eq. 6) and the f_mem bootstrap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.metrics import memorization as mem


def _brute_force(samples, train):
  """Float64 NumPy reference: full distance matrix, sorted."""
  x = np.asarray(samples, np.float64).reshape(len(samples), -1)
  a = np.asarray(train, np.float64).reshape(len(train), -1)
  d = np.sqrt(((x[:, None, :] - a[None, :, :]) ** 2).sum(-1))
  order = np.argsort(d, axis=1, kind="stable")
  ds = np.take_along_axis(d, order, axis=1)
  return ds[:, 0], ds[:, 1], order[:, 0], order[:, 1]


def _images(rng, n, shape=(8, 8, 1)):
  """Centered images in [-0.5, 0.5], as the model sees them."""
  return rng.uniform(-0.5, 0.5, (n,) + shape).astype(np.float32)


def test_blocked_matches_brute_force():
  rng = np.random.default_rng(0)
  train = _images(rng, 517)
  samples = _images(rng, 203)
  samples[:20] = train[rng.choice(517, 20)] + 0.05 * rng.normal(size=(20, 8, 8, 1))
  d1, d2, i1, i2 = _brute_force(samples, train)
  # Blocks that divide neither S nor n, so padding of both is exercised.
  nb = mem.nearest_neighbours_host(samples, train, sample_block=64, train_block=100)
  np.testing.assert_array_equal(np.asarray(nb.idx1), i1)
  np.testing.assert_array_equal(np.asarray(nb.idx2), i2)
  np.testing.assert_allclose(nb.d1, d1, rtol=1e-5)
  np.testing.assert_allclose(nb.d2, d2, rtol=1e-5)
  ratios = mem.gap_ratio(samples, train)  # default (single) blocks
  np.testing.assert_allclose(ratios, d1 / d2, rtol=1e-5)


def test_exact_copies_give_zero_and_novel_points_do_not():
  rng = np.random.default_rng(1)
  # 32x32 centered images: |a|^2 ~ 85, where the |x|^2 - 2x.a + |a|^2 expansion alone
  # would leave a copy at a distance of order 1e-3 instead of 0.
  train = _images(rng, 64, (32, 32, 1)) + 0.3
  copies = train[[3, 17, 63]]
  novel = _images(rng, 5, (32, 32, 1)) + 0.3
  ratios = np.asarray(mem.gap_ratio(np.concatenate([copies, novel]), train))
  np.testing.assert_array_equal(ratios[:3], 0.0)
  _, _, i1, _ = _brute_force(copies, train)
  np.testing.assert_array_equal(i1, [3, 17, 63])
  d1, d2, _, _ = _brute_force(novel, train)
  np.testing.assert_allclose(ratios[3:], d1 / d2, rtol=1e-5)
  assert np.all(ratios[3:] > 0.8)  # random high-dimensional points are near-equidistant


def test_near_copies_are_accurate():
  rng = np.random.default_rng(2)
  train = _images(rng, 50, (32, 32, 1)) + 0.3
  eps = np.array([1e-4, 1e-3, 1e-2, 1e-1], np.float32)
  noise = rng.normal(size=(4, 32, 32, 1)).astype(np.float32)
  samples = train[:4] + eps[:, None, None, None] * noise
  ratios = np.asarray(mem.gap_ratio(samples, train))
  d1, d2, i1, _ = _brute_force(samples, train)
  np.testing.assert_array_equal(i1, [0, 1, 2, 3])
  # Relative accuracy even at ratio ~ 1e-5 (the winners' distances are recomputed).
  np.testing.assert_allclose(ratios, d1 / d2, rtol=1e-4)
  assert ratios[0] < 1e-3 and ratios[2] < 1 / 3


def test_ties_give_ratio_one():
  rng = np.random.default_rng(3)
  train = _images(rng, 6)
  train[4] = train[1]  # a duplicated training image
  a, b = train[0], train[2]
  samples = np.stack([
      train[1] + 0.01 * rng.normal(size=train[1].shape),  # equidistant from the twins
      train[1],                                            # a copy of both twins: 0/0
      0.5 * (a + b),                                       # midpoint of two images
  ]).astype(np.float32)
  nb = mem.nearest_neighbours_host(samples, train)
  ratios = np.asarray(mem.ratios_from_neighbours(nb))
  assert sorted([int(nb.idx1[0]), int(nb.idx2[0])]) == [1, 4]
  assert ratios[0] == 1.0 and ratios[1] == 1.0
  np.testing.assert_allclose(ratios[2], 1.0, rtol=1e-5)


def test_two_training_images():
  rng = np.random.default_rng(4)
  train = _images(rng, 2)
  samples = np.concatenate([train[:1] + 0.01, _images(rng, 9)])
  ratios = np.asarray(mem.gap_ratio(samples, train))
  d1, d2, _, _ = _brute_force(samples, train)
  np.testing.assert_allclose(ratios, d1 / d2, rtol=1e-5)
  assert ratios[0] < 0.1
  with pytest.raises(ValueError, match="at least 2"):
    mem.gap_ratio(samples, train[:1])
  # The jit core with a single valid row has no second neighbour: NaN, excluded from f_mem.
  nb = mem.nearest_neighbours(samples, train, n_valid=1)
  assert np.all(np.isnan(mem.ratios_from_neighbours(nb)))


def test_padded_rows_are_never_chosen_under_jit_and_vmap():
  """The trainer's path: one jitted, vmapped call over runs with a traced n_valid.

  (The bootstrap under vmap is exercised by the coverage test.)
  """
  rng = np.random.default_rng(5)
  cap, num_models = 40, 3
  n_valid = np.array([2, 17, 40], np.int32)
  train = _images(rng, num_models * cap).reshape(num_models, cap, 8, 8, 1)
  samples = _images(rng, num_models * 30).reshape(num_models, 30, 8, 8, 1)
  samples[:, 25:] = train[:, [0, 1, 0, 1, 1]]  # copies of valid rows
  for m in range(num_models):
    # Rows past n_valid hold exact copies of the samples: they would win if not masked.
    pad_rows = train[m, n_valid[m]:]
    samples[m, :len(pad_rows[:25])] = pad_rows[:25]
  fn = jax.jit(jax.vmap(lambda s, a, n, key: mem.memorization_metrics(
      s, a, n, key, ks=(1 / 3, 1 / 2), n_bootstrap=0, sample_block=16, train_block=8)))
  out = fn(jnp.asarray(samples), jnp.asarray(train), jnp.asarray(n_valid),
           jax.random.split(jax.random.PRNGKey(0), num_models))
  assert out["f_mem"].shape == (num_models, 2)
  for m in range(num_models):
    d1, d2, i1, _ = _brute_force(samples[m], train[m, :n_valid[m]])
    np.testing.assert_array_equal(out["idx1"][m], i1)
    np.testing.assert_allclose(out["d1"][m], d1, rtol=1e-5, atol=1e-6)
    ratios = np.where(d2 > 0, d1 / np.where(d2 > 0, d2, 1), 1.0)
    np.testing.assert_allclose(out["ratios"][m], ratios, rtol=1e-5)
    np.testing.assert_allclose(out["f_mem"][m], [np.mean(ratios < 1 / 3), np.mean(ratios < 0.5)],
                               rtol=1e-6)
  np.testing.assert_array_equal(out["idx1"][:, 25:], np.tile([0, 1, 0, 1, 1], (num_models, 1)))
  assert np.all(out["f_mem"][:, 0] >= 5 / 30)


def test_memorized_fraction_on_constructed_set():
  rng = np.random.default_rng(6)
  train = _images(rng, 100, (16, 16, 1))
  samples = _images(rng, 200, (16, 16, 1))
  samples[:60] = train[:60] + 0.001 * rng.normal(size=(60, 16, 16, 1))  # 30% copies
  res = mem.memorized_fraction(jnp.asarray(samples), train, k=1 / 3, seed=1)
  assert res.fraction == pytest.approx(0.3)
  assert mem.memorized_fraction(samples, train, seed=1) == res  # seeded
  # The binomial shortcut against the textbook bootstrap (resampled indices): the
  # percentiles of two 1000-draw bootstraps agree to within a count or two (1/200).
  indicators = np.arange(200) < 60
  idx_boot = indicators[rng.integers(0, 200, (1000, 200))].mean(axis=1)
  np.testing.assert_allclose([res.lo, res.hi], np.quantile(idx_boot, [0.025, 0.975]),
                             atol=2 / 200)
  # Both have the width of a binomial proportion's 95% interval, +-1.96 sqrt(f(1-f)/S).
  assert res.hi - res.lo == pytest.approx(2 * 1.96 * np.sqrt(0.3 * 0.7 / 200), rel=0.15)
  assert np.isnan(mem.memorized_fraction(samples, train, n_bootstrap=0).lo)


def test_fmem_stats_thresholds_median_and_nan():
  ratios = jnp.asarray([0.1, 0.2, 0.3, 0.4, 0.6, 0.9, jnp.nan])
  out = mem.fmem_stats(ratios, (1 / 3, 1 / 2, 1 / 4), n_bootstrap=0)
  np.testing.assert_allclose(out["f_mem"], [3 / 6, 4 / 6, 2 / 6], rtol=1e-6)
  assert int(out["num_samples"]) == 6  # the NaN is excluded, not counted as novel
  assert float(out["ratio_median"]) == pytest.approx(0.35)
  assert np.all(np.isnan(out["f_mem_lo"]))


@pytest.mark.slow
def test_bootstrap_interval_coverage():
  """The 95% interval covers the true fraction in ~95% of simulated experiments."""
  trials, s = 600, 400

  def one(key, p):
    k_data, k_boot = jax.random.split(key)
    ratios = jnp.where(jax.random.uniform(k_data, (s,)) < p, 0.0, 1.0)
    out = mem.fmem_stats(ratios, (0.5,), k_boot, 1000)
    return (out["f_mem_lo"][0] <= p) & (p <= out["f_mem_hi"][0])

  coverage_fn = jax.jit(jax.vmap(one, in_axes=(0, None)))
  for p in (0.05, 0.3):
    keys = jax.random.split(jax.random.PRNGKey(int(p * 100)), trials)
    coverage = float(jnp.mean(coverage_fn(keys, p)))
    # Binomial tolerance: 4 standard errors of a 0.95 proportion over 600 trials (0.036).
    assert abs(coverage - 0.95) < 4 * np.sqrt(0.95 * 0.05 / trials), (p, coverage)
