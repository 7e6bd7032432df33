"""Start-up checks of a diffusion-sweep config: each bad value is one ConfigError that names
the key, the value and what is allowed, before anything is loaded or compiled. Numbers
must be finite everywhere (a config file's 1e309 is a float infinity).

`validate_sweep` needs only the config; `validate_against_data` runs once the dataset and
the mesh are known (image sizes, labels, batch splits).
"""

from __future__ import annotations

import math
import numbers

from jaxdiff import data
from jaxdiff import diffusion
from jaxdiff import eval_times
from jaxdiff import evaluation
from jaxdiff.errors import ConfigError
from jaxdiff.metrics import quality as quality_lib

EVAL_GRIDS = eval_times.GRIDS


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v) -> bool:
  """A finite real number (not a bool; NaN and +-inf are refused)."""
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _require(ok: bool, key: str, value, expected: str) -> None:
  if not ok:
    raise ConfigError(key, value, expected)


def _positive_int(key, v):
  _require(_is_int(v) and v > 0, key, v, "a positive integer")


def _in_open_unit(key, v):
  _require(_is_num(v) and 0 < v < 1, key, v, "a number strictly between 0 and 1")


def _choice(key, v, allowed):
  _require(v in allowed, key, v, f"one of {allowed}")


def validate_sweep(config) -> None:
  """Checks every key of a diffusion sweep that can be checked without data."""
  from jaxdiff import models_axis, runs, train_state
  from jaxdiff import models as models_lib

  _choice("experiment", config.experiment, ("diffusion",))
  d = config.data
  # The dataset's own keys are checked by its registry entry (jaxdiff.data).
  source = data.source_for(d.dataset)
  source.check(d)
  n = tuple(d.n_train)
  _require(len(n) > 0 and all(_is_int(v) and v > 0 for v in n), "data.n_train", n,
           "a non-empty tuple of positive integers, e.g. 128,256,512")
  _require(all(a < b for a, b in zip(n, n[1:])), "data.n_train", n,
           "strictly increasing values without duplicates, e.g. 128,256,512")
  seeds = tuple(d.seeds)
  _require(len(seeds) > 0 and all(_is_int(s) and s >= 0 for s in seeds)
           and len(set(seeds)) == len(seeds), "data.seeds", seeds,
           "a non-empty tuple of distinct non-negative integers")
  index = tuple(d.index)
  _require(len(index) > 0 and all(_is_int(i) and i >= 0 for i in index)
           and len(set(index)) == len(index), "data.index", index,
           "a non-empty tuple of distinct non-negative integers (data blocks)")

  m = config.model
  _choice("model.name", m.name, models_lib.MODELS)
  _positive_int("model.width", m.width)
  _require(_is_num(m.dropout) and 0 <= m.dropout < 1, "model.dropout", m.dropout,
           "a probability in [0, 1)")
  if m.name == "unet":
    _positive_int("model.num_groups", m.num_groups)
    mult = tuple(m.channel_mult)
    _require(len(mult) > 0 and all(_is_int(c) and c > 0 for c in mult), "model.channel_mult",
             mult, "a non-empty tuple of positive integers, e.g. 1,2,4")
    _require(len(tuple(m.attention)) == len(mult), "model.attention", tuple(m.attention),
             f"one boolean per resolution level ({len(mult)}, as model.channel_mult)")
    for c in (m.width * k for k in mult):
      _require(c % m.num_groups == 0, "model.width", m.width,
               f"a multiple of model.num_groups={m.num_groups} at every level "
               f"(channels {m.width} x {mult})")
    for c, att in zip((m.width * k for k in mult), m.attention):
      if att:
        _require(c % m.num_heads == 0, "model.num_heads", m.num_heads,
                 f"a divisor of the channels of every attention level ({c})")
    _positive_int("model.num_res_blocks", m.num_res_blocks)
  else:
    _positive_int("model.num_blocks", m.num_blocks)
  classes = m.get("num_classes", 0)
  _require(_is_int(classes) and classes >= 0, "model.num_classes", classes,
           "an integer >= 0 (0 = unconditional)")
  _require(classes == 0 or m.name == "mlp", "model.num_classes", classes,
           "0 for the U-Net (class conditioning is implemented for the mlp)")

  df = config.diffusion
  _require(_is_int(df.num_steps) and df.num_steps >= 2, "diffusion.num_steps", df.num_steps,
           "an integer >= 2")
  _require(_is_num(df.beta_min) and _is_num(df.beta_max) and 0 < df.beta_min < df.beta_max < 1,
           "diffusion.beta_max", (df.beta_min, df.beta_max),
           "0 < diffusion.beta_min < diffusion.beta_max < 1")
  _require(_is_int(df.min_train_index) and 0 <= df.min_train_index < df.num_steps,
           "diffusion.min_train_index", df.min_train_index,
           f"an integer in [0, {df.num_steps - 1}]")

  o = config.optim
  _choice("optim.name", o.name, train_state.OPTIMIZERS)
  lrs = tuple(o.lr)
  _require(len(lrs) > 0 and all(_is_num(v) and v > 0 for v in lrs), "optim.lr", lrs,
           "a non-empty tuple of positive learning rates (finite numbers)")
  _require(len(set(lrs)) == len(lrs), "optim.lr", lrs, "distinct learning rates")
  _require(_is_num(o.momentum) and 0 <= o.momentum < 1, "optim.momentum", o.momentum,
           "a number in [0, 1)")
  for key in ("b1", "b2"):
    _require(_is_num(o[key]) and 0 <= o[key] < 1, f"optim.{key}", o[key], "a number in [0, 1)")
  _require(_is_num(o.eps) and o.eps > 0, "optim.eps", o.eps, "a positive number")
  _require(_is_num(o.ema_decay) and 0 <= o.ema_decay < 1, "optim.ema_decay", o.ema_decay,
           "a number in [0, 1) (0 = no EMA)")

  t = config.train
  _positive_int("train.num_steps", t.num_steps)
  _positive_int("train.batch_size", t.batch_size)
  _choice("train.batch_policy", t.batch_policy, runs.BATCH_POLICIES)
  _positive_int("train.steps_per_dispatch", t.steps_per_dispatch)
  models_axis.validate(config)  # train.models_axis, train.models_group, model.conv_batching
  _positive_int("train.data_parallel", t.data_parallel)
  _require(_is_num(t.checkpoint_every_secs) and t.checkpoint_every_secs > 0,
           "train.checkpoint_every_secs", t.checkpoint_every_secs, "a positive number of seconds")
  _positive_int("train.max_checkpoints", t.max_checkpoints)
  drop = t.get("label_dropout", 0.0)
  _require(_is_num(drop) and 0 <= drop < 1, "train.label_dropout", drop,
           "a probability in [0, 1)")

  e = config.eval
  times = tuple(e.times)
  _require(all(_is_int(v) and v > 0 for v in times), "eval.times", times,
           "positive integer steps")
  beyond = [v for v in times if v > t.num_steps]
  _require(not beyond, "eval.times", times,
           f"steps within the budget train.num_steps={t.num_steps} (beyond it: {beyond}); "
           f"give times up to {t.num_steps}, or --config.eval.times='()' to use "
           f"eval.grid={e.grid!r}, which follows the budget")
  _choice("eval.grid", e.grid, EVAL_GRIDS)
  _positive_int("eval.num_times", e.num_times)
  _positive_int("eval.first_time", e.first_time)
  _require(_is_int(e.num_samples) and e.num_samples >= 2, "eval.num_samples", e.num_samples,
           "an integer >= 2")
  _positive_int("eval.sample_batch", e.sample_batch)
  _choice("eval.sampler", e.sampler, diffusion.sampler_names())
  evaluation.check_extra_outputs(e.get("extra_outputs", ()))
  if diffusion.sampler_for(e.sampler).uses_steps:
    _require(_is_int(e.sampler_steps) and 1 <= e.sampler_steps <= df.num_steps - 1,
             "eval.sampler_steps", e.sampler_steps,
             f"an integer in [1, {df.num_steps - 1}] (diffusion.num_steps - 1)")
  _require(_is_num(e.ddim_eta) and e.ddim_eta >= 0, "eval.ddim_eta", e.ddim_eta,
           "a number >= 0 (0 = deterministic DDIM)")
  _in_open_unit("eval.k", e.k)
  for k in e.k_extra:
    _in_open_unit("eval.k_extra", k)
  _positive_int("eval.n_bootstrap", e.n_bootstrap)
  _positive_int("eval.loss_noise_draws", e.loss_noise_draws)
  _require(_is_num(e.loss_t) and e.loss_t > 0, "eval.loss_t", e.loss_t,
           "a positive OU time (the paper: 0.01)")
  _choice("eval.quality", e.quality, ("auto",) + quality_lib.kind_names())
  guidance = e.get("guidance", 1.0)
  _require(_is_num(guidance) and 0 <= guidance < float("inf"), "eval.guidance", guidance,
           "a finite number >= 0 (1 = conditional, 0 = unconditional)")
  _positive_int("eval.fid_num_sets", e.fid_num_sets)
  _require(_is_int(e.fid_set_size) and e.fid_set_size >= 2, "eval.fid_set_size",
           e.fid_set_size, "an integer >= 2")
  _require(_is_int(e.grid_runs) and e.grid_runs >= 0, "eval.grid_runs", e.grid_runs,
           "an integer >= 0")
  _require(_is_int(e.grid_samples) and e.grid_samples >= 0, "eval.grid_samples",
           e.grid_samples, "an integer >= 0")
  if e.quality == "fid":
    _require(bool(e.inception_weights), "eval.inception_weights", e.inception_weights,
             "the path of pytorch-fid's Inception weights when eval.quality = 'fid'")
  if e.quality == "gmm":
    _require(source.default_quality == "gmm", "eval.quality", e.quality,
             "'gmm' only with data.dataset = 'gmm'")
  if e.quality == "gmm" or (e.quality == "auto" and source.default_quality == "gmm"):
    _require(e.sampler == "em", "eval.sampler", e.sampler,
             "'em' for the GMM KL estimate (it integrates along Euler-Maruyama trajectories)")

  r = config.report
  _require(_is_num(r.tau_gen_tol) and r.tau_gen_tol > 0, "report.tau_gen_tol", r.tau_gen_tol,
           "a positive relative tolerance (0.1 = within 10% of the minimum)")
  _require(_is_num(r.tau_mem_threshold) and 0 <= r.tau_mem_threshold < 1,
           "report.tau_mem_threshold", r.tau_mem_threshold, "a fraction in [0, 1)")


def validate_against_data(config, table, dataset, mesh) -> None:
  """Checks that need the loaded dataset, the run table and the mesh."""
  from jaxdiff.sharding import DATA
  m = config.model
  if m.name == "unet":
    _require(dataset.kind == "image", "model.name", m.name,
             f"'mlp' for vector data ({config.data.dataset}); the U-Net needs images")
    size = dataset.pool.shape[1]
    factor = 2 ** (len(tuple(m.channel_mult)) - 1)
    _require(size % factor == 0, "data.image_size", size,
             f"a multiple of {factor} for a U-Net with {len(tuple(m.channel_mult))} levels")
  dp = mesh.shape[DATA]
  _require(table.batch % dp == 0, "train.data_parallel", dp,
           f"a divisor of the program's batch ({table.batch})")
  q = config.eval.quality
  if q == "fid" or q == "classifier_fd":
    _require(dataset.kind == "image", "eval.quality", q, "'pixel_fd' or 'gmm' for vector data")
  if q == "classifier_fd":
    _require(dataset.pool_labels is not None, "eval.quality", q,
             f"'pixel_fd' or 'fid': {config.data.dataset} has no class labels")
  classes = m.get("num_classes", 0)
  if classes:
    labels = dataset.pool_labels
    _require(labels is not None, "model.num_classes", classes,
             f"0: {config.data.dataset} has no class labels to condition on")
    if len(labels):
      top = int(max(labels.max(), dataset.test_labels.max()))
      _require(top < classes, "model.num_classes", classes,
               f"at least {top + 1}, the number of classes of {config.data.dataset}")
