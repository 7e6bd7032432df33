"""The registry of per-evaluation outputs: what an evaluation computes for a run and writes.

Each entry (`Output`) declares in one place:

  compute(run) -> {key: array}   inside the compiled evaluation, for ONE run (a `Run`: its
                                 samples, parameters, training block, test data, keys), as
                                 `evaluate.evaluate_run` is written; lifted over the runs
  stacked(outs, shared)          optional, after the lift: work over all runs together
                                 (the quality features: one shared network, runs x samples
                                 folded into its batch); edits the stacked outs in place
  row(outs, i, ctx) -> {field: value}   its metrics.jsonl fields of run i (host arrays)
  diverged(ctx) -> {field: value}       the same fields for a diverged (frozen) run
  tensorboard                    the row fields also written as TensorBoard scalars
  curves                         the row fields the report reads as curves over time
  save(ctx, step, outs, diverged)   optional files of the evaluation (the sample grids);
                                 diverged: the runs frozen (their outputs are skipped)
  enabled(spec) -> bool          whether a sweep computes it (default: its name is in
                                 eval.extra_outputs)

`ctx` is the metrics writer (`metrics_writer.Writer`): .config, .quality_kind, .quality,
.workdir, .table, .grid_runs. A metrics row holds the run's identity, the fields of every
enabled output (registration order) and wall_time (and `diverged` for a diverged run).

Adding a per-evaluation metric is one `register(Output(...))` in the module that defines
it and `eval.extra_outputs=("its name",)` in a config; the report's curves
(`report_curves()`) and TensorBoard follow.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zlib
from typing import Any, Callable, NamedTuple

import numpy as np

from jaxdiff import fileio
from jaxdiff import metrics_writer
from jaxdiff.errors import ConfigError

# jax and the metrics are imported inside the functions that run in the evaluation
# program: the report reads the registry (`report_curves`) without loading jax.

# ------------------------------------------------------------------------ one run


def run_training_set(pool: jax.Array, offset, n, mean, capacity: int):
  """The run's centered training images [capacity, ...] and their validity weights."""
  import jax
  import jax.numpy as jnp
  start = (offset,) + (0,) * (pool.ndim - 1)
  images = jax.lax.dynamic_slice(pool, start, (capacity,) + pool.shape[1:]) - mean
  weights = (jnp.arange(capacity) < n).astype(jnp.float32)
  return images, weights


class Run:
  """ONE run's evaluation as the outputs see it (inside the trace).

  Attributes:
    spec: the evaluate.EvalSpec; schedule: the diffusion schedule.
    params: the run's (EMA or raw) parameters; n, offset, mean: its training-set size,
      first pool index and centering constant.
    pool, test: the raw (uncentered) zero-padded pool and the held-out data.
    labels, test_labels: a conditional model's labels (None otherwise).
    with_labels(labels) -> eps_fn, guided(labels) -> eps_fn: the model's noise predictors
      (the unconditional one for labels None; guided: classifier-free guidance).
    gen_labels: the labels the samples were generated for (None: unconditional).
    samples: [S, ...] the generated samples in the model's (centred) coordinates.
    aux: what the sampling produced besides the samples (the GMM's "kl").
  Computed once when first asked (the outputs share them): train_set, weights, raw,
  memorization.
  """

  def __init__(self, *, spec, schedule, params, n, offset, mean, pool, test, labels,
               test_labels, with_labels, guided, gen_labels, samples, keys: dict,
               aux: dict | None = None):
    self.spec, self.schedule, self.params = spec, schedule, params
    self.n, self.offset, self.mean = n, offset, mean
    self.pool, self.test, self.labels, self.test_labels = pool, test, labels, test_labels
    self.with_labels, self.guided, self.gen_labels = with_labels, guided, gen_labels
    self.samples, self.aux = samples, dict(aux or {})
    self._keys = keys

  def key(self, name: str) -> jax.Array:
    """The evaluation key of an output: the built-ins' own splits, else one folded from
    the output's name (so adding an output changes no other output's draws)."""
    import jax
    if name in self._keys:
      return self._keys[name]
    return jax.random.fold_in(self._keys["base"], zlib.crc32(name.encode()) & 0x7FFFFFFF)

  @functools.cached_property
  def _training(self):
    return run_training_set(self.pool, self.offset, self.n, self.mean, self.spec.capacity)

  @property
  def train_set(self) -> jax.Array:
    """[capacity, ...] the run's centred training block (rows >= n are padding)."""
    return self._training[0]

  @property
  def weights(self) -> jax.Array:
    """[capacity] 1 for the run's n training items, 0 for padding."""
    return self._training[1]

  @functools.cached_property
  def raw(self) -> jax.Array:
    """The samples in data coordinates (the mean added back), clipped to [0, 1] for image
    data: what the quality metric and the grids see."""
    import jax.numpy as jnp
    raw = self.samples + self.mean
    return jnp.clip(raw, 0.0, 1.0) if self.spec.image_data else raw

  @functools.cached_property
  def memorization(self) -> dict:
    """memorization.memorization_metrics of the samples against the run's training set
    (paper eq. 6): f_mem statistics, ratios [S], idx1 [S], d1 [S]."""
    from jaxdiff.metrics import memorization
    return memorization.memorization_metrics(self.samples, self.train_set, self.n,
                                             self.key("memorization"), self.spec.ks,
                                             self.spec.n_bootstrap)


class Shared(NamedTuple):
  """What the `stacked` step of an output sees besides the stacked outs [M, ...]."""
  quality: Any       # the quality metric (its .features), or None
  qparams: Any       # its parameters (replicated)
  batched: Callable  # batched(fn, x): fn over x's leading axis in bounded chunks


# ------------------------------------------------------------------------ the registry


def _always(spec) -> bool:
  del spec
  return True


@dataclasses.dataclass(frozen=True)
class Output:
  """One per-evaluation output (see the module docstring for each part)."""
  name: str
  compute: Callable[[Run], dict]
  row: Callable[[dict, int, Any], dict]
  diverged: Callable[[Any], dict] | None = None   # None: every field of `fields` is None
  fields: tuple[str, ...] = ()                    # the row fields (for `diverged` = None)
  tensorboard: tuple[str, ...] = ()
  curves: tuple[str, ...] = ()
  stacked: Callable | None = None
  save: Callable | None = None
  enabled: Callable | None = None                 # None: named in eval.extra_outputs

  def is_enabled(self, spec) -> bool:
    if self.enabled is None:
      return self.name in tuple(getattr(spec, "extra_outputs", ()))
    return bool(self.enabled(spec))

  def diverged_row(self, ctx) -> dict:
    if self.diverged is None:
      return {f: None for f in self.fields}
    return self.diverged(ctx)


_OUTPUTS: dict[str, Output] = {}


def register(output: Output) -> Output:
  """Adds (or replaces, keeping its place) a per-evaluation output."""
  _OUTPUTS[output.name] = output
  return output


def unregister(name: str) -> None:
  """Removes an output (a test's own); unknown names are ignored."""
  _OUTPUTS.pop(name, None)


def names() -> tuple[str, ...]:
  """Every registered output, in registration (= row) order."""
  return tuple(_OUTPUTS)


def optional_names() -> tuple[str, ...]:
  """The outputs eval.extra_outputs may name (those enabled by it)."""
  return tuple(n for n, o in _OUTPUTS.items() if o.enabled is None)


def check_extra_outputs(extra) -> None:
  """A ConfigError naming eval.extra_outputs unless every name is an optional output."""
  ok = isinstance(extra, (tuple, list)) and all(isinstance(n, str) for n in extra)
  if ok:
    ok = len(set(extra)) == len(extra) and all(n in optional_names() for n in extra)
  if not ok:
    raise ConfigError("eval.extra_outputs", extra, "a tuple of distinct names among the "
                      f"registered optional outputs {optional_names()}")


def outputs_for(spec) -> tuple[Output, ...]:
  """The outputs an evaluation with EvalSpec `spec` computes, in row order."""
  check_extra_outputs(getattr(spec, "extra_outputs", ()))
  return tuple(o for o in _OUTPUTS.values() if o.is_enabled(spec))


def report_curves() -> tuple[str, ...]:
  """The metrics.jsonl fields the report reads as curves over training time."""
  out = []
  for o in _OUTPUTS.values():
    out += [c for c in o.curves if c not in out]
  return tuple(out)


# ------------------------------------------------------------------------ losses


def _fixed_time_loss(run: Run, labels, x0, weights, key):
  """diffusion.fixed_time_loss of the model at eval.loss_t (paper Fig. 2 middle); a
  conditional model sees each item's label."""
  from jaxdiff import diffusion
  spec = run.spec
  if labels is None:
    return diffusion.fixed_time_loss(run.with_labels(None), run.schedule, x0, weights,
                                     spec.loss_index, key, spec.loss_draws, spec.loss_batch)
  return diffusion.fixed_time_loss(lambda x, t, y: run.with_labels(y)(x, t), run.schedule,
                                   x0, weights, spec.loss_index, key, spec.loss_draws,
                                   spec.loss_batch, labels=labels)


def _losses(run: Run) -> dict:
  import jax.numpy as jnp
  out = {}
  out["train_loss"], out["train_loss_std"] = _fixed_time_loss(
      run, run.labels, run.train_set, run.weights, run.key("train_loss"))
  out["test_loss"], out["test_loss_std"] = _fixed_time_loss(
      run, run.test_labels, run.test - run.mean,
      jnp.ones((run.test.shape[0],), jnp.float32), run.key("test_loss"))
  return out


def _losses_row(outs, i, ctx) -> dict:
  del ctx
  d = metrics_writer.digits
  loss_sum, loss_count = outs["loss_sum"], outs["loss_count"]  # the running training loss
  return dict(loss=d(loss_sum[i] / loss_count[i]) if loss_count[i] > 0 else None,
              train_loss=d(outs["train_loss"][i]), train_loss_std=d(outs["train_loss_std"][i]),
              test_loss=d(outs["test_loss"][i]), test_loss_std=d(outs["test_loss_std"][i]))


LOSS_FIELDS = ("loss", "train_loss", "train_loss_std", "test_loss", "test_loss_std")
register(Output(
    name="losses", compute=_losses, row=_losses_row, fields=LOSS_FIELDS,
    tensorboard=("train_loss", "test_loss", "loss"), curves=LOSS_FIELDS, enabled=_always))

# ------------------------------------------------------------------------ memorization


def _memorization(run: Run) -> dict:
  return {k: v for k, v in run.memorization.items() if k not in ("ratios", "idx1", "d1")}


def _memorization_row(outs, i, ctx) -> dict:
  cfg = ctx.config
  frac = lambda v: metrics_writer.fraction(v, cfg.eval.num_samples)
  extra_ks = [float(k) for k in cfg.eval.k_extra]
  return dict(
      k=float(cfg.eval.k), f_mem=frac(outs["f_mem"][i, 0]),
      f_mem_lo=frac(outs["f_mem_lo"][i, 0]), f_mem_hi=frac(outs["f_mem_hi"][i, 0]),
      **{metrics_writer.f_mem_column(k): frac(outs["f_mem"][i, j + 1])
         for j, k in enumerate(extra_ks)},
      ratio_median=metrics_writer.digits(outs["ratio_median"][i]),
      num_samples=cfg.eval.num_samples)


def _memorization_diverged(ctx) -> dict:
  cfg = ctx.config
  return dict(k=float(cfg.eval.k), f_mem=None, f_mem_lo=None, f_mem_hi=None,
              **{metrics_writer.f_mem_column(k): None for k in cfg.eval.k_extra},
              ratio_median=None, num_samples=cfg.eval.num_samples)


register(Output(
    name="memorization", compute=_memorization, row=_memorization_row,
    diverged=_memorization_diverged, tensorboard=("f_mem",),
    curves=("f_mem", "f_mem_lo", "f_mem_hi", "ratio_median"), enabled=_always))

# ------------------------------------------------------------------------ quality


def _quality(run: Run) -> dict:
  return {"images": run.raw}


def _quality_stacked(outs: dict, shared) -> None:
  """The quality features of all runs' samples at once (the network is shared), and their
  moments per run; the images themselves never leave the device."""
  import jax
  images = outs.pop("images")
  quality = shared.quality
  if quality is None:
    return
  from jaxdiff.metrics import quality as quality_lib
  m, s = images.shape[:2]
  feats = shared.batched(lambda x: quality.features(shared.qparams, x),
                         images.reshape((m * s,) + images.shape[2:]))
  outs["q_mu"], outs["q_sigma"] = jax.vmap(quality_lib.feature_moments)(feats.reshape(m, s, -1))


def _quality_row(outs, i, ctx) -> dict:
  d = metrics_writer.digits
  if ctx.quality is not None:
    mean, std = ctx.quality.distance(np.asarray(outs["q_mu"][i], np.float64),
                                     np.asarray(outs["q_sigma"][i], np.float64))
    return dict(quality=d(mean), quality_std=None if std is None else d(std),
                quality_name=ctx.quality.name, quality_label=ctx.quality.label)
  from jaxdiff.metrics import quality as quality_lib
  kind = quality_lib.kind_for(ctx.quality_kind)
  value = d(outs["kl"][i]) if ctx.quality_kind == "gmm" else None
  return dict(quality=value, quality_std=None, quality_name=kind.row_name,
              quality_label=kind.label)


def _quality_diverged(ctx) -> dict:
  if ctx.quality is not None:
    name = ctx.quality.name
  else:
    from jaxdiff.metrics import quality as quality_lib
    name = quality_lib.kind_for(ctx.quality_kind).row_name
  return dict(quality=None, quality_std=None, quality_name=name, quality_label=None)


register(Output(
    name="quality", compute=_quality, row=_quality_row, diverged=_quality_diverged,
    stacked=_quality_stacked, tensorboard=("quality",), curves=("quality", "quality_std"),
    enabled=_always))

# ------------------------------------------------------------------------ GMM extras


def _gmm(run: Run) -> dict:
  """The KL estimate made along the sampling trajectories (paper eqs. 26-28; `aux`) and
  the score error against the exact mixture's score (paper SM B)."""
  import jax.numpy as jnp
  from jaxdiff.metrics import gmm
  mu = jnp.asarray(run.spec.gmm_mean, jnp.float32)
  return {"kl": run.aux["kl"],
          "score_error": gmm.score_error(run.guided(run.gen_labels), run.schedule, mu,
                                         run.key("gmm"), run.spec.num_samples,
                                         offset=run.mean, labels=run.gen_labels)}


def _gmm_row(outs, i, ctx) -> dict:
  del ctx
  return dict(score_error=metrics_writer.digits(outs["score_error"][i]),
              kl=metrics_writer.digits(outs["kl"][i]))


register(Output(
    name="gmm", compute=_gmm, row=_gmm_row, diverged=lambda ctx: {},  # as before: absent
    curves=("score_error", "kl"), enabled=lambda spec: spec.gmm_mean is not None))

# ------------------------------------------------------------------------ sample grids


def _grids(run: Run) -> dict:
  import jax.numpy as jnp
  g = run.spec.grid_samples
  mem = run.memorization
  return {"grid_samples": run.raw[:g],
          "grid_neighbours": run.train_set[jnp.maximum(mem["idx1"][:g], 0)] + run.mean,
          "grid_ratios": mem["ratios"][:g]}


def _save_grids(ctx, step: int, outs: dict, diverged) -> None:
  """WORKDIR/samples/step_*.png (samples beside their nearest training images) and .json."""
  cfg = ctx.config
  ids = [i for i in ctx.grid_runs if i not in diverged]
  if not (ids and ctx.table.num_runs and cfg.eval.grid_samples > 0
          and outs["grid_samples"].ndim == 5):
    return
  from jaxdiff.findings import grids
  runs = {r.run: r for r in ctx.table.runs}
  grids.save_sample_grid(
      os.path.join(ctx.workdir, "samples", f"step_{step:09d}.png"),
      outs["grid_samples"][ids], outs["grid_neighbours"][ids], outs["grid_ratios"][ids],
      cfg.eval.k, [f"n={runs[i].n} seed={runs[i].seed}" for i in ids],
      f"step {step}: samples (left) and nearest training images (right)")
  fileio.atomic_write_json(os.path.join(ctx.workdir, "samples", f"step_{step:09d}.json"),
                           {"step": step, "runs": ids})


register(Output(
    name="grids", compute=_grids, row=lambda outs, i, ctx: {}, diverged=lambda ctx: {},
    save=_save_grids, enabled=_always))
