"""The run table: from a config to one row per run, stacked along the models axis.

Every combination of the swept values (data.n_train x data.seeds x data.index x optim.lr)
is one run; runs differ only in values, never in shapes, so the whole table trains as one
compiled program. Rows are ordered n-major (n, then seed, index, lr), and a run's id is its
row number.

A run's random key depends only on (config.seed, the run's seed), never on its position in
the table or on the device count: the same run gives the same numbers alone, inside any
sweep, and on any mesh. Runs that share a seed therefore share their initial parameters
and their noise draws across n, so they are not independent points: the report's seed
bootstrap (jaxdiff.findings.fits) resamples seeds whole. This is jaxdiff's choice, not the paper's:
the authors' run_Unet.py sets no seed, so each of their runs started from its own draw.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import numpy as np

BATCH_POLICIES = ("min", "replacement", "full")


@dataclasses.dataclass(frozen=True)
class Run:
  """One row of the run table."""
  run: int
  n: int
  seed: int
  index: int
  lr: float

  @property
  def offset(self) -> int:
    """First pool image of this run's training block [index * n, (index + 1) * n)."""
    return self.index * self.n


def effective_batch(n: int, batch_size: int, policy: str) -> int:
  """The batch a run of size n trains with: min(B, n) (paper), B (replacement) or n (full)."""
  if policy == "min":
    return min(batch_size, n)
  if policy == "replacement":
    return batch_size
  if policy == "full":
    return n
  raise ValueError(f"unknown batch policy {policy!r}")


@dataclasses.dataclass(frozen=True)
class RunTable:
  """The runs of a sweep plus the static sizes their common program is compiled for."""
  runs: tuple[Run, ...]
  capacity: int     # static size of a run's training set (>= every n): power of two
  batch: int        # static batch of the compiled step (>= every run's effective batch)
  pool_size: int    # pool images any run trains on: max over runs of (index + 1) * n

  @property
  def num_runs(self) -> int:
    return len(self.runs)

  def column(self, name: str) -> np.ndarray:
    return np.asarray([getattr(r, name) for r in self.runs])

  def records(self, **extra) -> list[dict]:
    """The table as dicts (runs.json), with extra per-sweep columns."""
    return [dict(dataclasses.asdict(r), **extra) for r in self.runs]


def _next_pow2(x: int) -> int:
  return 1 << max(0, int(x - 1).bit_length())


def build_run_table(config) -> RunTable:
  """Expands the config's swept values into runs (n-major order)."""
  runs = tuple(
      Run(run=i, n=int(n), seed=int(s), index=int(ix), lr=float(lr))
      for i, (n, s, ix, lr) in enumerate(itertools.product(
          config.data.n_train, config.data.seeds, config.data.index, config.optim.lr)))
  n_max = max(r.n for r in runs)
  # Capacity is rounded up to a power of two so that a different n-grid with the same
  # number of runs reuses the compiled program (n is a traced value below it).
  capacity = _next_pow2(n_max)
  policy = config.train.batch_policy
  if policy == "full":
    batch = capacity
  else:
    batch = max(effective_batch(r.n, config.train.batch_size, policy) for r in runs)
  pool_size = max((r.index + 1) * r.n for r in runs)
  return RunTable(runs=runs, capacity=capacity, batch=batch, pool_size=pool_size)


def run_key(root_seed: int, seed: int) -> jax.Array:
  """The key of a run: fold_in(PRNGKey(config.seed), run seed)."""
  return jax.random.fold_in(jax.random.PRNGKey(root_seed), seed)
