"""Frechet distance between feature distributions, feature moments, reference statistics.

The Frechet (2-Wasserstein) distance between the Gaussians fitted to two feature sets is
(Dowson & Landau 1982; FID: Heusel et al. 2017)

  d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

S1 S2 is not symmetric, but it is similar to R S1 R with R = S2^(1/2), which is symmetric
positive semi-definite and has the same eigenvalues, so tr((S1 S2)^(1/2)) is the sum of the
square roots of the eigenvalues of R S1 R. That needs two symmetric eigen-decompositions
(one of them, R of a reference set, computed once and cached) instead of the general
`scipy.linalg.sqrtm` of a non-symmetric matrix that pytorch-fid uses (a Schur method that
is slower, and whose rounding leaves complex parts that must be thrown away).

Usage:
  mu, sigma = feature_moments(features)                 # on device, one run's [S, F]
  d = frechet_distance(mu, sigma, mu_ref, sigma_ref)     # on the host, float64
  refs = reference_statistics(fn, params, sets, metric_key="fid", cache_dir=...)
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import fileio

Stats = tuple[np.ndarray, np.ndarray]
CACHE_VERSION = 1


# --------------------------------------------------------------------- device side


def feature_moments(features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and unbiased covariance of features [S, F], in float32 on device (jit/vmap-able).

  float32 is kept (TPUs have no float64) and made accurate by how it is summed:
  the features are first shifted by the first sample (so a large common offset, e.g.
  Inception features around 0.4 +- 0.1, does not eat the mantissa), then the corrected
  two-pass formula (Chan, Golub & LeVeque 1983) is used,
    sigma = (Xc^T Xc - S m m^T) / (S - 1),  Xc = X - mean,  m = mean of Xc (~ rounding),
  with the product at HIGHEST precision (no TF32/bf16 passes on GPU/TPU). Relative
  error against float64 is ~1e-6 here for S = 10,000 (tests check 1e-5).

  Args:
    features: [S, F] with S >= 2.

  Returns:
    mu [F] and sigma [F, F], float32, as np.mean / np.cov(rowvar=False) (ddof = 1).
  """
  x = jnp.asarray(features, jnp.float32)
  s = x.shape[0]
  shift = x[0]
  x = x - shift
  mean = jnp.mean(x, axis=0)
  xc = x - mean
  m = jnp.mean(xc, axis=0)
  hp = jax.lax.Precision.HIGHEST
  gram = jnp.matmul(xc.T, xc, precision=hp) - s * jnp.outer(m, m)
  sigma = gram / (s - 1)
  sigma = 0.5 * (sigma + sigma.T)
  return mean + shift, sigma


# ----------------------------------------------------------------------- host side


def statistics(features: np.ndarray) -> Stats:
  """Mean and unbiased covariance in float64 (pytorch-fid's np.mean / np.cov)."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"need features [S >= 2, F], got shape {x.shape}")
  return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def sqrt_psd(sigma: np.ndarray) -> np.ndarray:
  """Symmetric square root of a covariance (eigenvalues below 0 from rounding set to 0)."""
  s = np.asarray(sigma, np.float64)
  w, v = np.linalg.eigh(0.5 * (s + s.T))
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, *,
                       sqrt_sigma2: np.ndarray | None = None) -> float:
  """tr((sigma1 sigma2)^(1/2)) for covariances, as sum sqrt(eig(R sigma1 R)), R = sigma2^(1/2).

  Args:
    sigma1, sigma2: symmetric positive semi-definite [F, F].
    sqrt_sigma2: R if already known (a reference set's, computed once).
  """
  r = sqrt_psd(sigma2) if sqrt_sigma2 is None else np.asarray(sqrt_sigma2, np.float64)
  m = r @ np.asarray(sigma1, np.float64) @ r
  ev = np.linalg.eigvalsh(0.5 * (m + m.T))
  return float(np.sum(np.sqrt(np.clip(ev, 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2, *, sqrt_sigma2=None) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

  d = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)); this is
  FID when the moments are those of Inception pool3 features. Rounding can leave a tiny
  negative number for identical inputs; it is returned as is (not clipped) so that tests
  see the true error.

  Args:
    mu1, mu2: [F]; sigma1, sigma2: [F, F] (any float dtype; computed in float64).
    sqrt_sigma2: optional precomputed sigma2^(1/2) (see `sqrt_psd`).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                     f"{sigma2.shape}")
  diff = mu1 - mu2
  tr = trace_sqrt_product(sigma1, sigma2, sqrt_sigma2=sqrt_sigma2)
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr)


def frechet_distance_of_features(f1: np.ndarray, f2: np.ndarray) -> float:
  """Frechet distance between the Gaussians fitted to two feature sets, in float64.

  Same value as frechet_distance(*statistics(f1), *statistics(f2)). When a set has fewer
  samples than features (S <= F) the covariances have rank < S and the work is done in
  sample space, exactly: with A_i = (F_i - mean) / sqrt(S_i - 1), sigma_i = A_i^T A_i, the
  nonzero eigenvalues of sigma1 sigma2 are the squared singular values of C = A1 A2^T
  [S1, S2], so tr((sigma1 sigma2)^(1/2)) = ||C||_* (nuclear norm), with no F x F matrix.

  Args:
    f1: [S1, F]; f2: [S2, F]; S1, S2 >= 2.
  """
  f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
    raise ValueError(f"need features [S >= 2, F] with the same F, got {f1.shape}, {f2.shape}")
  if min(len(f1), len(f2)) > f1.shape[1]:
    return frechet_distance(*statistics(f1), *statistics(f2))
  mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
  a1 = (f1 - mu1) / np.sqrt(len(f1) - 1)
  a2 = (f2 - mu2) / np.sqrt(len(f2) - 1)
  nuclear = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.sum(a1 * a1) + np.sum(a2 * a2) - 2.0 * nuclear)


# ---------------------------------------------------------------- features in batches


def compute_features(feature_fn: Callable, params: Any, images: np.ndarray, *,
                     batch_size: int = 500) -> np.ndarray:
  """features(params, batch) over a host array in fixed-size batches -> [N, F] float32.

  The last batch is padded by repeating its last image, so one compiled program serves
  every batch. uint8 images are scaled to [0, 1] batch by batch (the data may be larger
  as float32 than as stored).
  """
  images = np.asarray(images)
  n = images.shape[0]
  if n == 0:
    raise ValueError("no images")
  b = min(batch_size, n)
  fn = jax.jit(feature_fn)
  out = []
  for start in range(0, n, b):
    batch = _to_unit_float(images[start:start + b])
    k = batch.shape[0]
    if k < b:
      batch = np.concatenate([batch, np.repeat(batch[-1:], b - k, axis=0)])
    out.append(np.asarray(fn(params, batch), np.float32)[:k])
  return np.concatenate(out)


def _to_unit_float(x: np.ndarray) -> np.ndarray:
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"images must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
  return x.astype(np.float32)


# ------------------------------------------------------------ reference statistics


def fingerprint(*parts: Any) -> str:
  """sha256 of strings, numbers, arrays and pytrees of arrays (shape, dtype and bytes)."""
  h = hashlib.sha256()

  def add(p):
    if isinstance(p, (str, int, float, bool)) or p is None:
      h.update(repr(p).encode())
    elif isinstance(p, (list, tuple)):
      h.update(b"(")
      for q in p:
        add(q)
      h.update(b")")
    elif isinstance(p, dict):
      for k in sorted(p):
        add(str(k))
        add(p[k])
    elif hasattr(p, "shape") and hasattr(p, "dtype"):
      a = np.ascontiguousarray(np.asarray(p))
      h.update(f"{a.shape}{a.dtype.str}".encode())
      h.update(memoryview(a).cast("B"))
    else:
      raise TypeError(f"cannot fingerprint {type(p).__name__}")

  for p in parts:
    add(p)
  return h.hexdigest()


def _cache_path(cache_dir: str, metric_key: str, key: str) -> str:
  return os.path.join(cache_dir, f"refstats-{metric_key}-{key[:20]}.npz")


def reference_statistics(feature_fn: Callable, params: Any,
                         reference_sets: Sequence[np.ndarray], *, metric_key: str,
                         cache_dir: str | None = None, batch_size: int = 500,
                         identity: Any = None) -> tuple[list[Stats], str]:
  """float64 (mu, sigma) of each reference set's features, cached on disk.

  The cache file is keyed by a hash of everything that determines the result: the metric
  name, `identity` (what defines the feature function, e.g. its weights), the parameters
  and every reference image. A rerun or resume reads it back; any change misses it.

  Args:
    feature_fn: features(params, images [B, ...]) -> [B, F].
    params: its parameters (hashed into the key).
    reference_sets: disjoint held-out image sets (uint8 or float in [0, 1], or vectors).
    metric_key: a short name for the file ("fid", "classifier_fd", ...).
    cache_dir: where the cache lives; None computes without caching.
    batch_size: images per feature call.
    identity: extra hashable description of the feature function.

  Returns:
    ([(mu [F], sigma [F, F]) per set], path of the cache file or "").
  """
  if not reference_sets:
    raise ValueError("need at least one reference set")
  key = fingerprint("reference_statistics", CACHE_VERSION, metric_key, identity,
                    jax.tree_util.tree_map(np.asarray, params) if params is not None else None,
                    [np.asarray(r) for r in reference_sets])
  path = _cache_path(cache_dir, metric_key, key) if cache_dir else ""
  if path and os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        if str(z["key"]) == key:
          return [(z[f"mu{i}"], z[f"sigma{i}"]) for i in range(int(z["count"]))], path
    except (OSError, ValueError, KeyError):
      pass  # damaged cache: recompute and overwrite
  stats = [statistics(compute_features(feature_fn, params, r, batch_size=batch_size))
           for r in reference_sets]
  if path:
    arrays = {"key": np.asarray(key), "count": np.asarray(len(stats))}
    for i, (mu, sigma) in enumerate(stats):
      arrays[f"mu{i}"], arrays[f"sigma{i}"] = mu, sigma
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fileio.atomic_write_bytes(path, buf.getvalue())
  return stats, path
