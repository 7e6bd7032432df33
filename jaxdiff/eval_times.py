"""Evaluation times: the training steps at which every run is evaluated.

The default is the milestone grid behind the paper's figures (paper.md 1.5): with
floor_m(x) rounding down to a multiple of m,

  unique( floor_250(logspace(log10 251, 4, 10)) U floor_5000(logspace(4, 6, 90))
          U floor_5000(logspace(6, 7, 20)) )[::2],

which contains 100,000, 190,000 and 1,620,000 (the times of the paper's Figs 2 and 6).
It is cut at the step budget, and the last step is always added.

Every grid but explicit `eval.times` follows the budget `train.num_steps`, so a shorter
run (`--config.train.num_steps=400`) gets a shorter grid of the same kind:

- "paper": the milestones above, cut at the budget;
- "log": `num_times` log-spaced steps from `first_time` to the budget;
- "octaves": the budget halved again and again, with the 3/4 point of each octave,
  down to `first_time` (which is included): for 32,000 steps and first_time 100,
  100, 125, 188, 250, 375, 500, ..., 16000, 24000, 32000; round numbers at any budget.
"""

from __future__ import annotations

import numpy as np

GRIDS = ("paper", "log", "octaves")


def paper_grid() -> np.ndarray:
  """The paper's 40-odd milestones up to 10^7 steps (before cutting at the budget)."""
  def floor_to(x, m):
    return (np.floor(x / m) * m).astype(np.int64)
  a = floor_to(np.logspace(np.log10(251), 4, 10), 250)
  b = floor_to(np.logspace(4, 6, 90), 5000)
  c = floor_to(np.logspace(6, 7, 20), 5000)
  grid = np.unique(np.concatenate([a, b, c]))[::2]
  return grid[grid > 0]


def log_grid(first: int, last: int, num: int) -> np.ndarray:
  """num log-spaced integer steps from first to last (duplicates removed)."""
  if num <= 1:
    return np.asarray([last], np.int64)
  grid = np.unique(np.round(np.logspace(np.log10(first), np.log10(last), num)).astype(np.int64))
  return grid[grid > 0]


def octave_grid(first: int, last: int) -> np.ndarray:
  """last / 2^k and 3/4 last / 2^k for k >= 0, rounded, above `first`; and `first` itself."""
  if first >= last:
    return np.asarray([last], np.int64)
  num_octaves = int(np.ceil(np.log2(last / first))) + 1
  halvings = last / 2.0 ** np.arange(num_octaves)
  grid = np.round(np.concatenate([halvings, 0.75 * halvings])).astype(np.int64)
  grid = grid[grid > first]
  return np.unique(np.concatenate([grid, [first, last]]))


def evaluation_steps(eval_cfg, num_steps: int) -> list[int]:
  """The sorted evaluation steps of a sweep; always includes num_steps, never exceeds it."""
  if len(eval_cfg.times):
    grid = np.asarray(eval_cfg.times, np.int64)
  elif eval_cfg.grid == "paper":
    grid = paper_grid()
  elif eval_cfg.grid == "log":
    grid = log_grid(min(eval_cfg.first_time, num_steps), num_steps, eval_cfg.num_times)
  elif eval_cfg.grid == "octaves":
    grid = octave_grid(min(eval_cfg.first_time, num_steps), num_steps)
  else:
    raise ValueError(f"unknown eval grid {eval_cfg.grid!r}")
  grid = grid[(grid > 0) & (grid <= num_steps)]
  return sorted(set(int(g) for g in grid) | {int(num_steps)})
