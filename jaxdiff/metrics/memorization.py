"""The memorization criterion of the paper (eq. 6) and the f_mem statistics, on device.

A generated sample x is a copy of the training set when

  ||x - a_1|| / ||x - a_2|| < k,   k = 1/3,

with a_1, a_2 its nearest and second-nearest training images (plain, non-squared L2 in
the centered pixel space the model was trained in; paper.md 1.6). f_mem is the fraction of
generated samples that satisfy it, reported with a bootstrap 95% interval (1000 resamples
in the paper) and for the extra thresholds k = 1/2 and 1/4.

Two layers:

* Jit-able, vmappable cores for the trainer (one run; the caller lifts them over the
  models axis): `nearest_neighbours` (blocked matrix products with a running top-2 over
  training blocks in `lax.scan`, sample blocks in `lax.map`; memory bounded by
  sample_block x train_block, not S x n), `ratios_from_neighbours`, `fmem_stats` and the
  one-call `memorization_metrics`. A run's training set may sit in a static-capacity array
  [cap, ...] with a traced `n_valid`: rows >= n_valid are never chosen.
* A host API for users and tests taking numpy or jax arrays: `gap_ratio`,
  `nearest_neighbours_host`, `fmem_intervals` and `memorized_fraction` (also the
  engine of `python -m jaxdiff.audit`).

Usage:

  ratios = gap_ratio(samples, train_images)                # [S]
  res = memorized_fraction(samples, train_images, k=1/3)   # FmemResult(fraction, lo, hi)
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

DEFAULT_KS = (1 / 3, 1 / 2, 1 / 4)


class Neighbours(NamedTuple):
  """The two nearest training images of each sample; every field has shape [S].

  d1 <= d2 are exact L2 distances (recomputed from the gathered images, not from the
  matrix-product expansion). Where fewer than two valid training rows exist, the missing
  distance is +inf and its index is -1.
  """
  d1: jax.Array
  d2: jax.Array
  idx1: jax.Array
  idx2: jax.Array


class FmemResult(NamedTuple):
  """f_mem with its bootstrap 95% interval (2.5% and 97.5% percentiles)."""
  fraction: float
  lo: float
  hi: float


def _flatten(x: jax.Array) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  return x.reshape(x.shape[0], -1)


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
  extra = -x.shape[0] % multiple
  if extra == 0:
    return x
  return jnp.concatenate([x, jnp.zeros((extra,) + x.shape[1:], x.dtype)])


def nearest_neighbours(samples: jax.Array, train: jax.Array, n_valid=None, *,
                       sample_block: int = 1024, train_block: int = 4096,
                       num_candidates: int = 2,
                       precision=lax.Precision.HIGHEST) -> Neighbours:
  """Nearest and second-nearest training image of every sample, by blocked matmuls.

  Candidates are ranked by |a|^2 - 2 x.a (the squared distance minus the per-sample
  constant |x|^2), computed block by block with a running top-`num_candidates` carried
  through `lax.scan` over training blocks; samples go through `lax.map` in blocks. Peak
  temporary memory is about sample_block x train_block floats (16 MB at the defaults)
  plus the inputs, instead of the S x n matrix (1.3 GB at S = 10,000, n = 32,768).

  The expansion loses precision for near-copies in float32 (|x|^2 ~ |a|^2 ~ 85 for
  32x32 images uniform in [-0.5, 0.5]: an exact copy's squared distance comes out as
  +-1e-4, a distance of ~0.01 instead of 0), so only the ranking uses it: the winners'
  distances are recomputed exactly from the gathered images and re-sorted, which makes
  an exact copy give d1 = 0 and keeps near-copies' ratios accurate. The
  matmul runs at `precision` (HIGHEST = true float32; on GPU/TPU the default would be
  TF32/bfloat16, whose ranking errors exceed the gaps between neighbours).

  Ties: of two identical training images, the one with the lower index comes first
  (up to rounding of the ranking); the distances to both are equal.

  Args:
    samples: [S, ...] generated samples (any trailing shape; flattened).
    train: [cap, ...] training images with the same trailing size.
    n_valid: number of valid leading rows of `train` (a traced int is fine); None = cap.
    sample_block, train_block: block sizes (static); clipped to S and cap.
    num_candidates: candidates kept per sample and re-ranked exactly (>= 2).
    precision: precision of the ranking matmul.

  Returns:
    Neighbours(d1, d2, idx1, idx2), each [S].
  """
  if num_candidates < 2:
    raise ValueError(f"num_candidates must be >= 2, got {num_candidates}")
  x = _flatten(samples)
  a = _flatten(train)
  if x.shape[1] != a.shape[1]:
    raise ValueError(f"samples have {x.shape[1]} values each but training images have "
                     f"{a.shape[1]}")
  num_samples, cap = x.shape[0], a.shape[0]
  n_valid = jnp.asarray(cap if n_valid is None else n_valid, jnp.int32)
  c = min(num_candidates, cap)

  tb = min(train_block, cap)
  a_pad = _pad_rows(a, tb)
  num_tb = a_pad.shape[0] // tb
  row_ids = jnp.arange(a_pad.shape[0], dtype=jnp.int32)
  # Rows past n_valid (padding, other runs' capacity) get +inf and can never win.
  a_sq = jnp.where(row_ids < n_valid, jnp.sum(jnp.square(a_pad), axis=-1), jnp.inf)
  blocks = (a_pad.reshape(num_tb, tb, -1), a_sq.reshape(num_tb, tb),
            row_ids.reshape(num_tb, tb))

  sb = min(sample_block, num_samples)
  x_pad = _pad_rows(x, sb)

  def one_sample_block(xb):  # [sb, D]
    def body(carry, blk):
      best_d, best_i = carry  # [sb, c]
      ab, asq, ids = blk
      score = asq[None, :] - 2.0 * jnp.dot(xb, ab.T, precision=precision)  # [sb, tb]
      neg, pos = lax.top_k(-score, min(c, tb))
      cand_d = jnp.concatenate([best_d, -neg], axis=1)
      cand_i = jnp.concatenate([best_i, ids[pos]], axis=1)
      neg, pos = lax.top_k(-cand_d, c)
      return (-neg, jnp.take_along_axis(cand_i, pos, axis=1)), None

    init = (jnp.full((sb, c), jnp.inf, jnp.float32), jnp.full((sb, c), -1, jnp.int32))
    (_, cand), _ = lax.scan(body, init, blocks)
    # Exact distances of the candidates; invalid ones (sentinel -1, masked rows) -> inf.
    valid = (cand >= 0) & (cand < n_valid)
    imgs = a_pad[jnp.where(valid, cand, 0)]  # [sb, c, D]
    dist = jnp.sqrt(jnp.sum(jnp.square(xb[:, None, :] - imgs), axis=-1))
    dist = jnp.where(valid, dist, jnp.inf)
    cand = jnp.where(valid, cand, -1)
    order = jnp.argsort(dist, axis=1, stable=True)[:, :2]
    dist = jnp.take_along_axis(dist, order, axis=1)
    cand = jnp.take_along_axis(cand, order, axis=1)
    if c < 2:  # a single training row: there is no second neighbour.
      dist = jnp.concatenate([dist, jnp.full((sb, 1), jnp.inf, jnp.float32)], axis=1)
      cand = jnp.concatenate([cand, jnp.full((sb, 1), -1, jnp.int32)], axis=1)
    return dist, cand

  dist, cand = lax.map(one_sample_block, x_pad.reshape(-1, sb, x.shape[1]))
  dist = dist.reshape(-1, 2)[:num_samples]
  cand = cand.reshape(-1, 2)[:num_samples]
  return Neighbours(dist[:, 0], dist[:, 1], cand[:, 0], cand[:, 1])


def ratios_from_neighbours(nb: Neighbours) -> jax.Array:
  """The gap ratio ||x - a1|| / ||x - a2|| of eq. 6, [S].

  Conventions: when d2 = 0 (the sample equals two identical training images) the ratio
  is 1, like any sample equidistant from two duplicates: a duplicated training image
  cannot be told apart from its twin, so the criterion never counts such a tie as a copy.
  Where there is no second valid neighbour (fewer than two training rows) it is NaN.
  """
  ratio = nb.d1 / jnp.where(nb.d2 > 0, nb.d2, 1.0)
  ratio = jnp.where(nb.d2 > 0, ratio, 1.0)
  return jnp.where(jnp.isfinite(nb.d2), ratio, jnp.nan)


def fmem_stats(ratios: jax.Array, ks: Sequence[float] = DEFAULT_KS, key: jax.Array | None = None,
               n_bootstrap: int = 1000) -> dict[str, jax.Array]:
  """f_mem per threshold with a bootstrap 95% percentile interval, and the median ratio.

  The bootstrap resamples the S per-sample indicators 1[ratio < k] with replacement and
  takes the mean. The number of ones in such a resample is exactly Binomial(S, f) with f
  the observed fraction (each of the S draws picks a one with probability f,
  independently), so drawing n_bootstrap binomial counts gives exactly the bootstrap
  distribution of the mean at O(n_bootstrap) cost instead of O(n_bootstrap x S). Each
  threshold's distribution is exact; draws for different thresholds are independent
  rather than shared resamples, which changes nothing in a per-threshold interval. The
  interval is the 2.5% / 97.5% percentiles (linear interpolation, numpy's default) of
  the resampled means, as the authors report.

  Non-finite ratios (no second neighbour) are excluded from both counts, not counted as
  novel (the authors' zero-filled rows deflated f_mem, paper.md 4.9).

  Args:
    ratios: [S] gap ratios.
    ks: thresholds (static), e.g. (1/3, 1/2, 1/4).
    key: PRNG key of the bootstrap (required when n_bootstrap > 0).
    n_bootstrap: number of resamples (static); 0 skips the interval (lo = hi = NaN).

  Returns:
    {"f_mem": [K], "f_mem_lo": [K], "f_mem_hi": [K], "ratio_median": [], "num_samples": []}
    (num_samples = the number of finite ratios, int32).
  """
  ks = jnp.asarray(ks, jnp.float32)
  finite = jnp.isfinite(ratios)
  num = jnp.sum(finite).astype(jnp.int32)
  denom = jnp.maximum(num, 1).astype(jnp.float32)
  counts = jnp.sum((ratios[None, :] < ks[:, None]) & finite[None, :], axis=1)
  frac = counts.astype(jnp.float32) / denom
  if n_bootstrap > 0:
    if key is None:
      raise ValueError("fmem_stats needs a key when n_bootstrap > 0")
    boot = jax.random.binomial(key, num.astype(jnp.float32), frac[:, None],
                               shape=(ks.shape[0], n_bootstrap)) / denom
    lo, hi = jnp.quantile(boot, jnp.asarray([0.025, 0.975]), axis=1)
  else:
    lo = hi = jnp.full_like(frac, jnp.nan)
  return {"f_mem": frac, "f_mem_lo": lo, "f_mem_hi": hi,
          "ratio_median": jnp.nanmedian(ratios), "num_samples": num}


def memorization_metrics(samples: jax.Array, train: jax.Array, n_valid, key: jax.Array,
                         ks: Sequence[float] = DEFAULT_KS, n_bootstrap: int = 1000,
                         **neighbour_kwargs) -> dict[str, jax.Array]:
  """Everything the evaluation step needs for one run, jit-able and vmappable.

  Args:
    samples: [S, ...] generated samples, in the training (centered) pixel space.
    train: [cap, ...] the run's training images; rows >= n_valid are ignored.
    n_valid: traced int, the run's n.
    key: bootstrap key of this run and evaluation.
    ks: thresholds; ks[0] is the main one (schema: "f_mem"), the rest are "f_mem_extra".
    n_bootstrap: bootstrap resamples.
    **neighbour_kwargs: block sizes etc. for `nearest_neighbours`.

  Returns:
    fmem_stats' dict plus "ratios" [S], "idx1" [S] (nearest training row, for the grids)
    and "d1" [S].
  """
  nb = nearest_neighbours(samples, train, n_valid, **neighbour_kwargs)
  ratios = ratios_from_neighbours(nb)
  out = fmem_stats(ratios, ks, key, n_bootstrap)
  out.update(ratios=ratios, idx1=nb.idx1, d1=nb.d1)
  return out


# ------------------------------------------------------------------------- host API

_nearest_jit = jax.jit(nearest_neighbours,
                       static_argnames=("sample_block", "train_block", "num_candidates",
                                        "precision"))


def _as_host_inputs(samples, train_images):
  samples = jnp.asarray(samples)
  train_images = jnp.asarray(train_images)
  if samples.ndim < 1 or train_images.ndim < 1:
    raise ValueError("samples and train_images need a leading axis: [S, ...] and [n, ...]")
  if train_images.shape[0] < 2:
    raise ValueError(f"the gap ratio needs at least 2 training images, got "
                     f"{train_images.shape[0]}")
  if samples.shape[0] == 0:
    raise ValueError("no samples given")
  return samples, train_images


def gap_ratio(samples, train_images, *, sample_block: int = 1024,
              train_block: int = 4096) -> jax.Array:
  """||x - a1|| / ||x - a2|| for every sample (paper eq. 6), [S].

  Args:
    samples: [S, ...] numpy or jax array.
    train_images: [n, ...] numpy or jax array (n >= 2), same trailing size.

  Returns:
    [S] float32 ratios in [0, 1] (see `ratios_from_neighbours` for ties).
  """
  samples, train_images = _as_host_inputs(samples, train_images)
  return ratios_from_neighbours(_nearest_jit(samples, train_images, None,
                                             sample_block=sample_block,
                                             train_block=train_block))


def nearest_neighbours_host(samples, train_images, **kwargs) -> Neighbours:
  """`nearest_neighbours` for numpy or jax inputs (jitted, n >= 2 checked)."""
  samples, train_images = _as_host_inputs(samples, train_images)
  return _nearest_jit(samples, train_images, None, **kwargs)


_fmem_jit = jax.jit(fmem_stats, static_argnames=("ks", "n_bootstrap"))


def fmem_intervals(ratios, ks: Sequence[float] = DEFAULT_KS, n_bootstrap: int = 1000,
                   seed: int = 0) -> dict[str, "np.ndarray"]:
  """`fmem_stats` for numpy or jax gap ratios, as numpy arrays (f_mem per k, 95% interval).

  Args:
    ratios: [S] gap ratios (e.g. from `gap_ratio`); non-finite ones are left out.
    ks: thresholds.
    n_bootstrap: bootstrap resamples (0: no interval, lo = hi = NaN).
    seed: seed of the bootstrap.

  Returns:
    {"f_mem": [K], "f_mem_lo": [K], "f_mem_hi": [K], "ratio_median": [], "num_samples": []}.
  """
  import numpy as np
  stats = _fmem_jit(jnp.asarray(ratios, jnp.float32), tuple(float(k) for k in ks),
                    jax.random.PRNGKey(seed), int(n_bootstrap))
  return {name: np.asarray(value) for name, value in stats.items()}


def binomial_interval(count: int, total: int, conf: float = 0.95) -> tuple[float, float]:
  """Clopper-Pearson interval of a proportion: exact, never below `conf` coverage.

  With c copies among S independent samples, c ~ Binomial(S, f); the interval is

    lo = Beta^{-1}((1 - conf) / 2; c, S - c + 1),  hi = Beta^{-1}((1 + conf) / 2; c + 1, S - c)

  (lo = 0 when c = 0, hi = 1 when c = S). Unlike the percentile bootstrap, which collapses
  to [0, 0] when no sample is a copy, it says how large f could still be: 0 of 697 gives
  [0, 0.53%].
  """
  from scipy import stats
  if total <= 0:
    return float("nan"), float("nan")
  alpha = (1.0 - conf) / 2.0
  lo = 0.0 if count <= 0 else float(stats.beta.ppf(alpha, count, total - count + 1))
  hi = 1.0 if count >= total else float(stats.beta.ppf(1.0 - alpha, count + 1, total - count))
  return lo, hi


def memorized_fraction(samples, train_images, k: float = 1 / 3, n_bootstrap: int = 1000,
                       seed: int = 0) -> FmemResult:
  """f_mem = fraction of samples with gap ratio < k, with its bootstrap 95% interval.

  Args:
    samples: [S, ...] numpy or jax array.
    train_images: [n, ...] numpy or jax array (n >= 2).
    k: the threshold (the paper: 1/3).
    n_bootstrap: bootstrap resamples (the paper: 1000).
    seed: seed of the bootstrap.

  Returns:
    FmemResult(fraction, lo, hi) as Python floats.
  """
  stats = fmem_intervals(gap_ratio(samples, train_images), (float(k),), n_bootstrap, seed)
  return FmemResult(float(stats["f_mem"][0]), float(stats["f_mem_lo"][0]),
                    float(stats["f_mem_hi"][0]))
