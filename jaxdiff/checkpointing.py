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

A checkpoint that cannot be read is moved aside to `checkpoints.unreadable/` (named in a
warning) and the one before it is restored; when none can be read the error names the
folder. A checkpoint written with another models-axis padding (another device count) is
restored at its stored size and re-padded (`restore_latest`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdiff import distributed
from jaxdiff import fileio
from jaxdiff import sharding
from jaxdiff.errors import WorkdirError
# The config comparison lives with the claim; re-exported for older callers.
from jaxdiff.workdir import RESUMABLE_KEYS, RESUMABLE_PREFIXES, config_differences  # noqa: F401

UNREADABLE = "checkpoints.unreadable"

def claim_workdir(workdir: str, config_dict: dict, write: bool = True) -> bool:
  """Claims `workdir` and records the config at once (see jaxdiff.workdir).

  For callers with no checks between claiming and recording (the theory study); the lock
  is held until the process exits. The sweep trainer uses `jaxdiff.workdir.claim`.

  Returns:
    True when the workdir already held this sweep (a resume).
  """
  from jaxdiff import workdir as workdir_lib
  claim = workdir_lib.claim(workdir, config_dict, is_main=write)
  claim.record_config()
  return claim.resumed


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return (text.splitlines() or [type(error).__name__])[0][:300]


class Checkpointer:
  """Orbax CheckpointManager for the stacked train state and a JSON record."""

  def __init__(self, workdir: str, max_to_keep: int = 2, is_main: bool = True):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, "checkpoints")
    self.max_to_keep, self.is_main = max_to_keep, is_main
    self._open()

  def _open(self) -> None:
    try:
      self.manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep, create=True))
    except OSError as e:
      if fileio.is_disk_full(e):
        raise fileio.disk_full_error(self.directory, "the checkpoint folder") from None
      raise WorkdirError(f"{self.directory} cannot be opened ({_first_line(e)})") from None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, record: dict) -> None:
    """Saves synchronously (returns once the checkpoint is complete on disk).

    Raises:
      DiskFullError: the device filled up; the earlier checkpoints are intact.
    """
    if step in self.manager.all_steps():
      return
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(record)), force=True)
      self.manager.wait_until_finished()
    except Exception as e:  # orbax wraps the OSError of its writer threads
      if fileio.is_disk_full(e):
        raise fileio.disk_full_error(self.directory, f"the checkpoint of step {step}") from None
      raise

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores into the shapes and shardings of `abstract_state` (ShapeDtypeStructs)."""
    step = self.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"] or {})

  def stored_leading_size(self, step: int) -> int | None:
    """The models-axis size the checkpoint of `step` was written with (None: unknown)."""
    path = os.path.join(self.directory, str(step), "state")
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # orbax warns about a metadata file it does not need
    try:
      tree = ocp.PyTreeCheckpointer().metadata(path).item_metadata.tree
    finally:
      absl_logger.setLevel(level)
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(tree) if getattr(leaf, "shape", ())}
    return sizes.pop() if len(sizes) == 1 else None

  def restore_padded(self, abstract_state: Any, step: int, mesh) -> tuple[Any, dict]:
    """Restores `step` into `abstract_state`, re-padding the models axis when needed.

    The models axis is padded to a multiple of the device count by repeating the last
    run (setup.run_inputs), so every padding slot holds the last run's state: a
    checkpoint of another padding is read at its stored size, replicated, and cut or
    extended with copies of its last run.
    """
    want = {x.shape[0] for x in jax.tree.leaves(abstract_state)}
    stored = self.stored_leading_size(step)
    if stored is None or want == {stored}:
      return self.restore(abstract_state, step)
    rep = sharding.replicated(mesh)
    at_stored = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((stored,) + x.shape[1:], x.dtype, sharding=rep),
        abstract_state)
    state, record = self.restore(at_stored, step)
    host = sharding.fetch(state)

    def repad(x, target):
      m = target.shape[0]
      if x.shape[0] >= m:
        return x[:m]
      return np.concatenate([x, np.repeat(x[-1:], m - x.shape[0], axis=0)])

    padded = jax.tree.map(repad, host, abstract_state)
    out = jax.tree.map(lambda x, t: sharding.global_array(x, t.sharding), padded,
                       abstract_state)
    logging.warning("checkpoint of step %d has %d runs on the models axis, this mesh %d: "
                    "re-padded", step, stored, next(iter(want)))
    return out, record

  def restore_latest(self, abstract_state: Any, mesh, say=logging.warning
                     ) -> tuple[Any, dict, int] | None:
    """The newest readable checkpoint (state, record, step), or None when there is none.

    An unreadable checkpoint is reported by name and moved aside (process 0) to
    <workdir>/checkpoints.unreadable/, and the one before it is tried.

    Raises:
      WorkdirError: there are checkpoints but none can be read (the message names the
        folder they were moved to).
    """
    failures = []
    for step in reversed(self.all_steps()):
      try:
        state, record = self.restore_padded(abstract_state, step, mesh)
        return state, record, step
      except Exception as e:  # orbax/tensorstore raise many types for a damaged file
        if fileio.is_disk_full(e):
          raise
        where = os.path.join(self.directory, str(step))
        failures.append(f"step {step}: {_first_line(e)}")
        moved = self._set_aside(step)
        say(f"checkpoint {where} is unreadable ({_first_line(e)}); moved it to {moved}; "
            "trying the one before")
    if failures:
      raise WorkdirError(
          f"no readable checkpoint in {self.directory} ({'; '.join(failures)}); they were "
          f"moved to {os.path.join(self.workdir, UNREADABLE)}: rerun the same command to "
          "start again from step 0 (the metrics rows already written are kept)")
    return None

  def _set_aside(self, step: int) -> str:
    src = os.path.join(self.directory, str(step))
    dst_dir = os.path.join(self.workdir, UNREADABLE)
    dst = os.path.join(dst_dir, str(step))
    if self.is_main:
      os.makedirs(dst_dir, exist_ok=True)
      k = 1
      while os.path.exists(dst):
        dst = os.path.join(dst_dir, f"{step}.{k}")
        k += 1
      shutil.move(src, dst)
    distributed.check_same_on_all_processes(f"checkpoint {step} set aside", "the checkpoints")
    # The manager lists its steps when opened: open it again without the one moved.
    self.manager.close()
    self._open()
    return dst

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
    try:
      self.manager.wait_until_finished()
    finally:
      self.manager.close()


def abstract_with_sharding(tree: Any, sharding) -> Any:
  """ShapeDtypeStructs of `tree` (from jax.eval_shape) placed in `sharding`."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)
