"""Frechet distance against closed forms and independent implementations; moments; cache."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxdiff.metrics import fid


def _random_spd(rng, d, cond=10.0):
  q, _ = np.linalg.qr(rng.standard_normal((d, d)))
  return (q * np.geomspace(1.0, 1.0 / cond, d)) @ q.T, q


def _fd_with_scipy_sqrtm(mu1, s1, mu2, s2):
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_diagonal_and_commuting_covariances_closed_form():
  rng = np.random.default_rng(0)
  d = 40
  a, b = rng.uniform(0.01, 3.0, d), rng.uniform(0.01, 3.0, d)
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  # Commuting covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
  expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), expect,
                             rtol=1e-12)
  _, q = _random_spd(rng, d)  # same eigenbasis, rotated
  s1, s2 = (q * a) @ q.T, (q * b) @ q.T
  np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), expect, rtol=1e-10)
  # sigma2 = c^2 sigma1: tr(sigma1) (1 - c)^2.
  np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu1, 2.25 * s1),
                             0.25 * np.trace(s1), rtol=1e-10)


def test_identical_statistics_give_zero():
  rng = np.random.default_rng(1)
  s, _ = _random_spd(rng, 256, cond=1e4)
  mu = rng.standard_normal(256)
  d = fid.frechet_distance(mu, s, mu, s)
  assert abs(d) < 1e-10 * np.trace(s)


def test_random_spd_matches_scipy_sqrtm():
  rng = np.random.default_rng(2)
  for d, cond in [(5, 3.0), (64, 100.0), (150, 1e3)]:
    s1, _ = _random_spd(rng, d, cond)
    s2, _ = _random_spd(rng, d, cond)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2),
                               _fd_with_scipy_sqrtm(mu1, s1, mu2, s2), rtol=1e-9)
    # A precomputed reference root gives the same value.
    np.testing.assert_allclose(
        fid.frechet_distance(mu1, s1, mu2, s2, sqrt_sigma2=fid.sqrt_psd(s2)),
        fid.frechet_distance(mu1, s1, mu2, s2), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.torch
def test_matches_pytorch_fid_calculate_frechet_distance():
  fid_score = pytest.importorskip("pytorch_fid.fid_score")
  rng = np.random.default_rng(3)
  f1 = rng.standard_normal((500, 64)) @ rng.standard_normal((64, 64))
  f2 = rng.standard_normal((400, 64)) * 1.3 + 0.2
  a, b = fid.statistics(f1), fid.statistics(f2)
  np.testing.assert_allclose(fid.frechet_distance(*a, *b),
                             fid_score.calculate_frechet_distance(*a, *b), rtol=1e-8)


def test_rank_deficient_covariances_closed_form():
  """sigma1 = A A^T, sigma2 = B B^T of rank k: tr((sigma1 sigma2)^(1/2)) = ||A^T B||_*."""
  rng = np.random.default_rng(4)
  d, k = 200, 12
  a, b = rng.standard_normal((d, k)), rng.standard_normal((d, k))
  s1, s2 = a @ a.T, b @ b.T
  exact = np.linalg.svd(a.T @ b, compute_uv=False).sum()
  got = fid.trace_sqrt_product(s1, s2)
  # Covariance route: sqrt(eps) error on the d - k zero eigenvalues at most.
  np.testing.assert_allclose(got, exact, rtol=1e-6)
  # The sample-space route is exact for few samples.
  f1 = rng.standard_normal((9, d)) + 1.0
  f2 = rng.standard_normal((14, d)) * 2.0
  np.testing.assert_allclose(fid.frechet_distance_of_features(f1, f2),
                             fid.frechet_distance(*fid.statistics(f1), *fid.statistics(f2)),
                             rtol=1e-7)
  # Many samples: the same function takes the covariance route.
  g1, g2 = rng.standard_normal((300, 8)), rng.standard_normal((300, 8)) + 0.5
  np.testing.assert_allclose(fid.frechet_distance_of_features(g1, g2),
                             _fd_with_scipy_sqrtm(*fid.statistics(g1), *fid.statistics(g2)),
                             rtol=1e-9)


def test_gaussian_features_shift():
  """Identical sets -> 0; a shift delta -> |delta|^2 exactly for the same set, and up to
  sampling error for fresh samples of N(delta, C) (the population distance is |delta|^2)."""
  rng = np.random.default_rng(5)
  f, n = 16, 20000
  mix = rng.standard_normal((f, f)) / np.sqrt(f)
  x = rng.standard_normal((n, f)) @ mix + 0.4
  stats = fid.statistics(x)
  tol = 1e-11 * np.trace(stats[1])  # rounding only
  assert abs(fid.frechet_distance(*stats, *stats)) < tol
  for scale in [0.1, 1.0, 3.0]:
    delta = scale * rng.standard_normal(f)
    np.testing.assert_allclose(fid.frechet_distance(*stats, *fid.statistics(x + delta)),
                               delta @ delta, rtol=1e-9)
    y = rng.standard_normal((n, f)) @ mix + 0.4 + delta
    got = fid.frechet_distance(*stats, *fid.statistics(y))
    # Sampling noise of two 20k-sample estimates: a few 1e-3 in the trace terms.
    assert abs(got - delta @ delta) < 0.02 * delta @ delta + 0.01
  # Monotone in the size of the shift.
  ds = [fid.frechet_distance(*stats, *fid.statistics(x + c)) for c in (0.0, 0.1, 0.2, 0.4)]
  assert ds == sorted(ds) and abs(ds[0]) < tol


def test_feature_moments_float32_accuracy_and_transforms():
  rng = np.random.default_rng(6)
  s, f = 10_000, 64
  # Large common offset and unequal scales: naive float32 E[xx] - E[x]E[x] loses ~all digits.
  x = (rng.standard_normal((s, f)) * np.geomspace(0.01, 3, f) + 1e3).astype(np.float32)
  mu, sigma = jax.jit(fid.feature_moments)(x)
  assert mu.dtype == jnp.float32 and sigma.shape == (f, f)
  mu64, sigma64 = fid.statistics(x)
  np.testing.assert_allclose(np.asarray(mu), mu64, rtol=1e-6)
  # Relative to each entry's scale sqrt(sigma_ii sigma_jj).
  scale = np.sqrt(np.outer(np.diag(sigma64), np.diag(sigma64)))
  assert np.max(np.abs(np.asarray(sigma, np.float64) - sigma64) / scale) < 1e-5
  naive = (x.T @ x) / s - np.outer(x.mean(0), x.mean(0))
  assert np.max(np.abs(naive - sigma64) / scale) > 1e-2  # the care is needed
  # vmap over runs gives each run's moments.
  xs = np.stack([x[:500], x[500:1000] * 2, x[1000:1500] - 3])
  mus, sigmas = jax.jit(jax.vmap(fid.feature_moments))(xs)
  for i in range(3):
    m_i, s_i = fid.feature_moments(xs[i])
    np.testing.assert_allclose(mus[i], m_i, rtol=1e-6)
    sc = np.sqrt(np.outer(np.diag(s_i), np.diag(s_i)))  # summation order may differ
    assert np.max(np.abs(np.asarray(sigmas[i]) - np.asarray(s_i)) / sc) < 1e-5


def test_compute_features_batches_and_scales_uint8():
  rng = np.random.default_rng(7)
  imgs = rng.integers(0, 256, (23, 4, 4, 1), dtype=np.uint8)

  def features(params, x):
    return jnp.concatenate([x.reshape(x.shape[0], -1) * params, x.mean((1, 2))], axis=1)

  expect = features(2.0, imgs.astype(np.float32) / 255)
  for b in (1, 5, 23, 100):
    got = fid.compute_features(features, 2.0, imgs, batch_size=b)
    assert got.shape == (23, 17) and got.dtype == np.float32
    np.testing.assert_allclose(got, expect, rtol=1e-6)
  with pytest.raises(ValueError):
    fid.compute_features(features, 2.0, imgs.astype(np.int32))


def test_reference_statistics_cached_and_keyed(tmp_path):
  rng = np.random.default_rng(8)
  sets = [rng.random((50, 3, 3, 1)).astype(np.float32) for _ in range(3)]

  def flat(params, x):
    return x.reshape(x.shape[0], -1) * params

  stats, path = fid.reference_statistics(flat, 1.0, sets, metric_key="pixel_fd",
                                         cache_dir=str(tmp_path), batch_size=16)
  assert len(stats) == 3 and os.path.exists(path)
  for (mu, sigma), r in zip(stats, sets):
    mu64, s64 = fid.statistics(r.reshape(50, -1))
    np.testing.assert_allclose(mu, mu64, rtol=1e-6)
    np.testing.assert_allclose(sigma, s64, rtol=1e-5, atol=1e-9)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64

  def must_not_run(params, x):
    raise AssertionError("recomputed although cached")

  again, path2 = fid.reference_statistics(must_not_run, 1.0, sets, metric_key="pixel_fd",
                                          cache_dir=str(tmp_path), batch_size=16)
  assert path2 == path
  for (m1, s1), (m2, s2) in zip(stats, again):
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(s1, s2)
  # Other data, other parameters or another metric: another key.
  sets2 = [s.copy() for s in sets]
  sets2[2][0, 0, 0, 0] += 0.5
  _, p_data = fid.reference_statistics(flat, 1.0, sets2, metric_key="pixel_fd",
                                       cache_dir=str(tmp_path))
  _, p_params = fid.reference_statistics(flat, 2.0, sets, metric_key="pixel_fd",
                                         cache_dir=str(tmp_path))
  _, p_metric = fid.reference_statistics(flat, 1.0, sets, metric_key="other",
                                         cache_dir=str(tmp_path))
  assert len({path, p_data, p_params, p_metric}) == 4
  # A damaged cache file is recomputed and replaced.
  with open(path, "wb") as f:
    f.write(b"garbage")
  fixed, _ = fid.reference_statistics(flat, 1.0, sets, metric_key="pixel_fd",
                                      cache_dir=str(tmp_path))
  np.testing.assert_array_equal(fixed[0][1], stats[0][1])
  # No cache dir: nothing written.
  _, none = fid.reference_statistics(flat, 1.0, sets, metric_key="pixel_fd")
  assert none == ""
