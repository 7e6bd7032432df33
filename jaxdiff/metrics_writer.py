"""What an evaluation leaves on disk: metrics.jsonl rows, TensorBoard scalars, sample grids.

  metrics = Metrics(workdir + "/metrics.jsonl", table, is_main)   # rows already written
  writer = Writer(workdir, table, config, quality_kind, quality, num_params, is_main,
                  grid_runs, metrics, outputs=programs.outputs)
  writer.evaluation(step, outs, losses, wall_time, diverged)      # rows buffered
  writer.commit(step)                                             # after the checkpoint
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from jaxdiff import cli
from jaxdiff import fileio


def summary_line(rows: list[dict]) -> str:
  """One line per evaluation: f_mem and quality per n, averaged over its runs."""
  by_n: dict[int, list[dict]] = {}
  for row in rows:
    by_n.setdefault(row["n"], []).append(row)
  parts = []
  for n, group in sorted(by_n.items()):
    f = np.mean([r["f_mem"] for r in group])
    q = [r["quality"] for r in group if r["quality"] is not None]
    parts.append(f"n={n} f_mem={f:.3f}" + (f" q={np.mean(q):.3g}" if q else ""))
  return " | ".join(parts)



def _summary_writer(logdir):
  """tensorboardX's SummaryWriter, imported without torch.

  tensorboardX imports torch at import time whenever it is installed, only so that its
  writer also accepts torch tensors; that import is 2.5 s of every sweep's start on the
  2-core machine. The writer is given Python floats, so torch is hidden while tensorboardX
  loads (an entry of None in sys.modules makes `import torch` fail there); a process that
  has already imported torch keeps it.
  """
  hide = "torch" not in sys.modules
  if hide:
    sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter
  finally:
    if hide:
      del sys.modules["torch"]
  return SummaryWriter(logdir)

class Metrics:
  """Which (step, run) rows metrics.jsonl holds, whole; damaged lines moved aside.

  Read on process 0 when a sweep starts. A line that does not parse (cut by a crash or a
  full disk, or damaged), lacks its step/run, or repeats a (step, run) already present, is
  moved to metrics.damaged.jsonl beside it (named in the output). An evaluation step is
  complete when every run of the table has its row.
  """

  ASIDE = "metrics.damaged.jsonl"

  def __init__(self, path: str, table, is_main: bool):
    self.path, self.table = path, table
    self.keys: set[tuple[int, int]] = set()
    if is_main:
      self._load()

  def _load(self) -> None:
    valid = lambda r: (isinstance(r, dict) and isinstance(r.get("step"), int)
                       and isinstance(r.get("run"), int))
    rows, damaged = fileio.scan_jsonl(self.path, valid)
    aside = [n for n, _ in damaged]
    for n, row in rows:
      key = (row["step"], row["run"])
      if key in self.keys:
        aside.append(n)  # a second copy (written by an older jaxdiff)
      else:
        self.keys.add(key)
    if aside:
      to = os.path.join(os.path.dirname(self.path), self.ASIDE)
      fileio.set_aside_lines(self.path, aside, to)
      cli.say(f"{self.path}: moved {len(aside)} damaged or repeated line(s) "
              f"(line {', '.join(map(str, sorted(aside)))}) to {to}; their rows are recomputed "
              "where a checkpoint of their step is kept")

  def complete(self, step: int) -> bool:
    return all((step, r.run) in self.keys for r in self.table.runs)

  def missing(self, step: int) -> list[int]:
    return [r.run for r in self.table.runs if (step, r.run) not in self.keys]


def f_mem_column(k: float) -> str:
  """The metrics.jsonl column of f_mem at an extra threshold k: "f_mem_k0.25"."""
  return f"f_mem_k{round(float(k), 4):g}"


def digits(x) -> float:
  """A float32-derived value with its 7 significant digits (float32 carries about 7.2:
  more are conversion noise, 0.14f -> 0.140000000596); non-finite values pass through."""
  x = float(x)
  return float(f"{x:.7g}") if math.isfinite(x) else x


def fraction(x, total: int) -> float:
  """A float32 fraction of `total` samples as the exact count / total where it is one
  (f_mem, its bootstrap percentiles when they fall on a count), else `digits`."""
  x = float(x)
  if math.isfinite(x) and total > 0:
    count = round(x * total)
    if abs(count / total - x) <= 1e-6 * max(1.0, abs(x)):
      return count / total
  return digits(x)


class Writer:
  """Turns evaluation outputs into metrics rows, TensorBoard scalars and sample grids.

  What a row holds, which fields go to TensorBoard and which files an evaluation writes
  are declared by the outputs of jaxdiff.evaluation (`outputs`, in row order); the writer
  adds the run's identity and wall_time.

  Rows of an evaluation step are buffered by `evaluation` and appended by `commit` (after
  the checkpoint of that step is on disk), so a crash never leaves rows that the next
  resume would write again; `commit` appends only the (step, run) rows not yet present, so
  no row is written twice whatever checkpoint a sweep resumes from. A diverged run's row
  has `diverged` = {step, frozen_at, reason} and no metric values.
  """

  def __init__(self, workdir, table, config, quality_kind, quality, num_params, is_main,
               grid_runs, metrics: Metrics, *, outputs):
    self.metrics = metrics
    self.outputs = tuple(outputs)  # jaxdiff.evaluation outputs, in row order
    self.workdir, self.table, self.config = workdir, table, config
    self.quality_kind, self.quality = quality_kind, quality
    self.num_params, self.is_main, self.grid_runs = num_params, is_main, grid_runs
    self.pending: list[dict] = []
    self.latest: dict[int, dict] = {}
    self.tb = None
    if is_main:
      try:
        self.tb = _summary_writer(os.path.join(workdir, "tensorboard"))
      except ImportError:  # TensorBoard output is optional
        self.tb = None

  def _identity(self, step, r) -> dict:
    """The fields that say which run a row is (every row starts with them)."""
    cfg = self.config
    return dict(step=int(step), run=r.run, n=r.n, seed=r.seed, index=r.index, lr=r.lr,
                width=cfg.model.width, num_params=self.num_params, dataset=cfg.data.dataset,
                model=cfg.model.name)

  def _diverged_row(self, step, r, info, wall_time):
    row = self._identity(step, r)
    for output in self.outputs:
      row.update(output.diverged_row(self))
    row.update(wall_time=float(wall_time), diverged=dict(info))
    return row

  def _row(self, step, r, outs, wall_time):
    row = self._identity(step, r)
    for output in self.outputs:
      row.update(output.row(outs, r.run, self))
    row["wall_time"] = round(float(wall_time), 3)
    return row

  def evaluation(self, step, outs, losses, wall_time, diverged=None):
    """Buffers the rows of evaluation `step` (host arrays `outs` [M, ...]; `losses` the
    running training loss (loss_sum, loss_count) [M]); writes TensorBoard scalars and
    each output's files (the sample grids)."""
    outs = dict(outs, loss_sum=losses[0], loss_count=losses[1])
    diverged = diverged or {}
    rows = []
    for r in self.table.runs:
      if r.run in diverged:  # frozen: its metrics (a FID of overflowing samples) are skipped
        rows.append(self._diverged_row(step, r, diverged[r.run], wall_time))
      else:
        rows.append(self._row(step, r, outs, wall_time))
    self.pending = rows
    for row in rows:
      if row.get("diverged") is None:
        self.latest[row["run"]] = row
    rows = [row for row in rows if row.get("diverged") is None]
    if not self.is_main:
      return
    if self.tb is not None:
      names = [n for output in self.outputs for n in output.tensorboard]
      for row in rows:
        tag = f"n{row['n']}_seed{row['seed']}_idx{row['index']}_lr{row['lr']:g}"
        for name in names:
          if row.get(name) is not None:
            self.tb.add_scalar(f"{name}/{tag}", row[name], step)
      self.tb.flush()
    if rows:
      cli.say(f"step {step}: " + summary_line(rows))
    for output in self.outputs:
      if output.save is not None:
        output.save(self, step, outs, diverged)

  def commit(self, step):
    new = [r for r in self.pending if (r["step"], r["run"]) not in self.metrics.keys]
    if self.is_main and new:
      fileio.append_jsonl(self.metrics.path, new)
      self.metrics.keys.update((r["step"], r["run"]) for r in new)
    self.pending = []

  def postfix(self) -> dict:
    if not self.latest:
      return {}
    fm = [self.latest[r]["f_mem"] for r in sorted(self.latest)]
    return {"f_mem": " ".join(f"{v:.2f}" for v in fm[:8]) + (" ..." if len(fm) > 8 else "")}

  def close(self):
    if self.tb is not None:
      self.tb.close()
