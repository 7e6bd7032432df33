"""Workdir ownership, orbax checkpoints and resume.

A workdir is the unit of resume: rerunning the same command continues it. Its
config.json records the config it was started with; a later config may differ only in
keys that do not change what is computed (the step budget, evaluation grid, dispatch and
checkpoint cadence, layout on devices, file locations); any other difference is refused
with the list of keys. A directory that holds files but no config.json is not adopted.

Checkpoints hold the complete stacked train state (parameters, optimizer moments, data
order, keys, step) plus a small JSON record (wall time); orbax writes each one to a
temporary directory and renames it when complete, so a kill at any moment leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdiff import fileio
from jaxdiff import sharding
from jaxdiff.errors import WorkdirError

# Keys that may change between runs on the same workdir (they change how or how long, not
# what, is computed).
RESUMABLE_KEYS = (
    "train.num_steps", "train.steps_per_dispatch", "train.checkpoint_every_secs",
    "train.max_checkpoints", "train.models_axis", "train.models_group", "train.data_parallel",
    "eval.times", "eval.grid", "eval.num_times", "eval.first_time", "eval.sample_batch",
    "eval.grid_runs", "eval.grid_samples", "eval.inception_weights", "eval.cache_dir",
    "data.tfds_data_dir", "model.conv_batching",
)
RESUMABLE_PREFIXES = ("report.",)


def _normalise(v):
  # JSON turns tuples into lists; compare in JSON form.
  return json.loads(fileio.dumps(v))


def config_differences(stored: dict, current: dict) -> list[str]:
  """Keys whose values differ and that a resume may not change, as 'key: old -> new'."""
  a, b = fileio.flatten_dict(stored), fileio.flatten_dict(current)
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES):
      continue
    old, new = _normalise(a.get(key, "<absent>")), _normalise(b.get(key, "<absent>"))
    if old != new:
      diffs.append(f"{key}: {old!r} -> {new!r}")
  return diffs


def claim_workdir(workdir: str, config_dict: dict, write: bool = True) -> bool:
  """Checks that `workdir` is new, empty or a workdir of this config, and records the config.

  With several processes every process calls it (with write=True on process 0 only): they
  check that they run the same config, all look at the workdir before anything is written
  to it (a config.json appearing between a process's two looks would make the workdir look
  foreign), then process 0 records the config, and none returns before it has.

  Returns:
    True when the workdir already held this sweep (a resume).

  Raises:
    WorkdirError: the directory is foreign or its config differs in non-resumable keys.
    JaxdiffError: the processes of a multi-process launch run different configs.
  """
  sharding.check_same_on_all_processes(fileio.dumps(config_dict), "the config")
  path = os.path.join(workdir, "config.json")
  resumed = False
  if os.path.exists(path):
    try:
      with open(path) as f:
        stored = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise WorkdirError(f"{path} is not a readable jaxdiff config ({e}); "
                         "use a new --workdir") from None
    diffs = config_differences(stored, config_dict)
    if diffs:
      raise WorkdirError(
          f"--workdir={workdir} holds a run of a different config; differing keys: "
          + "; ".join(diffs) + ". Use a new --workdir, or the config stored in "
          f"{path}.")
    resumed = True
  elif os.path.isdir(workdir) and any(not n.startswith(".") for n in os.listdir(workdir)):
    raise WorkdirError(f"--workdir={workdir} is not empty and has no config.json, so it "
                       "is not a jaxdiff workdir; choose a new or empty directory")
  sharding.check_same_on_all_processes("workdir checked", "the workdir")
  if write:
    fileio.atomic_write_json(path, config_dict)
  sharding.check_same_on_all_processes("workdir claimed", "the workdir")
  return resumed


class Checkpointer:
  """Orbax CheckpointManager for the stacked train state and a JSON record."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, record: dict) -> None:
    """Saves synchronously (returns once the checkpoint is complete on disk)."""
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(record)), force=True)
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores into the shapes and shardings of `abstract_state` (ShapeDtypeStructs)."""
    step = self.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"] or {})

  def restore_arrays(self, step: int | None = None) -> dict:
    """The saved state as a tree of host arrays, without knowing its structure (for tools)."""
    step = self.latest_step() if step is None else step
    path = os.path.join(self.directory, str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    # As numpy, not as jax.Arrays on the saved devices: a checkpoint written by several
    # processes (or on more devices) is read by one process.
    tree = checkpointer.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, restore_args=as_numpy)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_with_sharding(tree: Any, sharding) -> Any:
  """ShapeDtypeStructs of `tree` (from jax.eval_shape) placed in `sharding`."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)
