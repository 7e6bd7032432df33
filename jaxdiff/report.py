"""The report of a diffusion sweep: timescales, fits, figures, summary.json and report.md.

Reads `config.json`, `runs.json` and `metrics.jsonl` of one or more workdirs (several
workdirs, e.g. one per width, combine into one report), measures every run's timescales
(jaxdiff.timescales), aggregates them over seeds and data indices, fits their scaling with
n and W, and writes into the output directory (default: <first workdir>/report):

  quality_fmem.png, fmem_collapse.png, losses.png, timescales.png, and with several
  widths width_scaling.png and phase_diagram.png (jaxdiff.figures); summary.json;
  report.md (figures, tables, the definitions used and a reading of the numbers).

Usage:
  python -m jaxdiff.report --workdir=/tmp/digits
  python -m jaxdiff.report --workdir=/tmp/w16 --workdir=/tmp/w32 --out=/tmp/widths

or from Python: `write_report([workdir])` (the trainer calls it at the end of a sweep when
config.report.auto is set). Every file is written atomically (jaxdiff.fileio).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from jaxdiff import fileio
from jaxdiff import timescales as ts
from jaxdiff.errors import ConfigError, JaxdiffError, WorkdirError

# Metric curves read from metrics.jsonl (any may be missing or null).
CURVES = ("loss", "train_loss", "train_loss_std", "test_loss", "test_loss_std", "f_mem",
          "f_mem_lo", "f_mem_hi", "ratio_median", "quality", "quality_std", "score_error",
          "kl")

# The paper's numbers quoted in the interpretation (paper.md 1.8).
PAPER_TAU_MEM_PER_N = 300.0      # tau_mem ~ 300 n at W = 32 (U-Net, CelebA, SGD)
PAPER_TAU_GEN = 1e5              # tau_gen ~ 1e5 steps at W = 32, independent of n
PAPER_W_TAU_GEN = 3e6            # W tau_gen ~ 3e6


# ------------------------------------------------------------------ reading workdirs


@dataclasses.dataclass
class Sweep:
  """The files of one workdir."""
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


def load_workdir(workdir: str) -> Sweep:
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
  diverged = {int(r["run"]) for r in runs if r.get("diverged")}
  rows = [r for r in fileio.read_jsonl(metrics_path)
          if isinstance(r, dict) and "run" in r and "step" in r and not r.get("diverged")
          and int(r["run"]) not in diverged]
  if not rows:
    raise WorkdirError(f"{metrics_path} has no evaluation rows yet: run or resume the sweep "
                       "first")
  return Sweep(workdir, config, runs, rows)


# ------------------------------------------------------------------ settings


DEFAULT_SETTINGS = {
    "tau_gen_tol": 0.1,          # config.report.tau_gen_tol
    "tau_gen_abs_tol": 0.0,      # config.report.tau_gen_abs_tol (optional key)
    "tau_gen_reference": "minimum",  # config.report.tau_gen_reference (optional key)
    "tau_mem_threshold": 0.01,   # config.report.tau_mem_threshold
    "loss_gap_sigmas": 2.0,      # config.report.loss_gap_sigmas (optional key)
    "phase_multipliers": (1.0, 3.0, 8.0),  # config.report.phase_multipliers (optional)
    "conf": 0.95,                # config.report.conf (optional)
}


def settings_from_config(config: Mapping[str, Any], overrides=None) -> dict[str, Any]:
  """The report's thresholds: config.report.* over the defaults, then `overrides`.

  Args:
    config: a config dict (config.json).
    overrides: None, a mapping (nested {"report": {...}} or dotted {"report.tau_gen_tol":
      0.2}; bare keys mean report.*) or an ml_collections ConfigDict.

  Raises:
    ConfigError: a value out of range.
  """
  flat = {k[len("report."):]: v for k, v in fileio.flatten_dict(config).items()
          if k.startswith("report.")}
  if overrides is not None:
    if hasattr(overrides, "to_dict"):
      overrides = overrides.to_dict()
    for k, v in fileio.flatten_dict(overrides).items():
      flat[k[len("report."):] if k.startswith("report.") else k] = v
  s = dict(DEFAULT_SETTINGS)
  s.update({k: v for k, v in flat.items() if k in DEFAULT_SETTINGS})
  checks = (("tau_gen_tol", lambda v: v >= 0, "a relative tolerance >= 0 (e.g. 0.1)"),
            ("tau_gen_abs_tol", lambda v: v >= 0, "an absolute tolerance >= 0"),
            ("tau_mem_threshold", lambda v: 0 <= v < 1, "a fraction in [0, 1) (e.g. 0.01)"),
            ("loss_gap_sigmas", lambda v: v >= 0, "a number of standard deviations >= 0"),
            ("conf", lambda v: 0 < v < 1, "a confidence level in (0, 1)"))
  for key, ok, expected in checks:
    try:
      s[key] = float(s[key])
      valid = ok(s[key])
    except (TypeError, ValueError):
      valid = False
    if not valid:
      raise ConfigError(f"report.{key}", s[key], expected)
  if s["tau_gen_reference"] not in ts.TAU_GEN_REFERENCES:
    raise ConfigError("report.tau_gen_reference", s["tau_gen_reference"],
                      f"one of {ts.TAU_GEN_REFERENCES}")
  try:
    s["phase_multipliers"] = tuple(float(m) for m in s["phase_multipliers"])
  except (TypeError, ValueError):
    raise ConfigError("report.phase_multipliers", s["phase_multipliers"],
                      "a tuple of positive numbers, e.g. (1, 3, 8)") from None
  if not s["phase_multipliers"] or min(s["phase_multipliers"]) <= 0:
    raise ConfigError("report.phase_multipliers", s["phase_multipliers"],
                      "a tuple of positive numbers, e.g. (1, 3, 8)")
  return s


# ------------------------------------------------------------------ analysis


@dataclasses.dataclass
class RunResult:
  """One run: identity, metric curves (sorted by step) and onsets."""
  workdir: str
  info: dict[str, Any]
  curves: dict[str, np.ndarray]
  tau_gen: ts.Onset
  tau_mem: ts.Onset
  loss_gap: ts.Onset

  @property
  def n(self) -> int:
    return int(self.info["n"])

  @property
  def width(self) -> int:
    return int(self.info["width"])

  @property
  def lr(self) -> float:
    return float(self.info["lr"])

  def final(self, name: str) -> tuple[float | None, float | None]:
    """(value, step) of the last finite value of a curve."""
    v = self.curves[name]
    ok = np.flatnonzero(np.isfinite(v))
    if ok.size == 0:
      return None, None
    return float(v[ok[-1]]), float(self.curves["step"][ok[-1]])

  def best_quality(self) -> tuple[float | None, float | None]:
    q = self.curves["quality"]
    if not np.any(np.isfinite(q)):
      return None, None
    i = int(np.nanargmin(q))
    return float(q[i]), float(self.curves["step"][i])


@dataclasses.dataclass
class GroupResult:
  """The runs of one (width, lr, n) across seeds and data indices."""
  width: int
  lr: float
  n: int
  runs: list[RunResult]
  curves: dict[str, ts.CurveStats]
  tau_gen: ts.OnsetStats
  tau_mem: ts.OnsetStats
  loss_gap: ts.OnsetStats
  best_quality: ts.Estimate | None
  final_f_mem: ts.Estimate | None


@dataclasses.dataclass
class SeriesResult:
  """The runs of one (width, lr): the scaling with n."""
  width: int
  lr: float
  num_params: int | None
  groups: list[GroupResult]
  budget: float
  tau_mem_fit: ts.PowerLawFit | None
  tau_mem_per_n: ts.Estimate | None
  tau_gen_fit: ts.PowerLawFit | None
  tau_gen_mean: ts.Estimate | None
  loss_gap_fit: ts.PowerLawFit | None
  n_crossover: float | None
  contrast: dict[str, Any] | None

  @property
  def runs(self) -> list[RunResult]:
    return [r for g in self.groups for r in g.runs]

  @property
  def label(self) -> str:
    return f"W={self.width}, lr={self.lr:g}"


@dataclasses.dataclass
class Analysis:
  """Everything the report shows."""
  workdirs: list[str]
  settings: dict[str, Any]
  quality_label: str | None
  quality_name: str | None
  loss_t: float | None
  runs: list[RunResult]
  series: list[SeriesResult]
  width_scaling: dict[float, ts.WidthScaling]
  phase: dict[float, list[ts.PhaseBoundary]]
  samples: list[dict[str, Any]]
  notes: list[str]


def _run_curves(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
  by_step: dict[int, dict[str, Any]] = {}
  for r in rows:  # a resume may log a step again: the last row wins
    by_step[int(r["step"])] = r
  steps = sorted(by_step)
  out = {"step": np.array(steps, dtype=np.float64)}
  for name in CURVES:
    vals = [by_step[s].get(name) for s in steps]
    out[name] = np.array([np.nan if not isinstance(v, (int, float)) or isinstance(v, bool)
                          else float(v) for v in vals], dtype=np.float64)
  return out


def _first(values):
  return next((v for v in values if v is not None), None)


def _sample_grids(workdir: str) -> list[dict[str, Any]]:
  out = []
  for path in glob.glob(os.path.join(workdir, "samples", "step_*.png")):
    m = re.fullmatch(r"step_(\d+)\.png", os.path.basename(path))
    if m:
      out.append({"workdir": workdir, "path": path, "step": int(m.group(1))})
  return sorted(out, key=lambda d: d["step"])


def _contrast(groups: list[GroupResult], threshold: float) -> dict[str, Any] | None:
  """f_mem of the largest n at the first evaluation where every run of the smallest n memorizes."""
  if len(groups) < 2:
    return None
  small, large = groups[0], groups[-1]
  flags = []
  for r in small.runs:
    f = ts.memorized(r.curves["f_mem"], r.curves["f_mem_lo"], threshold=threshold)
    flags.append({float(t) for t, m in zip(r.curves["step"], f) if m})
  common = set.intersection(*flags) if flags else set()
  if not common:
    return None
  t = min(common)
  f_large = [ts.f_mem_at(r.curves["step"], r.curves["f_mem"], t) for r in large.runs]
  f_small = [ts.f_mem_at(r.curves["step"], r.curves["f_mem"], t) for r in small.runs]
  f_large = [f for f in f_large if f is not None]
  if not f_large:
    return None
  return {"step": t, "n_small": small.n, "f_mem_small": float(np.mean(f_small)),
          "n_large": large.n, "f_mem_large": float(np.mean(f_large))}


def analyze(sweeps: Sequence[Sweep], settings: Mapping[str, Any]) -> Analysis:
  """Measures every run's timescales and aggregates them (see the module docstring)."""
  conf = settings["conf"]
  thr = settings["tau_mem_threshold"]
  notes: list[str] = []
  runs: list[RunResult] = []
  labels, names, loss_ts = set(), set(), set()
  for sw in sweeps:
    by_run: dict[int, list[dict[str, Any]]] = {}
    for row in sw.rows:
      by_run.setdefault(int(row["run"]), []).append(row)
    table = {int(r["run"]): r for r in sw.runs}
    for run_id, r in sorted(table.items()):
      if r.get("diverged"):
        notes.append(f"{sw.path}: run {run_id} (n={r.get('n')}, seed={r.get('seed')}, "
                     f"lr={r.get('lr')}) diverged at step {r['diverged'].get('step')} "
                     f"({r['diverged'].get('reason')}) and is left out.")
    for step in sorted({int(row["step"]) for row in sw.rows}):
      lost = sorted(set(by_run) - {int(row["run"]) for row in sw.rows if row["step"] == step})
      if lost:
        notes.append(f"{sw.path}: the rows of runs {lost} at step {step} are missing.")
    missing = sorted(set(table) - set(by_run) - {k for k, r in table.items() if r.get("diverged")})
    if missing:
      notes.append(f"{sw.path}: runs {missing} have no metrics rows yet and are left out.")
    loss_t = sw.config.get("eval", {}).get("loss_t")
    if loss_t is not None:
      loss_ts.add(float(loss_t))
    for run_id, rows in sorted(by_run.items()):
      info = dict(rows[-1])
      info.update(table.get(run_id, {}))
      info.setdefault("width", sw.config.get("model", {}).get("width"))
      info.setdefault("lr", _first([r.get("lr") for r in rows]))
      for key in ("seed", "index"):
        info.setdefault(key, 0)
      info = {k: info.get(k) for k in ("run", "n", "seed", "index", "lr", "width", "num_params",
                                       "model", "dataset", "batch_size")}
      if info["width"] is None or info["lr"] is None:
        raise WorkdirError(f"{os.path.join(sw.path, 'runs.json')}: run {run_id} has no width "
                           "or lr (expected the run table of notes/schema)")
      measured = [r for r in rows if r.get("quality") is not None]  # not "none" placeholders
      labels.update(r["quality_label"] for r in measured if r.get("quality_label"))
      names.update(r["quality_name"] for r in measured if r.get("quality_name"))
      c = _run_curves(rows)
      runs.append(RunResult(
          sw.path, info, c,
          tau_gen=ts.tau_gen(c["step"], c["quality"], tol=settings["tau_gen_tol"],
                             abs_tol=settings["tau_gen_abs_tol"], quality_std=c["quality_std"],
                             reference=settings["tau_gen_reference"]),
          tau_mem=ts.tau_mem(c["step"], c["f_mem"], c["f_mem_lo"], c["f_mem_hi"],
                             threshold=thr),
          loss_gap=ts.loss_gap_onset(c["step"], c["train_loss"], c["test_loss"],
                                     c["train_loss_std"], c["test_loss_std"],
                                     sigmas=settings["loss_gap_sigmas"])))
  runs.sort(key=lambda r: (r.width, r.lr, r.n, r.info["seed"], r.info["index"], r.workdir))
  if len(labels) > 1:
    notes.append(f"The runs use different quality metrics ({', '.join(sorted(labels))}): "
                 "their values are not comparable.")
  if len(loss_ts) > 1:
    notes.append(f"The workdirs measure the fixed-time losses at different t ({sorted(loss_ts)}).")

  series: list[SeriesResult] = []
  keys = sorted({(r.width, r.lr) for r in runs})
  for width, lr in keys:
    srun = [r for r in runs if (r.width, r.lr) == (width, lr)]
    groups = []
    for n in sorted({r.n for r in srun}):
      grun = [r for r in srun if r.n == n]
      curves = {name: ts.curve_stats([(r.curves["step"], r.curves[name]) for r in grun], conf=conf)
                for name in CURVES}
      groups.append(GroupResult(
          width, lr, n, grun, curves,
          ts.onset_stats([r.tau_gen for r in grun], conf=conf),
          ts.onset_stats([r.tau_mem for r in grun], conf=conf),
          ts.onset_stats([r.loss_gap for r in grun], conf=conf),
          ts.mean_interval([r.best_quality()[0] for r in grun], conf=conf),
          ts.mean_interval([r.final("f_mem")[0] for r in grun], conf=conf)))
    ns = [r.n for r in srun]
    mem_x, mem_y = ts.observed_points(ns, [r.tau_mem for r in srun])
    gen_x, gen_y = ts.observed_points(ns, [r.tau_gen for r in srun])
    gap_x, gap_y = ts.observed_points(ns, [r.loss_gap for r in srun])
    mem_fit = ts.fit_power_law(mem_x, mem_y, conf=conf)
    gen_mean = ts.geometric_mean(gen_y, conf=conf)
    n_cross = None
    if mem_fit is not None and gen_mean is not None and abs(mem_fit.alpha.value) > 1e-6:
      n_cross = (gen_mean.value / mem_fit.prefactor.value) ** (1.0 / mem_fit.alpha.value)
    num_params = _first([r.info.get("num_params") for r in srun])
    series.append(SeriesResult(
        width, lr, None if num_params is None else int(num_params), groups,
        budget=max(float(r.curves["step"][-1]) for r in srun),
        tau_mem_fit=mem_fit,
        tau_mem_per_n=ts.geometric_mean([y / x for x, y in zip(mem_x, mem_y)], conf=conf),
        tau_gen_fit=ts.fit_power_law(gen_x, gen_y, conf=conf),
        tau_gen_mean=gen_mean,
        loss_gap_fit=ts.fit_power_law(gap_x, gap_y, conf=conf),
        n_crossover=n_cross,
        contrast=_contrast(groups, thr)))

  width_scaling, phase = {}, {}
  for lr in sorted({s.lr for s in series}):
    ss = [s for s in series if s.lr == lr]
    rr = [r for s in ss for r in s.runs]
    if len(ss) >= 2:
      width_scaling[lr] = ts.width_scaling([r.width for r in rr], [r.n for r in rr],
                                           [r.tau_gen for r in rr], [r.tau_mem for r in rr],
                                           conf=conf)
    records = [dict(width=r.width, n=r.n, num_params=r.info.get("num_params"),
                    times=r.curves["step"], f_mem=r.curves["f_mem"],
                    f_mem_lo=r.curves["f_mem_lo"]) for r in rr]
    phase[lr] = ts.phase_diagram(
        records, {s.width: None if s.tau_gen_mean is None else s.tau_gen_mean.value for s in ss},
        multipliers=settings["phase_multipliers"], threshold=thr, use_lo=True)

  samples = [g for sw in sweeps for g in _sample_grids(sw.path)]
  return Analysis([sw.path for sw in sweeps], dict(settings),
                  " / ".join(sorted(labels)) if labels else None,
                  " / ".join(sorted(names)) if names else None,
                  min(loss_ts) if len(loss_ts) == 1 else None,
                  runs, series, width_scaling, phase, samples, notes)


# ------------------------------------------------------------------ formatting


def fmt(x: float | None, digits: int = 3) -> str:
  """A number for text: 3 significant digits, 1.2e5 style for large/small magnitudes."""
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "–"
  x = float(x)
  if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
    m, e = f"{x:.{digits - 1}e}".split("e")
    return f"{m}e{int(e)}"
  if abs(x) >= 10 ** (digits - 1):
    return f"{float(f'{x:.{digits}g}'):.0f}"
  return f"{x:.{digits}g}"


def fmt_onset(o: ts.Onset, budget: float | None = None) -> str:
  """An onset with its interval; an open upper end shows as "> budget"."""
  if o.status == ts.OBSERVED:
    hi = fmt(o.hi) if o.hi is not None else f"> {fmt(budget)}"
    return f"{fmt(o.value)} [{fmt(o.lo)}, {hi}]"
  if o.status == ts.RIGHT_CENSORED:
    return f"> {fmt(o.bound)}"
  if o.status == ts.LEFT_CENSORED:
    return f"≤ {fmt(o.bound)}"
  return "–"


def fmt_stats(s: ts.OnsetStats) -> str:
  if s.status == ts.RIGHT_CENSORED:
    return f"> {fmt(s.bound)}"
  if s.status == ts.LEFT_CENSORED:
    return f"≤ {fmt(s.bound)}"
  if s.estimate is None:
    return "–"
  text = fmt(s.estimate.value)
  if s.estimate.lo is not None:
    text += f" [{fmt(s.estimate.lo)}, {fmt(s.estimate.hi)}]"
  censored = s.num_right_censored + s.num_left_censored
  if censored:
    text += f" ({censored} of {s.num_runs} censored)"
  return text


def fmt_est(e: ts.Estimate | None, digits: int = 3) -> str:
  if e is None:
    return "–"
  if e.lo is None:
    return fmt(e.value, digits)
  return f"{fmt(e.value, digits)} [{fmt(e.lo, digits)}, {fmt(e.hi, digits)}]"


def fmt_slope(e: ts.Estimate | None) -> str:
  """An exponent with its interval, 2 decimals."""
  if e is None:
    return "–"
  r = lambda v: f"{round(v, 2) + 0.0:.2f}"  # no "-0.00"
  return r(e.value) if e.lo is None else f"{r(e.value)} [{r(e.lo)}, {r(e.hi)}]"


def fmt_exponent(e: ts.Estimate) -> str:
  """alpha ± half-width of the interval (asymmetric intervals: the larger half)."""
  r = lambda v: f"{round(v, 2) + 0.0:.2f}"  # no "-0.00"
  if e.lo is None:
    return r(e.value)
  return f"{r(e.value)} ± {r(max(e.hi - e.value, e.value - e.lo))}"


# ------------------------------------------------------------------ interpretation


def _runs_list(ns: Sequence[int]) -> str:
  return ", ".join(str(n) for n in sorted(set(ns)))


def interpret_tau_mem(s: SeriesResult, settings: Mapping[str, Any]) -> list[str]:
  """Sentences on tau_mem(n) of one series, generated from the fit."""
  thr = settings["tau_mem_threshold"]
  runs = s.runs
  obs = [r for r in runs if r.tau_mem.observed]
  right = [r for r in runs if r.tau_mem.status == ts.RIGHT_CENSORED]
  left = [r for r in runs if r.tau_mem.status == ts.LEFT_CENSORED]
  out = []
  fit = s.tau_mem_fit
  if fit is None:
    out.append(
        "Too few runs memorized within the budget to fit tau_mem(n) (a fit needs memorizing "
        f"runs at two or more values of n): {len(obs)} of "
        f"{len(runs)} runs reached f_mem > {fmt(thr)}"
        + (f" (n = {_runs_list(r.n for r in obs)})" if obs else "")
        + (f"; {len(right)} are right-censored at {fmt(s.budget)} steps" if right else "")
        + ". Train longer, or add smaller n, to measure the scaling.")
  else:
    a = fit.alpha
    text = (f"tau_mem grows as n^{{{fmt_exponent(a)}}} over {fit.num_points} memorizing runs "
            f"(n = {_runs_list(r.n for r in obs)}")
    text += (f"; {int(round(fit.conf * 100))}% interval {fmt_slope(a).split(' ', 1)[1]})"
             if a.lo is not None
             else "; only two points: no interval)")
    if a.lo is None:
      text += ": the paper finds alpha = 1 (memorization time proportional to n)."
    elif a.lo <= 1.0 <= a.hi:
      text += ": memorization time proportional to n, as the paper finds (alpha = 1)."
    elif a.lo > 1.0:
      text += ": faster than proportional to n (the paper finds alpha = 1)."
    elif a.lo > 0.0:
      text += ": growing with n, but more slowly than the paper's alpha = 1."
    else:
      text += (": no significant growth with n, unlike the paper (alpha = 1); look at the "
               "censored runs and the f_mem curves.")
    out.append(text)
    if s.tau_mem_per_n is not None:
      out.append(f"With alpha fixed to 1, tau_mem ≈ {fmt_est(s.tau_mem_per_n)} × n steps "
                 f"(the paper: ≈ {PAPER_TAU_MEM_PER_N:.0f} n for its U-Net at W = 32 on "
                 "CelebA with SGD; the constant depends on model, data and optimizer).")
  if right and fit is not None:
    out.append(f"{len(right)} run(s) (n = {_runs_list(r.n for r in right)}) did not memorize "
               f"within {fmt(s.budget)} steps: they are right-censored (open triangles in "
               "the figure) and left out of the fit, which therefore describes only the runs "
               "that memorized.")
  if left:
    out.append(f"{len(left)} run(s) (n = {_runs_list(r.n for r in left)}) already memorized "
               "at the first evaluation (left-censored, left out of the fit): evaluate "
               "earlier to resolve them.")
  return out


def interpret_tau_gen(s: SeriesResult, label: str | None) -> list[str]:
  runs = s.runs
  if not any(np.any(np.isfinite(r.curves["quality"])) for r in runs):
    return ["No quality metric was computed (quality is null in every row), so tau_gen is "
            "not measured."]
  obs = [r for r in runs if r.tau_gen.observed]
  if s.tau_gen_mean is None:
    return [f"tau_gen is not resolved in any run: {label} was already within tolerance of "
            "its minimum at the first evaluation (left-censored) or reached it only at the "
            "last one (right-censored)."]
  text = (f"tau_gen ≈ {fmt_est(s.tau_gen_mean)} steps (geometric mean over {len(obs)} of "
          f"{len(runs)} runs)")
  fit = s.tau_gen_fit
  if fit is not None and fit.alpha.lo is not None:
    b = fit.alpha
    text += f"; its slope against n is {fmt_slope(b)}"
    if b.lo <= 0.0 <= b.hi:
      text += (": independent of n within its uncertainty, as in the paper (tau_gen ≈ 1e5 "
               "SGD steps at W = 32 for every n).")
    elif abs(b.value) < 0.2:
      text += ": nearly independent of n (the paper: independent of n)."
    elif (s.tau_mem_fit is not None and s.tau_mem_fit.alpha.lo is not None
          and b.hi < 0.5 * s.tau_mem_fit.alpha.lo):
      ratio = s.tau_mem_fit.alpha.value / b.value if b.value > 0 else float("inf")
      text += (f": a weak dependence next to tau_mem's n^{s.tau_mem_fit.alpha.value:.2f} "
               f"(about {fmt(ratio)}x smaller exponent), so the generalization window "
               "[tau_gen, tau_mem] still widens with n; the paper finds tau_gen independent "
               "of n.")
    else:
      text += ": it depends on n, unlike the paper's n-independent tau_gen."
  else:
    text += "."
  out = [text]
  if len(obs) < len(runs):
    out.append(f"{len(runs) - len(obs)} run(s) have no resolved tau_gen (censored: within "
               "tolerance already at the first evaluation, or only at the last).")
  if s.n_crossover is not None:
    out.append(f"The fits cross (tau_mem = tau_gen) at n ≈ {fmt(s.n_crossover)}: smaller "
               "training sets start memorizing before the samples reach their best quality, "
               "larger ones leave a window [tau_gen, tau_mem] of good, novel samples.")
  return out


def interpret_contrast(s: SeriesResult) -> list[str]:
  c = s.contrast
  if c is None:
    return []
  return [f"At step {fmt(c['step'])}, where every run with n = {c['n_small']} memorizes "
          f"(mean f_mem = {fmt(100 * c['f_mem_small'])}%), the runs with n = {c['n_large']} "
          f"have f_mem = {fmt(100 * c['f_mem_large'])}%."]


def interpret_loss_gap(s: SeriesResult) -> list[str]:
  both = [r for r in s.runs if r.loss_gap.observed and r.tau_mem.observed]
  gap_obs = [r for r in s.runs if r.loss_gap.observed]
  if not gap_obs:
    return ["The test-train loss gap stays within its noise in every run (right-censored)."]
  text = f"The loss gap opens beyond its noise in {len(gap_obs)} of {len(s.runs)} runs"
  fit = s.loss_gap_fit
  if fit is not None:
    text += f", at a time growing as n^{{{fmt_exponent(fit.alpha)}}}"
  text += "."
  if both:
    before = sum(r.loss_gap.value <= r.tau_mem.value for r in both)
    text += (f" It opens before tau_mem in {before} of the {len(both)} runs where both are "
             "observed (the paper: the overfitting onset precedes memorization).")
  return [text]


def interpret_widths(ws: ts.WidthScaling) -> list[str]:
  out = []
  parts = ", ".join(f"{fmt(e.value)} (W = {w})" for w, e in ws.w_tau_gen.items() if e is not None)
  if parts:
    text = f"W·tau_gen = {parts}"
    if ws.w_tau_gen_spread is not None:
      text += f", a spread of ×{ws.w_tau_gen_spread:.2f} across widths"
    text += f" (the paper: W·tau_gen ≈ {fmt(PAPER_W_TAU_GEN)}, constant in W, for its U-Net)"
    if ws.tau_gen_fit is not None:
      text += f"; tau_gen ∝ W^{{{fmt_exponent(ws.tau_gen_fit.exponent('width'))}}} (paper: W^-1)"
    out.append(text + ".")
  parts = ", ".join(f"{fmt(e.value)} (W = {w})" for w, e in ws.tau_mem_w_over_n.items()
                    if e is not None)
  if parts:
    text = f"tau_mem·W/n = {parts}"
    if ws.tau_mem_w_over_n_spread is not None:
      text += f", a spread of ×{ws.tau_mem_w_over_n_spread:.2f}"
    if ws.tau_mem_fit is not None:
      a_n = fmt_exponent(ws.tau_mem_fit.exponent("n"))
      a_w = fmt_exponent(ws.tau_mem_fit.exponent("width"))
      text += f"; the joint fit gives tau_mem ∝ n^{{{a_n}}} W^{{{a_w}}} (paper: n W^-1)"
    out.append(text + ".")
  return out


def interpret_phase(bounds: list[ts.PhaseBoundary]) -> list[str]:
  out = []
  for w in sorted({b.width for b in bounds}):
    bs = [b for b in bounds if b.width == w and b.n is not None]
    ns = [b.n for b in bs]
    if len(ns) >= 2 and all(a <= b for a, b in zip(ns, ns[1:])) and ns[-1] > ns[0]:
      out.append(f"W = {w}: the boundary moves from n = {ns[0]} to n = {ns[-1]} as tau grows "
                 f"from {fmt(bs[0].multiplier)} to {fmt(bs[-1].multiplier)} tau_gen, as in "
                 "the paper's Fig. 3 (right).")
  return out


# ------------------------------------------------------------------ summary.json


def summary_dict(a: Analysis) -> dict[str, Any]:
  """The content of summary.json."""
  runs = []
  for r in a.runs:
    best, best_step = r.best_quality()
    final_f, final_step = r.final("f_mem")
    runs.append({
        "workdir": r.workdir, **r.info,
        "tau_gen": r.tau_gen.to_dict(), "tau_mem": r.tau_mem.to_dict(),
        "loss_gap_onset": r.loss_gap.to_dict(),
        "best_quality": best, "best_quality_step": best_step,
        "final_quality": r.final("quality")[0],
        "final_f_mem": final_f, "final_f_mem_lo": r.final("f_mem_lo")[0],
        "final_f_mem_hi": r.final("f_mem_hi")[0], "final_step": final_step,
    })
  groups, fits = [], []
  for s in a.series:
    for g in s.groups:
      groups.append({
          "width": g.width, "lr": g.lr, "n": g.n, "num_runs": len(g.runs),
          "seeds": sorted({r.info["seed"] for r in g.runs}),
          "indices": sorted({r.info["index"] for r in g.runs}),
          "tau_gen": g.tau_gen.to_dict(), "tau_mem": g.tau_mem.to_dict(),
          "loss_gap_onset": g.loss_gap.to_dict(),
          "best_quality": None if g.best_quality is None else g.best_quality.to_dict(),
          "final_f_mem": None if g.final_f_mem is None else g.final_f_mem.to_dict(),
      })
    fits.append({
        "width": s.width, "lr": s.lr, "num_params": s.num_params, "budget": s.budget,
        "tau_mem_vs_n": None if s.tau_mem_fit is None else s.tau_mem_fit.to_dict(),
        "tau_mem_over_n": None if s.tau_mem_per_n is None else s.tau_mem_per_n.to_dict(),
        "tau_gen_vs_n": None if s.tau_gen_fit is None else s.tau_gen_fit.to_dict(),
        "tau_gen": None if s.tau_gen_mean is None else s.tau_gen_mean.to_dict(),
        "loss_gap_vs_n": None if s.loss_gap_fit is None else s.loss_gap_fit.to_dict(),
        "n_crossover": s.n_crossover, "memorization_contrast": s.contrast,
    })
  return {
      "workdirs": a.workdirs,
      "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in a.settings.items()},
      "definitions": definitions(a.settings),
      "quality_label": a.quality_label, "quality_name": a.quality_name,
      "runs": runs, "groups": groups, "fits": fits,
      "width_scaling": [{"lr": lr, **ws.to_dict()} for lr, ws in a.width_scaling.items()],
      "phase_diagram": [{"lr": lr, **b.to_dict()} for lr, bs in a.phase.items() for b in bs],
      "notes": a.notes,
  }


def definitions(settings: Mapping[str, Any]) -> dict[str, str]:
  """The operational definitions, with the thresholds in use (the paper gives none)."""
  tol, thr = settings["tau_gen_tol"], settings["tau_mem_threshold"]
  abs_tol = settings["tau_gen_abs_tol"]
  sig = settings["loss_gap_sigmas"]
  conf = int(round(100 * settings["conf"]))
  mults = ", ".join(fmt(m) for m in settings["phase_multipliers"])
  return {
      "tau_gen": (f"first time the quality metric (lower is better) enters the band q <= "
                  f"q_min + max({fmt(tol)}·"
                  + ("|q_min|, " if settings["tau_gen_reference"] == "minimum" else
                     "(q_max - q_min), q_max the worst value before the minimum, ")
                  + (f"{fmt(abs_tol)}, " if abs_tol > 0 else "")
                  + "2·quality_std at the minimum) and stays in "
                  "it until the minimum; log-time interpolated between evaluations; censored "
                  "when the band is entered at the first or only at the last evaluation."),
      "tau_mem": (f"first time f_mem > {fmt(thr)} with its bootstrap 95% lower bound "
                  "f_mem_lo > 0; log-time interpolated; interval: the evaluation bracket "
                  f"widened to where f_mem_hi and f_mem_lo cross {fmt(thr)}; runs that never "
                  "get there are right-censored at the last evaluation, never given a number."),
      "loss_gap_onset": (f"first time test_loss - train_loss > {fmt(sig)}·sqrt(train_loss_std^2 "
                         "+ test_loss_std^2) (stds over the noise draws); log-time "
                         "interpolated."),
      "log_time_interpolation": ("between evaluation times t0 < t1 a curve is taken linear in "
                                 "log t: a crossing of level L is at t0 (t1/t0)^((L-v0)/(v1-v0))."),
      "fits": (f"y = c n^alpha by least squares on (log n, log y) over the uncensored runs, "
               f"{conf}% t-based intervals from the regression; tau_mem/n with alpha fixed to "
               "1 and tau_gen as geometric means over runs with t-intervals on logs; width "
               "scaling: W·tau_gen and tau_mem·W/n per width, tau_gen = c W^beta and "
               "tau_mem = c n^alpha W^gamma."),
      "seed_statistics": (f"per (width, lr, n): means over seeds and data indices with {conf}% "
                          "t-intervals of the mean (timescales: geometric means, observed runs "
                          "only; figures shade the min-max range of the runs)."),
      "phase_diagram": (f"for tau in {{{mults}}} × tau_gen (tau_gen per width: the geometric "
                        "mean over its runs), the smallest n above which no run memorizes at "
                        "tau, f_mem read at the latest evaluation at or before tau (not "
                        f"interpolated); 'memorizes' = f_mem > {fmt(thr)} with f_mem_lo > 0, "
                        "the tau_mem criterion, in place of the paper's strict f_mem > 0."),
  }


# ------------------------------------------------------------------ report.md


def _rel(path: str, start: str) -> str:
  return os.path.relpath(path, start).replace(os.sep, "/")


def _pick_grids(a: Analysis) -> list[dict[str, Any]]:
  """Per workdir: the grid nearest after tau_gen (novel samples) and the latest one."""
  out = []
  for wd in a.workdirs:
    grids = [g for g in a.samples if g["workdir"] == wd]
    if not grids:
      continue
    gens = [s.tau_gen_mean.value for s in a.series if s.tau_gen_mean is not None
            and any(r.workdir == wd for r in s.runs)]
    picks = []
    if gens:
      after = [g for g in grids if g["step"] >= min(gens)]
      if after and after[0] is not grids[-1]:
        picks.append(dict(after[0], why="soon after tau_gen"))
    picks.append(dict(grids[-1], why="latest"))
    out += picks
  return out


def markdown(a: Analysis, figures: Sequence[tuple[str, str]], out_dir: str) -> str:
  """report.md: figures, tables, definitions and the interpretation."""
  from jaxdiff.figures import short_quality
  q = short_quality(a)
  s_ = a.settings
  lines = ["# jaxdiff sweep report", ""]
  lines.append("Workdirs: " + ", ".join(f"`{w}`" for w in a.workdirs) + ".")
  ds = sorted({str(r.info.get("dataset")) for r in a.runs if r.info.get("dataset")})
  models = sorted({str(r.info.get("model")) for r in a.runs if r.info.get("model")})
  lines.append(f"{len(a.runs)} runs; dataset {', '.join(ds) or '?'}; model "
               f"{', '.join(models) or '?'}; widths {', '.join(str(s.width) for s in a.series)}; "
               f"quality metric: {a.quality_label or 'none computed'}. Times are optimizer "
               "steps.")
  lines.append("")
  lines.append("## Findings")
  lines.append("")
  for s in a.series:
    lines.append(f"**{s.label}**" + (f" ({s.num_params:,} parameters)" if s.num_params else "")
                 + f", {len(s.runs)} runs, budget {fmt(s.budget)} steps:")
    lines.append("")
    for sentence in (interpret_tau_mem(s, s_) + interpret_tau_gen(s, q) + interpret_contrast(s)
                     + interpret_loss_gap(s)):
      lines.append(f"- {sentence}")
    lines.append("")
  for lr, ws in a.width_scaling.items():
    lines.append(f"**Across widths** (lr = {lr:g}):")
    lines.append("")
    for sentence in interpret_widths(ws) + interpret_phase(a.phase.get(lr, [])):
      lines.append(f"- {sentence}")
    lines.append("")
  for note in a.notes:
    lines.append(f"Note: {note}")
    lines.append("")

  lines += ["## Per (width, n): means over seeds and data indices", ""]
  lines.append(f"Timescales: geometric mean [{int(100 * s_['conf'])}% interval]; censored "
               "runs are shown as bounds (> budget) and left out of the means.")
  lines.append("")
  lines.append(f"| W | lr | n | runs | tau_gen | tau_mem | tau_mem / n | loss-gap onset | "
               f"best {q} | final f_mem |")
  lines.append("|---|---|---|---|---|---|---|---|---|---|")
  for s in a.series:
    for g in s.groups:
      per_n = "–"
      if g.tau_mem.estimate is not None:
        per_n = fmt(g.tau_mem.estimate.value / g.n)
      ff = "–" if g.final_f_mem is None else f"{100 * g.final_f_mem.value:.3g}%"
      lines.append(f"| {g.width} | {g.lr:g} | {g.n} | {len(g.runs)} | {fmt_stats(g.tau_gen)} | "
                   f"{fmt_stats(g.tau_mem)} | {per_n} | {fmt_stats(g.loss_gap)} | "
                   f"{fmt_est(g.best_quality)} | {ff} |")
  lines.append("")

  lines += ["## Fits", ""]
  lines.append("| W | lr | tau_mem = c n^alpha: alpha | c | tau_mem / n (alpha = 1) | "
               "tau_gen | tau_gen vs n: slope | loss gap vs n: slope |")
  lines.append("|---|---|---|---|---|---|---|---|")
  for s in a.series:
    f = s.tau_mem_fit
    alpha = "too few memorizing runs" if f is None else fmt_slope(f.alpha)
    c = "–" if f is None else fmt_est(f.prefactor)
    slope = "–" if s.tau_gen_fit is None else fmt_slope(s.tau_gen_fit.alpha)
    gap = "–" if s.loss_gap_fit is None else fmt_slope(s.loss_gap_fit.alpha)
    lines.append(f"| {s.width} | {s.lr:g} | {alpha} | {c} | {fmt_est(s.tau_mem_per_n)} | "
                 f"{fmt_est(s.tau_gen_mean)} | {slope} | {gap} |")
  lines.append("")

  if any(a.phase.values()):
    mults = s_["phase_multipliers"]
    lines += ["## Phase diagram: smallest n with f_mem(tau) = 0", ""]
    lines.append("| lr | W | parameters | tau_gen | " + " | ".join(
        f"tau = {fmt(m)} tau_gen" for m in mults) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(mults))
    for lr, bs in a.phase.items():
      for w in sorted({b.width for b in bs}):
        row = [b for b in bs if b.width == w]
        tg = next((s.tau_gen_mean for s in a.series if s.width == w and s.lr == lr), None)
        cells = []
        for b in row:
          if b.status == ts.OBSERVED:
            cells.append(f"{b.n} (tau = {fmt(b.tau)})")
          elif b.status == "at_or_below":
            cells.append(f"≤ {b.n} (tau = {fmt(b.tau)})")
          elif b.status == "above_grid":
            cells.append(f"> {max(r.n for r in a.runs if r.width == w)} (tau = {fmt(b.tau)})")
          else:
            cells.append(b.status.replace("_", " "))
        p = "–" if row[0].num_params is None else f"{row[0].num_params:,}"
        lines.append(f"| {lr:g} | {w} | {p} | {fmt(None if tg is None else tg.value)} | "
                     + " | ".join(cells) + " |")
    lines.append("")

  lines += ["## Figures", ""]
  for name, caption in figures:
    lines += [f"![{os.path.splitext(name)[0]}]({name})", "", f"*{caption}*", ""]
  grids = _pick_grids(a)
  if grids:
    lines += ["## Samples beside their nearest training images", ""]
    for g in grids:
      rel = _rel(g["path"], out_dir)
      caption = (f"*Step {g['step']} ({g['why']}), `{rel}`: generated samples beside their "
                 "nearest training images")
      meta = os.path.splitext(g["path"])[0] + ".json"
      if os.path.exists(meta):
        caption += f" (the runs shown are listed in `{_rel(meta, out_dir)}`)"
      lines += [f"![samples at step {g['step']}]({rel})", "", caption + ".*", ""]

  lines += ["## Per run", ""]
  lines.append(f"| workdir | run | W | lr | n | seed | index | tau_gen | tau_mem | loss-gap onset "
               f"| best {q} | final f_mem |")
  lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in a.runs:
    best = r.best_quality()[0]
    ff = r.final("f_mem")[0]
    budget = float(r.curves["step"][-1])
    lines.append(f"| {os.path.basename(os.path.normpath(r.workdir))} | {r.info['run']} | "
                 f"{r.width} | {r.lr:g} | {r.n} | {r.info['seed']} | {r.info['index']} | "
                 f"{fmt_onset(r.tau_gen)} | {fmt_onset(r.tau_mem, budget)} | "
                 f"{fmt_onset(r.loss_gap)} | "
                 f"{fmt(best)} | {'–' if ff is None else f'{100 * ff:.3g}%'} |")
  lines.append("")

  lines += ["## Definitions", "",
            "The paper (arXiv 2505.17638) defines tau_gen and tau_mem in words only; these are "
            "the operational definitions used here (thresholds from config.report.*).", ""]
  for k, v in definitions(s_).items():
    lines.append(f"- **{k}**: {v}")
  lines.append("")
  return "\n".join(lines)


# ------------------------------------------------------------------ entry points


def write_report(workdirs: Sequence[str], out_dir: str | None = None,
                 config_overrides=None) -> str:
  """Writes figures, summary.json and report.md for one or more workdirs.

  Args:
    workdirs: sweep workdirs (one per width, for instance); the thresholds come from the
      first one's config.report.
    out_dir: output directory (default: <workdirs[0]>/report).
    config_overrides: report settings replacing config.report.* (see
      `settings_from_config`).

  Returns:
    The path of report.md.

  Raises:
    WorkdirError: a workdir or one of its files is missing or foreign.
    ConfigError: a report setting is out of range.
  """
  from jaxdiff import figures  # matplotlib only when a report is written

  if isinstance(workdirs, str):
    workdirs = [workdirs]
  if not workdirs:
    raise WorkdirError("no workdir given: pass at least one --workdir")
  sweeps = [load_workdir(w) for w in workdirs]
  settings = settings_from_config(sweeps[0].config, config_overrides)
  analysis = analyze(sweeps, settings)
  for sw in sweeps[1:]:
    other = settings_from_config(sw.config, config_overrides)
    if other != settings:
      analysis.notes.append(f"{sw.path} has different report settings; those of "
                            f"{sweeps[0].path} are used.")
  out_dir = out_dir or os.path.join(workdirs[0], "report")
  os.makedirs(out_dir, exist_ok=True)
  written = figures.write_figures(analysis, out_dir)
  fileio.atomic_write_json(os.path.join(out_dir, "summary.json"), summary_dict(analysis))
  path = os.path.join(out_dir, "report.md")
  fileio.atomic_write_text(path, markdown(analysis, written, out_dir))
  return path


def _define_flags(flag_values) -> None:
  # Defined only when run as a program: importing jaxdiff.report (e.g. from the trainer,
  # whose jaxdiff.main defines --workdir too) must not register flags.
  from absl import flags
  flags.DEFINE_multi_string("workdir", None, "Workdir of a sweep; repeat to combine several "
                            "(e.g. one per width).", flag_values=flag_values)
  flags.DEFINE_string("out", None, "Output directory (default: <first workdir>/report).",
                      flag_values=flag_values)


def main(argv: Sequence[str]) -> None:
  from absl import flags
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
  fv = flags.FLAGS
  try:
    path = write_report(fv.workdir, fv.out)
  except JaxdiffError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
  print(f"wrote {path}")


if __name__ == "__main__":
  from absl import app, flags as _flags
  _define_flags(_flags.FLAGS)
  _flags.mark_flag_as_required("workdir")
  app.run(main)
