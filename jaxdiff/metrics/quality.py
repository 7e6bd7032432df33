"""The sample-quality metric of a run: FID, or a labelled download-free substitute.

Three kinds, all a Frechet distance between Gaussians fitted to features of generated
samples and of held-out reference images (paper.md 1.6: 5 disjoint sets of 10,000 test
images, mean and 2 x std over the sets):

  fid            Inception-v3 pool3 features of pytorch-fid's FID network
                 (`jaxdiff.metrics.inception`); needs pytorch-fid's weight file.
  classifier_fd  features of the penultimate layer of a small CNN that jaxdiff trains on
                 the labelled training data itself (sklearn digits, CIFAR-10), cached.
                 Not FID: its values are not comparable with published FIDs.
  pixel_fd       the raw pixels (or the vectors of vector data). Not FID either.

Every value of eval.quality is a registered `QualityKind` (`kind_for(name)`): whether it
needs reference images, how it is built for real (`make_quality_metric`) and abstractly for
the planner (`abstract(data_shape)`). The GMM's KL estimate ("gmm") and
"none" are kinds too, without features.

The trainer builds one metric per job and, per run and evaluation time, computes
`mu, sigma = feature_moments(metric.features(metric.params, samples))` on device, then
`metric.distance(mu, sigma)` on the host.

Usage:
  metric = make_quality_metric("classifier_fd", reference_sets=[held_out],
                               train_images=x, train_labels=y, cache_dir=workdir + "/cache")
  mu, sigma = jax.jit(lambda s: feature_moments(metric.features(metric.params, s)))(samples)
  mean, std = metric.distance(mu, sigma)
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxdiff import fileio
from jaxdiff.errors import ConfigError
from jaxdiff.metrics import fid
from jaxdiff.metrics import inception
from jaxdiff.metrics.fid import feature_moments  # noqa: F401  (re-exported for the trainer)

CLASSIFIER_VERSION = 1


@dataclasses.dataclass(frozen=True)
class QualityMetric:
  """A Frechet distance in some feature space, with the reference sets' statistics.

  Attributes:
    name: "fid" | "classifier_fd" | "pixel_fd" (a substitute is never called "fid").
    label: human label for plots and reports.
    params: pytree the feature function needs (None for pixel_fd).
    features: features(params, images) -> [B, F] float32; pure, jit- and vmap-able.
      images: [B, H, W, C] in [0, 1] (the trainer adds the run mean back and clamps),
      or [B, d] vectors for pixel_fd on vector data.
    ref_stats: one (mu [F] float64, sigma [F, F] float64) per disjoint reference set.
    info: what was measured while building it (classifier accuracy, cache files, sizes).
  """
  name: str
  label: str
  params: Any
  features: Callable
  ref_stats: list
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

  @functools.cached_property
  def _ref_roots(self) -> list[np.ndarray]:
    # Each reference covariance's square root, computed once (one F x F eigh each).
    return [fid.sqrt_psd(sigma) for _, sigma in self.ref_stats]

  def distances(self, mu, sigma) -> np.ndarray:
    """Frechet distance of N(mu, sigma) to each reference set, float64 [num_sets]."""
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    return np.array([fid.frechet_distance(mu, sigma, m, s, sqrt_sigma2=r)
                     for (m, s), r in zip(self.ref_stats, self._ref_roots)])

  def distance(self, mu, sigma) -> tuple[float, float | None]:
    """Mean and std (ddof = 0, np.std's default) of the distances to the reference sets.

    The paper's error bars are 2 x this std over its 5 sets. With one set there is no
    spread to measure: the std is None (not 0, which would read as a noiseless metric).
    """
    d = self.distances(mu, sigma)
    return float(d.mean()), (float(d.std()) if d.size > 1 else None)

  def score(self, images: np.ndarray, *, batch_size: int = 250) -> tuple[float, float]:
    """`distance` of a host array of images (features in batches, moments in float64)."""
    feats = fid.compute_features(self.features, self.params, images, batch_size=batch_size)
    return self.distance(*fid.statistics(feats))


# ------------------------------------------------------------------ the classifier


class SmallClassifier(nn.Module):
  """A small CNN whose penultimate layer gives the classifier_fd features.

  3x3 convolutions (width, 2 width stride 2, 4 width stride 2), global mean pool,
  Dense(feature_dim) + ReLU (the features), Dense(num_classes). Works from 8x8 (digits)
  to 32x32 (CIFAR-10) inputs in [0, 1].
  """
  num_classes: int
  width: int = 32
  feature_dim: int = 64

  def setup(self):
    self.convs = [nn.Conv(self.width, (3, 3)),
                  nn.Conv(2 * self.width, (3, 3), strides=2),
                  nn.Conv(4 * self.width, (3, 3), strides=2)]
    self.penultimate = nn.Dense(self.feature_dim)
    self.head = nn.Dense(self.num_classes)

  def features(self, images):
    x = jnp.asarray(images, jnp.float32) - 0.5
    for conv in self.convs:
      x = nn.relu(conv(x))
    return nn.relu(self.penultimate(jnp.mean(x, axis=(1, 2))))

  def __call__(self, images):
    return self.head(self.features(images))


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  width: int = 32
  feature_dim: int = 64
  steps: int = 1500
  batch_size: int = 128
  learning_rate: float = 1e-3
  val_fraction: float = 0.1


def _as_images(x: np.ndarray, what: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(f"{what}: expected images [N, H, W, C], got shape {x.shape}")
  if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"{what}: images must be uint8 or float in [0, 1], got {x.dtype}")
  return x


def _to_unit(x):
  """uint8 -> [0, 1]; floats pass (on device, inside jit)."""
  return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


def _train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int,
                      cfg: ClassifierConfig, seed: int) -> tuple[Any, float]:
  """Trains SmallClassifier with Adam on a random split; returns (params, val accuracy).

  Batches are drawn on device (with replacement) by a jitted step that takes the data as
  an argument, so the data is not baked into the compiled program as a constant. (One
  lax.scan over all steps that closed over the data was far slower on CPU.)
  """
  n = len(images)
  perm = np.random.default_rng(seed).permutation(n)
  n_val = int(round(cfg.val_fraction * n)) if n >= 20 else 0
  val_idx, train_idx = perm[:n_val], perm[n_val:]
  model = SmallClassifier(num_classes, cfg.width, cfg.feature_dim)
  init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
  params = model.init(init_key, jnp.zeros((1,) + images.shape[1:], jnp.float32))["params"]
  tx = optax.adam(cfg.learning_rate)
  opt_state = tx.init(params)
  x_train = jnp.asarray(images[train_idx])
  y_train = jnp.asarray(labels[train_idx], jnp.int32)
  batch = min(cfg.batch_size, len(train_idx))

  def loss_fn(p, x, y):
    logits = model.apply({"params": p}, _to_unit(x))
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, opt, i, x_all, y_all):
    idx = jax.random.randint(jax.random.fold_in(data_key, i), (batch,), 0, x_all.shape[0])
    grads = jax.grad(loss_fn)(p, x_all[idx], y_all[idx])
    updates, opt = tx.update(grads, opt, p)
    return optax.apply_updates(p, updates), opt

  for i in range(cfg.steps):
    params, opt_state = step(params, opt_state, i, x_train, y_train)
  accuracy = float("nan")
  if n_val:
    predict = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, _to_unit(x)), -1))
    pred = np.concatenate([np.asarray(predict(params, images[val_idx[i:i + 512]]))
                           for i in range(0, n_val, 512)])
    accuracy = float(np.mean(pred == labels[val_idx]))
  return jax.device_get(params), accuracy


def _classifier(images, labels, cfg: ClassifierConfig, seed: int, cache_dir: str | None):
  """Trained classifier params (from the cache when there), accuracy, cache path."""
  labels = np.asarray(labels)
  if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"train_labels: expected integers [{len(images)}], got {labels.dtype} "
                     f"{labels.shape}")
  num_classes = int(labels.max()) + 1
  key = fid.fingerprint("classifier", CLASSIFIER_VERSION, dataclasses.astuple(cfg), seed,
                        images, labels)
  path = os.path.join(cache_dir, f"classifier-{key[:20]}.npz") if cache_dir else ""
  if path and os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        if str(z["key"]) == key:
          flat = {tuple(k.split("/")): z[k] for k in z.files if k not in ("key", "accuracy")}
          return (traverse_util.unflatten_dict(flat), float(z["accuracy"]), num_classes, path)
    except (OSError, ValueError, KeyError):
      pass  # damaged cache: retrain and overwrite
  params, accuracy = _train_classifier(images, labels, num_classes, cfg, seed)
  if path:
    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
    buf = io.BytesIO()
    np.savez(buf, key=np.asarray(key), accuracy=np.asarray(accuracy), **flat)
    fileio.atomic_write_bytes(path, buf.getvalue())
  return params, accuracy, num_classes, path


def classifier_features(model: SmallClassifier, params, images):
  """The classifier's penultimate features of images (classifier_fd's feature map)."""
  return model.apply({"params": params}, images, method=SmallClassifier.features)


def pixel_features(params, images):
  """The flattened pixels (pixel_fd's feature map; no parameters)."""
  del params
  return jnp.asarray(images, jnp.float32).reshape(images.shape[0], -1)


# ----------------------------------------------------------------------- the factory


def make_quality_metric(kind: str, *, reference_sets: Sequence[np.ndarray],
                        train_images: np.ndarray | None = None,
                        train_labels: np.ndarray | None = None,
                        inception_weights: str = "", cache_dir: str | None = None,
                        seed: int = 0, batch_size: int | None = None,
                        classifier: ClassifierConfig = ClassifierConfig()) -> QualityMetric:
  """Builds a quality metric and its reference statistics (computed once, then cached).

  Args:
    kind: "fid" | "classifier_fd" | "pixel_fd".
    reference_sets: disjoint held-out sets, each [N, H, W, C] images (uint8, or float in
      [0, 1]) or [N, d] vectors (pixel_fd only); N >= 2.
    train_images, train_labels: the labelled data the classifier_fd classifier learns.
    inception_weights: pytorch-fid's .pth or its .npz conversion (fid).
    cache_dir: where reference statistics and the classifier are cached (None: no cache).
    seed: the classifier's initialisation, split and batches.
    batch_size: images per feature call (default 100 for fid, 500 otherwise).
    classifier: the classifier's architecture and training (classifier_fd).

  Raises:
    ConfigError: unknown kind, or classifier_fd without labelled training data.
    DataError: fid without a readable Inception weight file (the message says which file,
      where pytorch-fid publishes it and to pass --config.eval.inception_weights=PATH).
  """
  entry = _KINDS.get(kind)
  if entry is None or entry.build is None:
    raise ConfigError("eval.quality", kind, " | ".join(feature_kinds()))
  if not reference_sets:
    raise ValueError("need at least one reference set")
  refs = [np.asarray(r) for r in reference_sets]
  if any(len(r) < 2 for r in refs) or len({r.shape[1:] for r in refs}) != 1:
    raise ValueError(f"reference sets need >= 2 items of one shape, got "
                     f"{[r.shape for r in refs]}")
  is_image = refs[0].ndim >= 3
  info: dict[str, Any] = {"reference_set_sizes": [len(r) for r in refs]}

  built = entry.build(refs, is_image=is_image, train_images=train_images,
                      train_labels=train_labels, inception_weights=inception_weights,
                      cache_dir=cache_dir, seed=seed, classifier=classifier)
  refs, params, features, label, identity, default_batch = built[:6]
  info.update(built[6])

  ref_stats, spath = fid.reference_statistics(
      features, params, refs, metric_key=kind, cache_dir=cache_dir,
      batch_size=batch_size or default_batch, identity=identity)
  info.update(ref_stats_cache=spath, feature_dim=int(ref_stats[0][0].shape[0]))
  return QualityMetric(name=kind, label=label, params=params, features=features,
                       ref_stats=ref_stats, info=info)


# --------------------------------------------------------------------- the kinds
# Each kind's builder returns (reference sets as it reads them, params, features, label,
# cache identity, default feature batch, info): everything make_quality_metric needs.


def _build_fid(refs, *, inception_weights, **_):
  refs = [_as_images(r, "reference set") for r in refs]
  if refs[0].shape[-1] not in (1, 3):
    raise ValueError(f"FID needs 1- or 3-channel images, got {refs[0].shape}")
  params = inception.load_inception_params(inception_weights)  # DataError if missing
  identity = ("inception", inception.NPZ_FORMAT, "quantize", inception.INPUT_SIZE)
  return (refs, params, inception.inception_features,
          "FID (Inception-v3 pool3, pytorch-fid weights)", identity, 100,
          {"inception_weights": inception_weights})


def _build_classifier_fd(refs, *, train_images, train_labels, cache_dir, seed, classifier,
                         **_):
  if train_images is None or train_labels is None:
    raise ConfigError("eval.quality", "classifier_fd",
                      "a labelled dataset (digits, cifar10); use pixel_fd for unlabelled data")
  images = _as_images(train_images, "train_images")
  refs = [_as_images(r, "reference set") for r in refs]
  params, accuracy, num_classes, cpath = _classifier(images, train_labels, classifier, seed,
                                                     cache_dir)
  model = SmallClassifier(num_classes, classifier.width, classifier.feature_dim)
  label = (f"Frechet distance in the {classifier.feature_dim}-d features of a "
           f"{num_classes}-class classifier trained on this dataset (not FID)")
  identity = ("classifier", CLASSIFIER_VERSION, dataclasses.astuple(classifier))
  return (refs, params, functools.partial(classifier_features, model), label, identity, 500,
          {"classifier_val_accuracy": accuracy, "classifier_cache": cpath})


def _build_pixel_fd(refs, *, is_image, **_):
  space = "pixel" if is_image else "data"
  return (refs, None, pixel_features, f"Frechet distance in {space} space (not FID)",
          ("pixels",), 500, {})


def _abstract_fid(data_shape):
  del data_shape  # the network resizes every input to its own size
  params = jax.eval_shape(lambda: inception.InceptionV3FID().init(
      jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3))))["params"]
  return inception.inception_features, params


def _abstract_classifier_fd(data_shape):
  # 10 classes stand in for the dataset's own count: only the head, which the features
  # do not use, depends on it.
  cfg = ClassifierConfig()
  model = SmallClassifier(10, cfg.width, cfg.feature_dim)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1,) + tuple(data_shape))))["params"]
  return functools.partial(classifier_features, model), params


def _abstract_pixel_fd(data_shape):
  del data_shape
  return pixel_features, None


def _no_features(data_shape):
  del data_shape
  return None, None


@dataclasses.dataclass(frozen=True)
class QualityKind:
  """One value of eval.quality (besides "auto", which setup resolves to one of these).

  Attributes:
    name: the eval.quality value.
    row_name: its metrics.jsonl quality_name when no metric object names it (gmm: gmm_kl).
    label: the long label of a kind that builds no QualityMetric (gmm, none).
    reference_note: WORKDIR/reference_sets.json's description for a kind without
      reference images.
    needs_reference: compares with held-out reference images (eval.fid_num_sets x
      eval.fid_set_size pool items are held out for it).
    whole_pool: its features are trained on the whole pool (every item is loaded).
    build: for a Frechet-distance kind, the builder `make_quality_metric` calls; None for
      a kind whose value the evaluation program computes itself (gmm) or none.
    abstract: abstract(data_shape) -> (features, abstract params): what the evaluation
      program needs to be compiled without weights or reference statistics (the planner);
      (None, None) when it computes no features.
  """
  name: str
  row_name: str
  label: str = ""
  reference_note: str = ""
  needs_reference: bool = False
  whole_pool: bool = False
  build: Callable | None = None
  abstract: Callable = _no_features


_KINDS: dict[str, QualityKind] = {}


def register_kind(kind: QualityKind) -> QualityKind:
  """Adds (or replaces) a quality kind."""
  _KINDS[kind.name] = kind
  return kind


def kind_names() -> tuple[str, ...]:
  """Every registered eval.quality value (without "auto")."""
  return tuple(_KINDS)


def kind_for(name: str) -> QualityKind:
  """The registered kind `name`; a ConfigError naming eval.quality when there is none."""
  if name not in _KINDS:
    raise ConfigError("eval.quality", name, f"one of {('auto',) + kind_names()}")
  return _KINDS[name]


def feature_kinds() -> tuple[str, ...]:
  """The Frechet-distance kinds (those make_quality_metric builds)."""
  return tuple(k.name for k in _KINDS.values() if k.build is not None)


def find_kind(name: str | None) -> QualityKind | None:
  """The kind whose eval.quality value or metrics-row quality_name is `name`, or None."""
  return next((k for k in _KINDS.values() if name in (k.name, k.row_name)), None)


register_kind(QualityKind("fid", "fid", needs_reference=True, build=_build_fid,
                          abstract=_abstract_fid))
register_kind(QualityKind("classifier_fd", "classifier_fd",
                          needs_reference=True, whole_pool=True, build=_build_classifier_fd,
                          abstract=_abstract_classifier_fd))
register_kind(QualityKind("pixel_fd", "pixel_fd", needs_reference=True,
                          build=_build_pixel_fd, abstract=_abstract_pixel_fd))
register_kind(QualityKind(
    "gmm", "gmm_kl", label="KL(P_theta || P_0) estimate (paper eqs. 26-28)",
    reference_note=("No reference images: the quality metric is the KL estimate against the "
                    "exact mixture P_0.")))
register_kind(QualityKind(
    "none", "none", label="none",
    reference_note="No reference images: no quality metric (eval.quality = none)."))
