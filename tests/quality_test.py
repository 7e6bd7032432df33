"""The quality metric the trainer uses: FID, the digit-classifier substitute, pixel space."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxdiff.errors import ConfigError, DataError
from jaxdiff.metrics import fid
from jaxdiff.metrics import inception
from jaxdiff.metrics import quality


def test_kind_and_input_errors(tmp_path):
  refs = [np.zeros((4, 8, 8, 1), np.float32)]
  with pytest.raises(ConfigError, match="eval.quality"):
    quality.make_quality_metric("inception", reference_sets=refs)
  with pytest.raises(ConfigError, match="labelled"):
    quality.make_quality_metric("classifier_fd", reference_sets=refs)
  for weights in ["", str(tmp_path / "pt_inception.pth")]:
    with pytest.raises(DataError) as e:
      quality.make_quality_metric("fid", reference_sets=refs, inception_weights=weights)
    assert "--config.eval.inception_weights=PATH" in str(e.value)
    assert inception.FID_WEIGHTS_URL in str(e.value) and "\n" not in str(e.value)
  with pytest.raises(ValueError):
    quality.make_quality_metric("pixel_fd", reference_sets=[np.zeros((1, 3))])


def test_pixel_fd_on_vectors_is_the_gaussian_closed_form(tmp_path):
  rng = np.random.default_rng(0)
  d, n = 8, 4000
  mix = rng.standard_normal((d, d)) / np.sqrt(d)
  refs = [rng.standard_normal((n, d)) @ mix for _ in range(3)]
  metric = quality.make_quality_metric("pixel_fd", reference_sets=refs, cache_dir=str(tmp_path))
  assert metric.name == "pixel_fd" and "not FID" in metric.label and "data space" in metric.label
  assert len(metric.ref_stats) == 3 and metric.ref_stats[0][1].shape == (d, d)

  moments = jax.jit(lambda x: fid.feature_moments(metric.features(metric.params, x)))
  # The first reference set itself: distance 0 to itself, sampling noise to the others.
  per_set = metric.distances(*moments(refs[0].astype(np.float32)))
  assert abs(per_set[0]) < 1e-5 and 0 < per_set[1] < 0.05
  mean, std = metric.distance(*moments(refs[0].astype(np.float32)))
  np.testing.assert_allclose([mean, std], [per_set.mean(), per_set.std()])
  # A mean shift delta: the population distance is |delta|^2 (same covariance).
  delta = 0.7 * rng.standard_normal(d)
  y = (rng.standard_normal((n, d)) @ mix + delta).astype(np.float32)
  mean, std = metric.distance(*moments(y))
  assert abs(mean - delta @ delta) < 0.03 * delta @ delta + 0.02
  assert 0 < std < 0.05 * mean
  np.testing.assert_allclose(metric.score(y), (mean, std), rtol=1e-4)
  # vmap over runs (the trainer's models axis).
  mus, sigmas = jax.vmap(moments)(jnp.stack([y, y + 1.0]))
  np.testing.assert_allclose(metric.distance(mus[0], sigmas[0])[0], mean, rtol=1e-6)
  assert metric.distance(mus[1], sigmas[1])[0] > mean


@pytest.fixture(scope="module")
def digits():
  data = load_digits()
  x = (data.images / 16.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1] in [0, 1]
  perm = np.random.default_rng(0).permutation(len(x))
  x, y = x[perm], data.target[perm]
  return x[:1197], y[:1197], x[1197:1497], x[1497:], y[1497:]


@pytest.mark.slow
def test_classifier_fd_on_digits_ranks_sample_quality(digits, tmp_path, monkeypatch):
  x_train, y_train, ref, other, y_other = digits
  # Width 16 at batch 32: 0.94 validation accuracy in 200 steps; the default width 32 at
  # batch 64 reached 0.95 in 150 steps but took 36 s here against 6 s (the tests compile
  # at XLA:CPU's level 0, tests/conftest.py, where these convolutions run slowly).
  cfg = quality.ClassifierConfig(steps=200, batch_size=32, width=16)
  metric = quality.make_quality_metric(
      "classifier_fd", reference_sets=[ref], train_images=x_train, train_labels=y_train,
      cache_dir=str(tmp_path), seed=1, classifier=cfg)
  assert metric.name == "classifier_fd" and "not FID" in metric.label
  assert metric.info["classifier_val_accuracy"] > 0.9  # a real classifier, not noise
  assert metric.info["feature_dim"] == cfg.feature_dim

  score = lambda images: metric.score(images)[0]
  rng = np.random.default_rng(1)
  d_real = score(other)  # fresh real digits: the floor set by sampling noise
  d_noisy = score(np.clip(other + 0.25 * rng.standard_normal(other.shape), 0, 1))
  d_one_class = score(other[y_other == 1])  # mode collapse onto one digit
  d_noise = score(rng.random(other.shape).astype(np.float32))
  assert d_real < 0.5 * d_noisy < d_noise
  assert 3 * d_real < d_one_class
  # Features are pure, jit- and vmap-able; batches of one shape.
  f = jax.jit(jax.vmap(metric.features, in_axes=(None, 0)))(metric.params, other[:20].reshape(
      2, 10, 8, 8, 1))
  np.testing.assert_allclose(f.reshape(20, -1), metric.features(metric.params, other[:20]),
                             rtol=1e-5, atol=1e-6)

  # Built again: classifier and reference statistics come from the cache.
  def fail(*args, **kwargs):
    raise AssertionError("recomputed although cached")

  monkeypatch.setattr(quality, "_train_classifier", fail)
  monkeypatch.setattr(fid, "compute_features", fail)
  again = quality.make_quality_metric(
      "classifier_fd", reference_sets=[ref], train_images=x_train, train_labels=y_train,
      cache_dir=str(tmp_path), seed=1, classifier=cfg)
  assert again.info["classifier_val_accuracy"] == metric.info["classifier_val_accuracy"]
  leaves = jax.tree_util.tree_leaves
  for a, b in zip(leaves(again.params), leaves(metric.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(again.ref_stats[0][1], metric.ref_stats[0][1])


def _random_inception_npz(path):
  """A random-weight FID Inception in the converter's .npz format (no torch needed)."""
  rng = np.random.default_rng(0)
  arrays = {"__format__": np.asarray(inception.NPZ_FORMAT)}
  for p, shape in inception._param_shapes().items():
    if p[-1] != "kernel":
      continue
    name = ".".join(p[:-2])
    kh, kw, cin, cout = shape
    arrays[f"{name}.conv.weight"] = (rng.standard_normal((cout, cin, kh, kw)) *
                                     np.sqrt(2.0 / (kh * kw * cin))).astype(np.float32)
    arrays[f"{name}.bn.weight"] = np.ones(cout, np.float32)
    arrays[f"{name}.bn.bias"] = np.zeros(cout, np.float32)
    arrays[f"{name}.bn.running_mean"] = np.zeros(cout, np.float32)
    arrays[f"{name}.bn.running_var"] = np.ones(cout, np.float32)
  np.savez(path, **arrays)


@pytest.mark.slow
def test_fid_metric_from_converted_weights(tmp_path, monkeypatch):
  weights = str(tmp_path / "inception.npz")
  _random_inception_npz(weights)
  rng = np.random.default_rng(2)
  refs = [rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8) for _ in range(2)]
  metric = quality.make_quality_metric("fid", reference_sets=refs, inception_weights=weights,
                                       cache_dir=str(tmp_path), batch_size=3)
  assert metric.name == "fid" and metric.label.startswith("FID")
  assert [m.shape for m, _ in metric.ref_stats] == [(2048,), (2048,)]
  assert metric.ref_stats[0][1].shape == (2048, 2048) and metric.ref_stats[0][1].dtype == np.float64
  # The reference features are those of the images scaled to [0, 1].
  feats = np.asarray(jax.jit(metric.features)(metric.params, refs[0] / np.float32(255)))
  np.testing.assert_allclose(metric.ref_stats[0][0], feats.mean(0), rtol=1e-5, atol=1e-6)

  monkeypatch.setattr(fid, "compute_features",
                      lambda *a, **k: (_ for _ in ()).throw(AssertionError("not cached")))
  again = quality.make_quality_metric("fid", reference_sets=refs, inception_weights=weights,
                                      cache_dir=str(tmp_path), batch_size=3)
  np.testing.assert_array_equal(again.ref_stats[1][1], metric.ref_stats[1][1])
