"""Evaluation times: the training steps at which every run is evaluated.

The default is the milestone grid behind the paper's figures (paper.md 1.5): with
floor_m(x) rounding down to a multiple of m,

  unique( floor_250(logspace(log10 251, 4, 10)) U floor_5000(logspace(4, 6, 90))
          U floor_5000(logspace(6, 7, 20)) )[::2],

which contains 100,000, 190,000 and 1,620,000 (the times of the paper's Figs 2 and 6).
It is cut at the step budget, and the last step is always added.
"""

from __future__ import annotations

import numpy as np


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


def evaluation_steps(eval_cfg, num_steps: int) -> list[int]:
  """The sorted evaluation steps of a sweep; always includes num_steps, never exceeds it."""
  if len(eval_cfg.times):
    grid = np.asarray(eval_cfg.times, np.int64)
  elif eval_cfg.grid == "paper":
    grid = paper_grid()
  elif eval_cfg.grid == "log":
    grid = log_grid(min(eval_cfg.first_time, num_steps), num_steps, eval_cfg.num_times)
  else:
    raise ValueError(f"unknown eval grid {eval_cfg.grid!r}")
  grid = grid[(grid > 0) & (grid <= num_steps)]
  return sorted(set(int(g) for g in grid) | {int(num_steps)})
