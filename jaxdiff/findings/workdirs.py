"""Reading a sweep workdir: config.json, runs.json, metrics.jsonl and the sample grids.

The one place that knows the files a diffusion sweep leaves (layout: notes/schema); every
other findings module works on the `WorkdirFiles` it returns.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import Any

from jaxdiff import fileio
from jaxdiff.errors import WorkdirError


@dataclasses.dataclass
class WorkdirFiles:
  """The files of one sweep workdir: config.json, runs.json and the rows of metrics.jsonl
  (diverged runs' rows left out; see load_workdir)."""
  path: str
  config: dict[str, Any]
  runs: list[dict[str, Any]]
  rows: list[dict[str, Any]]


def _read_json(path: str, workdir: str):
  if not os.path.isfile(path):
    raise WorkdirError(
        f"{path} is missing: {workdir} is not a jaxdiff sweep workdir (create one with "
        f"python -m jaxdiff.main --config=... --workdir={workdir})")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise WorkdirError(f"{path} is not valid JSON ({e}): is {workdir} a jaxdiff workdir?") from e


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
  """A metrics row in the current format: rows written before the flat columns nest the
  extra thresholds as f_mem_extra = {"0.5": f, ...}; they become f_mem_k0.5, ... columns
  (a column already present wins)."""
  extra = row.get("f_mem_extra")
  if not isinstance(extra, dict):
    return row
  out = {k: v for k, v in row.items() if k != "f_mem_extra"}
  for k, v in extra.items():
    try:
      name = f"f_mem_k{round(float(k), 4):g}"
    except ValueError:
      continue
    out.setdefault(name, v)
  return out


def load_workdir(workdir: str) -> WorkdirFiles:
  """Reads config.json, runs.json and metrics.jsonl of a workdir (layout: notes/schema).

  Raises:
    WorkdirError: the directory or one of the files is missing, unreadable or not a
      jaxdiff diffusion sweep's (the message names the file).
  """
  if not os.path.isdir(workdir):
    raise WorkdirError(f"workdir {workdir} does not exist: pass the --workdir of a jaxdiff "
                       "diffusion sweep")
  cfg_path = os.path.join(workdir, "config.json")
  config = _read_json(cfg_path, workdir)
  if not isinstance(config, dict) or not all(isinstance(config.get(k), dict)
                                             for k in ("data", "model", "eval")):
    raise WorkdirError(f"{cfg_path} is not a jaxdiff config (it lacks the data/model/eval "
                       f"sections): {workdir} belongs to another program")
  if config.get("experiment", "diffusion") != "diffusion":
    raise WorkdirError(f"{cfg_path} has experiment = {config.get('experiment')!r}: the report "
                       "reads diffusion sweeps only (experiment = 'diffusion')")
  runs_path = os.path.join(workdir, "runs.json")
  runs = _read_json(runs_path, workdir)
  if (not isinstance(runs, list) or not runs
      or not all(isinstance(r, dict) and "run" in r and "n" in r for r in runs)):
    raise WorkdirError(f"{runs_path} is not a run table (expected a non-empty list of "
                       "objects with 'run' and 'n')")
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(metrics_path):
    raise WorkdirError(f"{metrics_path} is missing: the sweep in {workdir} has not evaluated "
                       "anything yet (run or resume python -m jaxdiff.main on it)")
  # A diverged run (runs.json, rows with `diverged`) is left out of the analysis and named
  # in the notes (see analyze).
  raw = [r for r in fileio.read_jsonl(metrics_path)
         if isinstance(r, dict) and "run" in r and "step" in r]
  # A run marked only in its rows counts as diverged as a whole, like one in runs.json.
  by_id = {int(r["run"]): r for r in runs}
  for row in sorted((r for r in raw if r.get("diverged")), key=lambda r: r["step"]):
    entry = by_id.get(int(row["run"]))
    if entry is not None and not entry.get("diverged"):
      flag = row["diverged"]
      entry["diverged"] = flag if isinstance(flag, dict) else {
          "step": row["step"], "reason": "marked in metrics.jsonl"}
  diverged = {int(r["run"]) for r in runs if r.get("diverged")}
  rows = [flat_row(r) for r in raw if not r.get("diverged") and int(r["run"]) not in diverged]
  if not rows:
    raise WorkdirError(f"{metrics_path} has no evaluation rows yet: run or resume the sweep "
                       "first")
  return WorkdirFiles(workdir, config, runs, rows)


def sample_grids(workdir: str) -> list[dict[str, Any]]:
  """The sample grids a sweep wrote (WORKDIR/samples/step_<step>.png), by step."""
  out = []
  for path in glob.glob(os.path.join(workdir, "samples", "step_*.png")):
    m = re.fullmatch(r"step_(\d+)\.png", os.path.basename(path))
    if m:
      out.append({"workdir": workdir, "path": path, "step": int(m.group(1))})
  return sorted(out, key=lambda d: d["step"])
