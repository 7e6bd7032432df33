"""The sweep trainer: every run of a config trained and evaluated in one compiled program.

  train_and_evaluate(config, workdir)

Data flow (design.md): config -> run table [M runs] -> data on device once -> stacked
train state [M, ...] created in its sharding -> chunks of optimizer steps (one
`lax.fori_loop` per dispatch, up to the next evaluation time) -> one jitted evaluation of
all runs -> metrics.jsonl rows, checkpoint, TensorBoard, sample grids -> report ->
finished.json (a rerun of a finished workdir reads it and stops before loading anything).

Per-run functions (programs.train_step, evaluate.evaluate_run) are written for ONE run; they are
lifted over the local slice of the models axis (`models_axis.lift`: unroll or vmap) inside a
`jax.shard_map` over the ('models', 'data') mesh, so runs never communicate and the same
config gives the same numbers on 1 or 8 devices. n, the data offset, the centering mean and
the learning rate are traced values: a new n-grid of the same size and capacity reuses the
compiled program.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import checkpointing
from jaxdiff import cli
from jaxdiff import data
from jaxdiff import distributed
from jaxdiff import eval_times
from jaxdiff import fileio
from jaxdiff import metrics_writer
from jaxdiff import runs as runs_lib
from jaxdiff import setup
from jaxdiff import sharding
from jaxdiff import workdir as workdir_lib
from jaxdiff.errors import JaxdiffError

# Exit codes of `python -m jaxdiff.main` (README "Outputs"): 0 finished, 2 a user mistake
# or an unusable workdir, and these two.
EXIT_DIVERGED = 3   # finished, but some runs diverged (frozen, marked in runs.json/metrics)
EXIT_STOPPED = 75   # stopped by a signal after checkpointing: rerun the command to resume
                    # (75 = EX_TEMPFAIL of sysexits.h, "try again later")


class TrainingDiverged(JaxdiffError):
  """Runs whose loss or parameters became non-finite (the message names them and where).

  Raised at the end of a sweep whose other runs finished (the report is written first:
  `report` is its path), or as soon as every run has diverged.
  """
  exit_code = EXIT_DIVERGED

  def __init__(self, message: str, report: str | None = None):
    super().__init__(message)
    self.report = report


class StoppedBySignal(JaxdiffError):
  """SIGTERM/SIGINT: the sweep checkpointed at the current step; rerunning resumes it."""
  exit_code = EXIT_STOPPED


@jax.jit
def _finite_runs(state):
  """Per run (leading axis): (training loss finite, every float of the state finite)."""
  def per_run(x):
    return jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
  leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.isfinite(state.loss_sum), functools.reduce(jnp.logical_and, map(per_run, leaves))


@jax.jit
def _copy_state(state):
  return jax.tree.map(jnp.copy, state)


@jax.jit
def _keep_runs(mask, frozen, state):
  """`frozen`'s value for the runs where mask is True, `state`'s for the others."""
  return jax.tree.map(
      lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), frozen, state)


class _StopFlag:
  """Turns SIGTERM/SIGINT into a flag the loop checks between dispatches."""

  def __init__(self):
    self.signal = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not in the main thread
        pass
    return self

  def _handle(self, signum, frame):
    if self.signal is not None:  # a second signal: stop at once
      raise KeyboardInterrupt
    self.signal = signum
    logging.warning("signal %d: saving a checkpoint after the current dispatch", signum)

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _grid_runs(table: runs_lib.RunTable, count: int) -> list[int]:
  """Runs shown in the sample grids: the first run of up to `count` n values, spread out."""
  first_of_n = {}
  for r in table.runs:
    first_of_n.setdefault(r.n, r.run)
  ids = list(first_of_n.values())
  if len(ids) <= count:
    return ids
  pick = np.unique(np.round(np.linspace(0, len(ids) - 1, count)).astype(int))
  return [ids[i] for i in pick]


class Sweep:
  """A sweep set up on its mesh: data on device, run table, compiled programs.

  `Sweep(config, workdir).run()` trains and evaluates (train_and_evaluate does just
  that); the pieces are attributes so that tools (capacity planning, compile checks,
  tests) can use them without training.
  """

  def __init__(self, config, workdir: str, devices=None):
    setup.check_config(config)
    self.config, self.workdir = config, workdir
    self.is_main = jax.process_index() == 0
    # The lock first (nothing is written before it); config.json only once the checks
    # that need the data have passed, so a refused config leaves the workdir unclaimed.
    self.claim = workdir_lib.claim(workdir, config.to_dict(), is_main=self.is_main)
    self.resumed = self.claim.resumed
    try:
      self._setup(config, workdir, devices)
    except BaseException:
      self.claim.release()
      raise

  def _setup(self, config, workdir, devices):
    def write_reference_record(record):
      if self.is_main:
        fileio.atomic_write_json(os.path.join(workdir, "reference_sets.json"), record)

    built = setup.build(config, devices, checked=True, after_checks=self.claim.record_config,
                        cache_dir=config.eval.cache_dir or os.path.join(workdir, "cache"),
                        reference_record=write_reference_record)
    self.built = built
    self.table, self.mesh, self.layout = built.table, built.mesh, built.layout
    self.strategy, self.num_padded = built.strategy, built.num_padded
    self.dataset, self.data_shape = built.dataset, built.data_shape
    self.schedule, self.model, self.num_params = built.schedule, built.model, built.num_params
    self.quality_kind, self.quality = built.quality_kind, built.quality
    self.programs = built.programs

    # Data on device once, replicated.
    rep = sharding.replicated(self.mesh)
    self.pool = sharding.global_array(built.host_pool(), rep)
    self.test = sharding.global_array(np.asarray(self.dataset.test, np.float32), rep)
    self.qparams = (sharding.global_tree(self.quality.params, rep)
                    if self.quality is not None and self.quality.params is not None else None)
    self.inputs = sharding.global_tree(built.host_inputs, sharding.models_sharding(self.mesh))

  def make_inputs(self, table: runs_lib.RunTable) -> dict:
    """The per-run traced inputs of a run table, sharded over 'models'."""
    host = setup.run_inputs(table, self.dataset, self.config, self.num_padded)
    return sharding.global_tree(host, sharding.models_sharding(self.mesh))

  def write_run_table(self, diverged: dict | None = None) -> None:
    config, table = self.config, self.table
    records = table.records(width=config.model.width, model=config.model.name,
                            dataset=config.data.dataset, num_params=self.num_params)
    for rec, r in zip(records, table.runs):
      rec["batch_size"] = runs_lib.effective_batch(r.n, config.train.batch_size,
                                                   config.train.batch_policy)
      rec["diverged"] = (diverged or {}).get(r.run)  # None, or {step, frozen_at, reason}
    fileio.atomic_write_json(os.path.join(self.workdir, "runs.json"), records)

  def run(self, stop_at_step: int | None = None) -> str | None:
    """Trains and evaluates until train.num_steps (or stop_at_step), resuming if possible.

    The workdir's lock is released when it returns (a Sweep runs once).

    Returns:
      The path of report.md when a report was written, else None.

    Raises:
      StoppedBySignal: SIGTERM/SIGINT; the state of the current step is checkpointed.
      TrainingDiverged: some runs diverged (after the others finished and the report was
        written), or all of them did.
      DiskFullError: the disk filled up; everything written before is intact.
    """
    try:
      return self._run(stop_at_step)
    finally:
      self.claim.release()

  def _from_main(self, *flags: bool) -> tuple[bool, ...]:
    """Process 0's decisions, taken by every process (they must run the same programs)."""
    return distributed.any_process(*[bool(f) and self.is_main for f in flags])

  def _run(self, stop_at_step):
    config, table, programs, workdir = self.config, self.table, self.programs, self.workdir
    is_main = self.is_main
    inputs, pool, test, qparams = self.inputs, self.pool, self.test, self.qparams
    num_steps = config.train.num_steps
    final = num_steps if stop_at_step is None else min(num_steps, stop_at_step)
    steps_to_eval = eval_times.evaluation_steps(config.eval, num_steps)

    if is_main:  # this sweep may change what a previous finish recorded
      _clear_finished(workdir)
    ckpt = checkpointing.Checkpointer(workdir, config.train.max_checkpoints, is_main=is_main)
    metrics = metrics_writer.Metrics(os.path.join(workdir, "metrics.jsonl"), table, is_main)
    abstract = programs.abstract_state(inputs)
    wall_time = 0.0
    diverged: dict[int, dict] = {}
    restored = ckpt.restore_latest(abstract, self.mesh, say=cli.say if is_main else logging.info)
    if restored is not None:
      state, record, step = restored
      wall_time = float(record.get("wall_time", 0.0))
      diverged = {int(k): v for k, v in (record.get("diverged") or {}).items()}
      if is_main:
        cli.say(f"resumed {workdir} at step {step}")
    else:
      if self.resumed and metrics.keys and is_main:
        cli.say(f"{workdir} has metrics but no checkpoint: restarting from step 0 (rows "
                "already written are not written again)")
      state = programs.init(inputs)
      step = 0
    if is_main:
      self.write_run_table(diverged)

    writer = metrics_writer.Writer(workdir, table, config, self.quality_kind, self.quality,
                                   self.num_params, is_main,
                                   _grid_runs(table, config.eval.grid_runs), metrics,
                                   outputs=programs.outputs)

    def run_evaluation(state, step, diverged):
      t0 = time.time()
      outs = sharding.fetch(programs.evaluate(state, inputs, pool, test, qparams,
                                              jnp.asarray(step, jnp.int32)))
      losses = sharding.fetch((state.loss_sum, state.loss_count))
      writer.evaluation(step, outs, losses, wall_time + (time.time() - t0), diverged)
      return time.time() - t0

    def record():
      return {"wall_time": wall_time, "diverged": {str(k): v for k, v in diverged.items()}}

    # Evaluation steps up to the restored one whose rows are not all present and whole
    # (a crash between checkpoint and rows, a damaged line moved aside, a stop by a
    # signal before the evaluation): recomputed from that step's checkpoint, else missing.
    earlier = [s for s in steps_to_eval if 0 < s <= step]
    redo = self._from_main(*[not metrics.complete(s) for s in earlier])
    kept = set(ckpt.all_steps())
    for s, needed in zip(earlier, redo):
      if not needed:
        continue
      if s == step:
        wall_time += run_evaluation(state, s, diverged)
        writer.commit(s)
      elif s in kept:
        old_state, old_record = ckpt.restore_padded(abstract, s, self.mesh)
        old_diverged = {int(k): v for k, v in (old_record.get("diverged") or {}).items()}
        if is_main:
          cli.say(f"step {s}: recomputing the rows of runs {metrics.missing(s)} from its "
                  "checkpoint")
        run_evaluation(old_state, s, old_diverged)
        writer.commit(s)
        del old_state
      elif is_main:
        cli.say(f"step {s}: the rows of runs {metrics.missing(s)} are missing from "
                f"{metrics.path} and cannot be recomputed (no checkpoint of step {s} is kept); "
                "the report lists them as missing")
    if step in steps_to_eval:
      state = programs.reset_losses(state)

    from tqdm.auto import tqdm
    bar = tqdm(total=num_steps, initial=step, unit="step", disable=not is_main,
               dynamic_ncols=True, desc=f"{table.num_runs} runs")
    last_save = time.time()
    padded = self.num_padded
    try:
      with _StopFlag() as stop:
        while step < final:
          if len(diverged) == table.num_runs:
            break
          target = min([s for s in steps_to_eval if s > step] + [final])
          target = min(target, step + config.train.steps_per_dispatch)
          t0 = time.time()
          # The state before the chunk (the chunk donates its input): a run that diverges
          # in this chunk is frozen at it.
          before = _copy_state(state)
          new_state = programs.chunk(state, inputs, pool,
                                     jnp.asarray(target - step, jnp.int32))
          loss_ok, all_ok = sharding.fetch(_finite_runs(new_state))
          dt = time.time() - t0
          for r in table.runs:
            if r.run in diverged or all_ok[r.run]:
              continue
            what = "training loss" if not loss_ok[r.run] else "parameters"
            diverged[r.run] = dict(
                step=int(target), frozen_at=int(step),
                reason=f"non-finite {what} between steps {step} and {target}")
            if is_main:
              cli.say(f"run {r.run} (n={r.n}, seed={r.seed}, lr={r.lr:g}) diverged: "
                      f"{diverged[r.run]['reason']}; frozen at step {step}, the other runs go on")
              self.write_run_table(diverged)
          if diverged:
            mask = np.zeros((padded,), bool)
            mask[list(diverged)] = True
            mask[table.num_runs:] = (table.num_runs - 1) in diverged  # mirrors of the last
            mask = sharding.global_array(mask, sharding.replicated(self.mesh))
            new_state = _keep_runs(mask, before, new_state)
          del before
          state = new_state
          wall_time += dt
          bar.update(target - step)
          bar.set_postfix({"model-steps/s": f"{table.num_runs * (target - step) / dt:.3g}",
                           **writer.postfix()}, refresh=False)
          step = target
          # Every process must take the same decisions (a checkpoint is written by all):
          # a signal or an overdue checkpoint clock on any process counts for all.
          signalled, overdue = distributed.any_process(
              stop.signal is not None,
              time.time() - last_save > config.train.checkpoint_every_secs)
          if step in steps_to_eval:
            # A stop does not wait for an evaluation: the checkpoint of this step (losses
            # not yet reset) is evaluated on resume.
            (due,) = self._from_main(not metrics.complete(step))
            if due and not signalled:
              wall_time += run_evaluation(state, step, diverged)
            ckpt.save(step, state, record())
            if not signalled:
              if due:
                writer.commit(step)
              state = programs.reset_losses(state)
            last_save = time.time()
          if signalled or step == final or overdue or len(diverged) == table.num_runs:
            ckpt.save(step, state, record())  # no-op if saved above
            last_save = time.time()
          if signalled:
            by = f"signal {stop.signal}" if stop.signal else "a signal to another process"
            raise StoppedBySignal(f"stopped at step {step} by {by}, checkpointed in "
                                  f"{workdir}; rerun the same command to resume")
    finally:
      bar.close()
      ckpt.close()
      writer.close()

    names = ", ".join(
        f"run {r.run} (n={r.n}, seed={r.seed}, lr={r.lr:g}) at step {diverged[r.run]['step']}"
        f" ({diverged[r.run]['reason']})" for r in table.runs if r.run in diverged)
    if len(diverged) == table.num_runs:
      raise TrainingDiverged(
          f"every run diverged: {names}; each is frozen at its last finite state in "
          f"{workdir} (runs.json says where); lower optim.lr in a new --workdir")
    path = None
    if step >= num_steps and config.report.auto and is_main:
      from jaxdiff.findings import report
      path = report.write_report([workdir])
    message = None if not diverged else (
        f"{len(diverged)} of {table.num_runs} runs diverged and were frozen at their last "
        f"finite state: {names}; the other runs trained to step {step}; the diverged runs "
        "are marked in runs.json and metrics.jsonl and listed in the report")
    if step >= num_steps and is_main:
      _mark_finished(workdir, config, path, message)
    if diverged:
      raise TrainingDiverged(message, report=path)
    return path


FINISHED_NAME = "finished.json"


def _config_hash(config_dict: dict) -> str:
  return hashlib.sha256(fileio.dumps(config_dict, sort_keys=True).encode()).hexdigest()


def _metrics_stamp(workdir: str) -> list[int] | None:
  """(size, mtime_ns) of metrics.jsonl: a finish no longer holds once rows changed."""
  try:
    st = os.stat(os.path.join(workdir, "metrics.jsonl"))
  except OSError:
    return None
  return [st.st_size, st.st_mtime_ns]


def _mark_finished(workdir: str, config, report_path: str | None,
                   diverged: str | None) -> None:
  """Writes finished.json: this config trained to train.num_steps and its report (if any)
  is written. A rerun of the same command reads it instead of loading and compiling."""
  report_rel = (None if report_path is None
                else os.path.relpath(report_path, workdir))
  fileio.atomic_write_json(os.path.join(workdir, FINISHED_NAME), {
      "step": int(config.train.num_steps), "config_sha256": _config_hash(config.to_dict()),
      "metrics": _metrics_stamp(workdir), "report": report_rel, "diverged": diverged})


def _clear_finished(workdir: str) -> None:
  try:
    os.remove(os.path.join(workdir, FINISHED_NAME))
  except FileNotFoundError:
    pass


def finished_marker(config, workdir: str) -> dict | None:
  """finished.json of `workdir` when it records this very config (every key, the
  resumable ones included: a longer train.num_steps trains on) trained to its end, the
  stored config.json is compatible (jaxdiff.workdir) and metrics.jsonl is unchanged since;
  else None. Reads three small files, nothing else."""
  try:
    with open(os.path.join(workdir, FINISHED_NAME), encoding="utf-8") as f:
      marker = json.load(f)
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      stored = json.load(f)
  except (OSError, ValueError):
    return None
  current = config.to_dict()
  if (not isinstance(marker, dict) or not isinstance(stored, dict)
      or marker.get("step") != config.train.num_steps
      or marker.get("config_sha256") != _config_hash(current)
      or marker.get("metrics") != _metrics_stamp(workdir)
      or workdir_lib.config_differences(stored, current)):
    return None
  return marker


def train_and_evaluate(config, workdir: str, *, stop_at_step: int | None = None,
                       devices=None, rewrite_report: bool = False) -> str | None:
  """Trains and evaluates every run of `config` in `workdir` (resuming it if it exists).

  A workdir that this config already finished (`finished_marker`) is not touched: it says
  so and returns its report's path, without loading data or compiling (one process only;
  a multi-process launch resumes as before). `rewrite_report` rewrites that report.

  Args:
    config: a diffusion-sweep config (configs/base.py keys).
    workdir: the output directory (the unit of resume).
    stop_at_step: stop (after checkpointing) once this many steps are done; for tests and
      for splitting long sweeps into jobs.
    devices: the devices of the mesh (default: all devices of all processes).
    rewrite_report: on a finished workdir, write its report again.

  Returns:
    The path of report.md when a report was written (or, finished, exists), else None.
  """
  marker = (finished_marker(config, workdir)
            if stop_at_step is None and jax.process_count() == 1 else None)
  if marker is not None:
    path = marker.get("report")
    path = None if path is None else os.path.join(workdir, path)
    steps = config.train.num_steps
    if rewrite_report or (path is not None and not os.path.isfile(path)):
      from jaxdiff.findings import report
      path = report.write_report([workdir])
      cli.say(f"{workdir} is already finished (step {steps} of train.num_steps = {steps}); "
              "its report is written again")
    else:
      cli.say(f"{workdir} is already finished (step {steps} of train.num_steps = {steps}): "
              "nothing trained or rewritten (--rewrite_report writes its report again; a "
              "larger --config.train.num_steps trains on)")
    if marker.get("diverged"):
      raise TrainingDiverged(marker["diverged"], report=path)
    return path
  return Sweep(config, workdir, devices).run(stop_at_step)
