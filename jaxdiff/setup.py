"""The sweep set up once: config -> validated specs, run table, mesh, data, model, programs.

  built = setup.build(config, devices)                 # the trainer: the real dataset
  built = setup.build(config, devices, stand_in=True)  # the planner: shapes only

Both `train.Sweep` and `plan.AbstractSweep` build through `build`, in this order, so that
the planner compiles exactly the programs the trainer will run:

  1. `check_config`: every key that can be checked without data (validation.validate_sweep)
  2. the run table [M runs], the ('models', 'data') mesh, the models-axis `Layout`
     (jaxdiff.models_axis) and the padded number of runs
  3. the dataset: the real one (data.load_dataset: the pool up to `max_pool`,
     the quality reference block held out), or `stand_in_dataset` (zero-strided zeros of
     the real shapes, from the dataset's registry entry)
  4. the checks that need the data and the mesh (validation.validate_against_data); then
     the caller's `after_checks` (the trainer records config.json only now)
  5. the noise schedule, the model, the optimizer, the example input, the parameter count
  6. the quality metric: its kind (`quality_kind`), and the real metric (reference sets,
     classifier, reference statistics) or `abstract_quality` (feature map and parameter
     shapes only)
  7. the static specs of the train step and the evaluation (`make_specs`)
  8. the compiled `Programs`, and the per-run traced inputs (`run_inputs`)

Below this module the programs receive typed specs (StepSpec, EvalSpec, models_axis.Layout,
RunTable) and the model, schedule, optimizer and loader their config sections, never the
whole config. What a dataset is (kind, labels, item shape, auto quality) is asked of its
registry entry (jaxdiff.data.source_for); nothing here knows datasets by name.
"""

from __future__ import annotations

import dataclasses
import logging
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import data
from jaxdiff import diffusion
from jaxdiff import evaluate
from jaxdiff import models
from jaxdiff import models_axis
from jaxdiff import programs as programs_lib
from jaxdiff import runs as runs_lib
from jaxdiff import sharding
from jaxdiff import train_state
from jaxdiff import validation
from jaxdiff.metrics import quality as quality_lib



# ------------------------------------------------------------------- dataset facts

def data_source(config) -> data.DatasetSource:
  """The registry entry of config.data.dataset (jaxdiff.data): its kind, labels, item
  shape and auto quality, known from the config alone."""
  return data.source_for(config.data.dataset)


def stand_in_dataset(config, table: runs_lib.RunTable) -> Any:
  """A shape-only stand-in for data.Dataset: zero-strided zeros of the real
  shapes (the pool zero-padded as the trainer pads it), for planning without data."""
  source = data_source(config)
  shape = tuple(source.shape(config.data))
  pool_rows = table.pool_size + table.capacity
  zeros = lambda rows: np.broadcast_to(np.zeros((), np.float32), (rows,) + shape)
  return types.SimpleNamespace(
      kind=source.kind, pool=zeros(pool_rows), test=zeros(int(config.data.num_test)),
      pool_labels=np.zeros((0,), np.int32) if source.labelled else None,
      metadata={"mean": np.full(shape, float(config.data.gmm_mean), np.float32)})


# ------------------------------------------------------------------ quality metric

def quality_kind(config) -> str:
  """eval.quality with "auto" resolved: fid with Inception weights, else the dataset's own
  default (its registry entry: the GMM's exact KL, classifier_fd for labelled images,
  pixel_fd otherwise)."""
  kind = config.eval.quality
  if kind != "auto":
    return kind
  if config.eval.inception_weights:
    return "fid"
  return data_source(config).default_quality


def reference_size(config) -> int:
  """Pool items to hold out at the end of the pool order for the quality reference sets.

  eval.fid_num_sets x eval.fid_set_size whenever the quality metric compares with
  reference images (not for the GMM's exact KL or quality = none): a function of the
  config's data and eval keys only, never of the n-grid.
  """
  if not quality_lib.kind_for(quality_kind(config)).needs_reference:
    return 0
  return int(config.eval.fid_num_sets) * int(config.eval.fid_set_size)


def max_pool(config, table) -> int | None:
  """Pool items to load: the training blocks, or all (the classifier of classifier_fd
  learns the whole pool outside the reference block, the same for every n-grid)."""
  if quality_lib.kind_for(quality_kind(config)).whole_pool:
    return None
  return table.pool_size


def reference_sets(dataset, table, eval_cfg) -> tuple[list[np.ndarray], dict]:
  """Disjoint held-out sets for the quality metric, and the record of which images.

  The sets are the dataset's reference block: the last fid_num_sets x fid_set_size items
  of the pool order, held out by `data.load_dataset(reference=...)` before any
  training block is taken (so they depend on the dataset and these two keys only, and no
  run trains on them: the training pool ends where the block starts). The paper uses 5
  sets of 10,000 images. When the pool is too small to hold the block, the sets are cut
  from the test split instead (at most fid_num_sets sets of fid_set_size; one set of the
  whole split when it is smaller than one set).

  Returns:
    (sets, record): record = {"source": "pool" | "test", "sets": [[start, stop], ...]
    (positions in the pool order, or in the test split), "description": one sentence},
    written by the Sweep to WORKDIR/reference_sets.json (source "none", no sets, when the
    quality metric needs no reference images: the GMM's KL, or quality = none).
  """
  del table  # the sets do not depend on the runs
  size, num = int(eval_cfg.fid_set_size), int(eval_cfg.fid_num_sets)
  if dataset.reference is not None:
    start = int(dataset.metadata["reference_start"])
    ranges = [[start + i * size, start + (i + 1) * size] for i in range(num)]
    sets = [dataset.reference[i * size:(i + 1) * size] for i in range(num)]
    description = (f"{num} reference set{'s' if num > 1 else ''} of {size:,} pool items, "
                   f"positions [{start:,}, {start + num * size:,}) of the pool order "
                   f"(its last {num * size:,}, held out before the training blocks, "
                   "which end at or before it), the same for every n-grid.")
    return sets, {"source": "pool", "sets": ranges, "description": description}
  test = dataset.test
  count = min(num, len(test) // size)
  if count >= 1:
    ranges = [[i * size, (i + 1) * size] for i in range(count)]
  else:
    ranges = [[0, len(test)]]
  logging.warning("the pool cannot hold %d x %d reference items: quality reference sets "
                  "from the test split %s", num, size, ranges)
  sets = [test[a:b] for a, b in ranges]
  sizes = ranges[0][1] - ranges[0][0]
  description = (f"{len(ranges)} reference set{'s' if len(ranges) > 1 else ''} of "
                 f"{sizes:,} test items ({ranges[0][0]:,} to {ranges[-1][1]:,} of the test "
                 f"split: the pool of {int(dataset.metadata['pool_available']):,} items "
                 f"cannot also hold {num} x {size:,}), the same for every n-grid.")
  return sets, {"source": "test", "sets": ranges, "description": description}


def no_reference_record(kind: str) -> dict:
  """reference_sets.json of a quality metric without reference images."""
  return {"source": "none", "sets": [],
          "description": quality_lib.kind_for(kind).reference_note}


def real_quality(config, dataset, table, kind: str, *, cache_dir: str,
                 reference_record: Callable[[dict], None] | None = None):
  """The quality metric of a feature space (fid, classifier_fd, pixel_fd) from the data:
  reference sets, the classifier, reference statistics; None for gmm and none.

  `reference_record` receives the reference sets' record (reference_sets.json) as soon
  as the sets are chosen, before the metric's networks and statistics are computed.
  """
  report = reference_record or (lambda record: None)
  if quality_lib.kind_for(kind).build is None:
    report(no_reference_record(kind))
    return None
  sets, record = reference_sets(dataset, table, config.eval)
  report(record)
  return quality_lib.make_quality_metric(
      kind, reference_sets=sets, train_images=dataset.pool, train_labels=dataset.pool_labels,
      inception_weights=config.eval.inception_weights, cache_dir=cache_dir, seed=config.seed)


def abstract_quality(kind: str, data_shape):
  """The feature function and the abstract parameters of a quality metric (no weights,
  no reference statistics): all the evaluation program needs to be compiled.

  Returns (metric, params): a namespace with `features` and a tree of ShapeDtypeStructs
  (None for pixel_fd), or (None, None) for gmm and none.
  """
  features, params = quality_lib.kind_for(kind).abstract(data_shape)
  if features is None:
    return None, None
  return types.SimpleNamespace(features=features), params


# ------------------------------------------------------------------ per-run inputs

def run_inputs(table: runs_lib.RunTable, dataset, config, num_padded: int) -> dict:
  """Per-run traced inputs, padded to the models-axis size by repeating the last run."""
  rows = list(table.runs) + [table.runs[-1]] * (num_padded - table.num_runs)
  channels = dataset.pool.shape[-1]
  means = []
  for r in rows:
    if config.data.center:
      m = np.asarray(data.train_mean(dataset.pool[r.offset:r.offset + r.n]),
                     np.float32)
      means.append(np.broadcast_to(m, (channels,)))
    else:
      means.append(np.zeros((channels,), np.float32))
  keys = np.stack([np.asarray(runs_lib.run_key(config.seed, r.seed)) for r in rows])
  return dict(
      n=np.asarray([r.n for r in rows], np.int32),
      offset=np.asarray([r.offset for r in rows], np.int32),
      mean=np.stack(means).astype(np.float32),
      lr=np.asarray([r.lr for r in rows], np.float32),
      key=keys.astype(np.uint32),
      **run_labels(rows, dataset, config, table.capacity))


def run_labels(rows, dataset, config, capacity: int) -> dict:
  """A conditional model's labels: [M, capacity] of each training block, [M, T] of test.

  Missing labels (a shape-only stand-in dataset) are zeros; a real dataset without labels
  is refused by validation before this.
  """
  if not config.model.get("num_classes", 0):
    return {}
  pool_labels = getattr(dataset, "pool_labels", None)
  pool_labels = np.zeros((0,), np.int32) if pool_labels is None else np.asarray(pool_labels)
  test_labels = getattr(dataset, "test_labels", None)
  num_test = len(dataset.test)
  if test_labels is None or len(test_labels) != num_test:
    test_labels = np.zeros((num_test,), np.int32)
  blocks = []
  for r in rows:
    block = np.zeros((capacity,), np.int32)
    got = pool_labels[r.offset:r.offset + capacity]
    block[:len(got)] = got
    blocks.append(block)
  return dict(labels=np.stack(blocks).astype(np.int32),
              test_labels=np.broadcast_to(np.asarray(test_labels, np.int32),
                                          (len(rows), num_test)).copy())


# ------------------------------------------------------------------------ specs

def make_specs(config, table: runs_lib.RunTable, schedule, data_shape: tuple[int, ...], *,
               image_data: bool, gmm_mean) -> tuple[programs_lib.StepSpec, evaluate.EvalSpec]:
  """The static settings of the train step (programs.StepSpec) and of the evaluation."""
  ks = (float(config.eval.k),) + tuple(float(k) for k in config.eval.k_extra)
  eval_spec = evaluate.EvalSpec(
      sampler=config.eval.sampler, sampler_steps=config.eval.sampler_steps,
      ddim_eta=float(config.eval.ddim_eta), num_samples=config.eval.num_samples,
      sample_batch=min(config.eval.sample_batch, config.eval.num_samples), ks=ks,
      n_bootstrap=config.eval.n_bootstrap,
      loss_index=diffusion.index_for_ou_time(schedule, config.eval.loss_t),
      loss_draws=config.eval.loss_noise_draws, loss_batch=min(1024, table.capacity),
      grid_samples=min(config.eval.grid_samples, config.eval.num_samples),
      data_shape=tuple(data_shape), capacity=table.capacity, image_data=image_data,
      gmm_mean=gmm_mean, num_classes=int(config.model.get("num_classes", 0)),
      guidance=float(config.eval.get("guidance", 1.0)),
      extra_outputs=tuple(config.eval.get("extra_outputs", ())))
  step_spec = programs_lib.StepSpec(batch=table.batch, batch_size=config.train.batch_size,
                             policy=config.train.batch_policy,
                             min_index=config.diffusion.min_train_index,
                             data_parallel=config.train.data_parallel,
                             ema_decay=float(config.optim.ema_decay),
                             num_classes=int(config.model.get("num_classes", 0)),
                             label_dropout=float(config.train.get("label_dropout", 0.0)))
  return step_spec, eval_spec


def num_params_of(model, example) -> int:
  """Parameters of one run of `model` (from shapes)."""
  shapes = jax.eval_shape(lambda: train_state.init_params(model, jax.random.PRNGKey(0),
                                                          example))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


# ------------------------------------------------------------------------ the sweep

def check_config(config) -> None:
  """Step 1: every key checkable without data; and counter-based random bits.

  Counter-based random bits: a draw of shape [b, ...] is the prefix of the same draw of
  shape [B, ...], so a run's batches, noise and orders do not depend on the static batch
  or capacity of the sweep it is in (the default since JAX 0.5).
  """
  validation.validate_sweep(config)
  jax.config.update("jax_threefry_partitionable", True)


@dataclasses.dataclass
class BuiltSweep:
  """The pieces of a sweep, as `build` made them (host-side; nothing placed on devices).

  `dataset` is the real data.Dataset or the stand-in; `quality` the real
  metric (with `quality.params`) or the abstract one, whose parameter shapes are
  `abstract_qparams`.
  """
  config: Any
  table: runs_lib.RunTable
  mesh: Any
  layout: models_axis.Layout
  num_padded: int
  dataset: Any
  data_shape: tuple[int, ...]
  schedule: Any
  model: Any
  tx: Any
  example: jax.Array
  num_params: int
  quality_kind: str
  quality: Any
  abstract_qparams: Any
  step_spec: Any
  eval_spec: evaluate.EvalSpec
  programs: Any
  host_inputs: dict

  @property
  def strategy(self) -> str:
    return self.layout.strategy

  @property
  def runs_per_device(self) -> int:
    return self.num_padded // self.mesh.shape[sharding.MODELS]

  def host_pool(self) -> np.ndarray:
    """The pool of the programs: the training blocks, zero-padded so that every run's
    [offset, offset + capacity) window is in range (real data only)."""
    table = self.table
    return np.concatenate([
        self.dataset.pool[:table.pool_size],
        np.zeros((table.capacity,) + self.data_shape, np.float32)]).astype(np.float32)


def build(config, devices=None, *, stand_in: bool = False, checked: bool = False,
          after_checks: Callable[[], None] | None = None, cache_dir: str = "",
          reference_record: Callable[[dict], None] | None = None) -> BuiltSweep:
  """Builds a sweep from its config (the module docstring lists the steps).

  Args:
    config: a diffusion-sweep config.
    devices: the devices of the mesh (default: all devices of all processes).
    stand_in: no data: a shape-only stand-in dataset and an abstract quality metric
      (planning); else the real dataset and metric.
    checked: `check_config` has run already (the trainer runs it before claiming the
      workdir).
    after_checks: called once every check has passed, before the model is built.
    cache_dir: where the real quality metric caches its classifier and statistics.
    reference_record: receives the record of the quality reference sets (real data).
  """
  if not checked:
    check_config(config)
  table = runs_lib.build_run_table(config)
  mesh = sharding.make_mesh(config.train.data_parallel, devices)
  layout = models_axis.layout_of(config, mesh.devices.flat[0].platform)
  num_padded = models_axis.padded_num_runs(table.num_runs, mesh)
  if stand_in:
    dataset = stand_in_dataset(config, table)
  else:
    dataset = data.load_dataset(
        config.data, max_pool=max_pool(config, table), reference=reference_size(config))
    data.check_subsets(dataset, config.data.n_train, config.data.index)
  validation.validate_against_data(config, table, dataset, mesh)
  if after_checks is not None:
    after_checks()

  schedule = diffusion.schedule_from_config(config.diffusion)
  model = models.get_model(config.model, config.diffusion.num_steps)
  tx = train_state.make_optimizer(config.optim)
  data_shape = tuple(int(v) for v in dataset.pool.shape[1:])
  example = jnp.zeros((1,) + data_shape, jnp.float32)
  num_params = num_params_of(model, example)

  kind = quality_kind(config)
  if stand_in:
    quality, abstract_qparams = abstract_quality(kind, data_shape)
  else:
    quality = real_quality(config, dataset, table, kind, cache_dir=cache_dir,
                           reference_record=reference_record)
    abstract_qparams = None
    if quality is not None and quality.params is not None:
      abstract_qparams = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype),
                                      quality.params)

  step_spec, eval_spec = make_specs(
      config, table, schedule, data_shape, image_data=dataset.kind == "image",
      gmm_mean=(tuple(float(v) for v in dataset.metadata["mean"])
                if kind == "gmm" else None))
  programs = programs_lib.Programs(mesh, layout.strategy, model, tx, schedule, step_spec,
                                   eval_spec, quality, example, table.capacity,
                                   ema=config.optim.ema_decay > 0,
                                   group=layout.group)
  host_inputs = run_inputs(table, dataset, config, num_padded)
  return BuiltSweep(
      config=config, table=table, mesh=mesh, layout=layout, num_padded=num_padded,
      dataset=dataset, data_shape=data_shape, schedule=schedule, model=model, tx=tx,
      example=example, num_params=num_params, quality_kind=kind, quality=quality,
      abstract_qparams=abstract_qparams, step_spec=step_spec, eval_spec=eval_spec,
      programs=programs, host_inputs=host_inputs)
