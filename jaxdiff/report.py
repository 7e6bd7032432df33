"""The report of a diffusion sweep: timescales, fits, figures, summary.json and report.md.

Reads `config.json`, `runs.json` and `metrics.jsonl` of one or more workdirs (several
workdirs, e.g. one per width, combine into one report), measures every run's timescales
(jaxdiff.timescales), aggregates them over seeds and data indices, fits their scaling with
n and W, and writes into the output directory (default: <first workdir>/report):

  quality_fmem.png, fmem_collapse.png, losses.png, timescales.png, and with several
  widths width_scaling.png and phase_diagram.png (jaxdiff.figures; each with a PDF copy);
  summary.json; runs.csv (one row per run: its timescales with brackets and censoring,
  final f_mem and quality; `pandas.read_csv`); report.md (figures, tables, the
  definitions used and a reading of the numbers).

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
from jaxdiff import fits
from jaxdiff import protocol
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
    # The sensitivity table (optional keys): tau_mem also with these thresholds (with
    # f_mem_lo > 0), with these fractions of each run's final f_mem, and strict f_mem > 0;
    # tau_gen also with these tolerances.
    "sensitivity_thresholds": (0.005,),        # config.report.sensitivity_thresholds
    "sensitivity_final_fractions": (0.1, 0.2),  # config.report.sensitivity_final_fractions
    "sensitivity_tau_gen_tols": (0.05, 0.2),    # config.report.sensitivity_tau_gen_tols
    "n_bootstrap": 1000,         # config.report.n_bootstrap: replicates of the seed bootstrap
    "bootstrap_seed": 0,         # config.report.bootstrap_seed
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
  for key, ok, expected in (
      ("sensitivity_thresholds", lambda v: 0 <= v < 1, "a tuple of fractions in [0, 1)"),
      ("sensitivity_final_fractions", lambda v: 0 < v <= 1, "a tuple of fractions in (0, 1]"),
      ("sensitivity_tau_gen_tols", lambda v: v >= 0, "a tuple of tolerances >= 0")):
    try:
      s[key] = tuple(float(v) for v in s[key])
      valid = all(ok(v) for v in s[key])
    except (TypeError, ValueError):
      valid = False
    if not valid:
      raise ConfigError(f"report.{key}", s[key], expected)
  for key in ("n_bootstrap", "bootstrap_seed"):
    v = s[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < (
        10 if key == "n_bootstrap" else 0):
      raise ConfigError(f"report.{key}", v, "an integer >= 10" if key == "n_bootstrap"
                        else "an integer >= 0")
    s[key] = int(v)
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
class Sensitivity:
  """One onset definition, every run's onset under it, and the fits of its scaling.

  Attributes:
    key: a short identifier ("configured", "strict", "thr_0.005", "final_0.1", "tol_0.2").
    label: the definition in words.
    onsets: one Onset per run (in the order of the runs they were computed for).
    fit: the censoring-aware fit (jaxdiff.fits), or None when the data do not determine it.
    least_squares: the old fit over the observed runs only (for comparison), or None.
  """
  key: str
  label: str
  onsets: list[ts.Onset]
  fit: fits.CensoredFit | None
  least_squares: ts.PowerLawFit | None

  def counts(self) -> tuple[int, int, int]:
    """(observed, right-censored, left-censored) runs."""
    st = [o.status for o in self.onsets]
    return st.count(ts.OBSERVED), st.count(ts.RIGHT_CENSORED), st.count(ts.LEFT_CENSORED)

  def to_dict(self) -> dict[str, Any]:
    obs, right, left = self.counts()
    return {"key": self.key, "definition": self.label, "num_observed": obs,
            "num_right_censored": right, "num_left_censored": left,
            "censored_fit": None if self.fit is None else self.fit.to_dict(),
            "least_squares": None if self.least_squares is None
            else self.least_squares.to_dict()}


@dataclasses.dataclass
class SeriesResult:
  """The runs of one (width, lr): the scaling with n.

  tau_mem_fit, tau_gen_fit and loss_gap_fit are the least-squares fits over the observed
  runs (kept for comparison); the *_cfit fields are the censoring-aware fits the report's
  sentences use; mem_sensitivity / gen_sensitivity hold every onset definition (the
  configured one first) and collapse the collapse exponent.
  """
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
  mem_sensitivity: list[Sensitivity] = dataclasses.field(default_factory=list)
  gen_sensitivity: list[Sensitivity] = dataclasses.field(default_factory=list)
  collapse: fits.CollapseFit | None = None
  loss_gap_cfit: fits.CensoredFit | None = None

  @property
  def tau_mem_cfit(self) -> fits.CensoredFit | None:
    return self.mem_sensitivity[0].fit if self.mem_sensitivity else None

  @property
  def tau_gen_cfit(self) -> fits.CensoredFit | None:
    return self.gen_sensitivity[0].fit if self.gen_sensitivity else None

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
  # per lr with several widths: {"mem": [Sensitivity of tau_mem = c n^a W^g], "gen":
  # [Sensitivity of tau_gen = c W^b]}
  width_sensitivity: dict[float, dict[str, list[Sensitivity]]] = dataclasses.field(
      default_factory=dict)
  sweeps: list[Sweep] = dataclasses.field(default_factory=list)


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


def tau_mem_definitions(settings: Mapping[str, Any]):
  """The onset definitions of the sensitivity table: [(key, label, run -> Onset)].

  The configured one first; then the paper's strict f_mem > 0 (no lower-bound test), the
  extra thresholds (with f_mem_lo > 0), and fractions of each run's final f_mem (with
  f_mem_lo > 0; a run whose final f_mem is 0 never reaches any fraction of it).
  """
  thr = settings["tau_mem_threshold"]
  out = [("configured", f"f_mem > {fmt(thr)} with f_mem_lo > 0 (configured)",
          lambda r: r.tau_mem)]
  out.append(("strict", "f_mem > 0 (the paper's wording)",
              lambda r: ts.tau_mem(r.curves["step"], r.curves["f_mem"], threshold=0.0)))

  def absolute(t):
    return lambda r: ts.tau_mem(r.curves["step"], r.curves["f_mem"], r.curves["f_mem_lo"],
                                r.curves["f_mem_hi"], threshold=t)

  def relative(frac):
    def onset(r):
      final = r.final("f_mem")[0]
      if final is None or final <= 0:
        t = r.curves["step"]
        return ts.Onset(ts.RIGHT_CENSORED, bound=float(t[-1]), lo=float(t[-1]))
      return ts.tau_mem(r.curves["step"], r.curves["f_mem"], r.curves["f_mem_lo"],
                        r.curves["f_mem_hi"], threshold=frac * final)
    return onset

  for t in settings["sensitivity_thresholds"]:
    if t != thr:
      out.append((f"thr_{t:g}", f"f_mem > {fmt(t)} with f_mem_lo > 0", absolute(t)))
  for frac in settings["sensitivity_final_fractions"]:
    out.append((f"final_{frac:g}", f"f_mem > {fmt(100 * frac)}% of the run's final f_mem",
                relative(frac)))
  return out


def tau_gen_definitions(settings: Mapping[str, Any]):
  """tau_gen under the configured tolerance and the sensitivity tolerances."""
  tol0 = settings["tau_gen_tol"]
  ref = settings["tau_gen_reference"]
  scale = "|q_min|" if ref == "minimum" else "(q_max - q_min)"
  if settings["tau_gen_abs_tol"] > 0:
    scale += f" (at least {fmt(settings['tau_gen_abs_tol'])})"

  def make(tol):
    return lambda r: ts.tau_gen(r.curves["step"], r.curves["quality"], tol=tol,
                                abs_tol=settings["tau_gen_abs_tol"],
                                quality_std=r.curves["quality_std"], reference=ref)

  out = [("configured", f"q within {fmt(tol0)}·{scale} of q_min (configured)",
          lambda r: r.tau_gen)]
  for tol in settings["sensitivity_tau_gen_tols"]:
    if tol != tol0:
      out.append((f"tol_{tol:g}", f"q within {fmt(tol)}·{scale} of q_min", make(tol)))
  return out


def _fit_kw(settings, runs):
  return dict(seeds=[r.info["seed"] for r in runs], indices=[r.info["index"] for r in runs],
              conf=settings["conf"], num_bootstrap=settings["n_bootstrap"],
              rng_seed=settings["bootstrap_seed"])


def _sensitivity(runs, definitions, settings, variables) -> list[Sensitivity]:
  """Every definition's onsets and fits; `variables(runs)` gives the fit's {name: x}."""
  out = []
  xs = variables(runs)
  for key, label, onset in definitions:
    onsets = [onset(r) for r in runs]
    fit = fits.fit_onsets(xs, onsets, **_fit_kw(settings, runs))
    obs = [i for i, o in enumerate(onsets) if o.observed]
    ls = ts.fit_power_law_multi({k: np.asarray(v, float)[obs] for k, v in xs.items()},
                                [onsets[i].value for i in obs], conf=settings["conf"])
    out.append(Sensitivity(key, label, onsets, fit, ls))
  return out


def _collapse(runs, settings) -> fits.CollapseFit | None:
  """The collapse exponent over the runs whose final f_mem exceeds the configured threshold."""
  sel, curves = [], []
  for r in runs:
    final = r.final("f_mem")[0]
    c = fits.normalized_curve(r.curves["step"], r.curves["f_mem"])
    if c is None or final is None or final <= settings["tau_mem_threshold"]:
      continue
    sel.append(r)
    curves.append(c)
  if len({r.n for r in sel}) < 2:
    return None
  return fits.collapse_exponent([r.n for r in sel], curves, **_fit_kw(settings, sel))


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
        d = r["diverged"]
        detail = (f" at step {d.get('step')} ({d.get('reason')})" if isinstance(d, dict)
                  else "")
        notes.append(f"{sw.path}: run {run_id} (n={r.get('n')}, seed={r.get('seed')}, "
                     f"lr={r.get('lr')}) diverged{detail} and is left out.")
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
    by_n = lambda rr: {"n": [r.n for r in rr]}
    mem_sens = _sensitivity(srun, tau_mem_definitions(settings), settings, by_n)
    gen_sens = _sensitivity(srun, tau_gen_definitions(settings), settings, by_n)
    gap_cfit = fits.fit_onsets(by_n(srun), [r.loss_gap for r in srun],
                               **_fit_kw(settings, srun))
    cmem = mem_sens[0].fit
    if cmem is not None and gen_mean is not None and abs(cmem.alpha.value) > 1e-6:
      n_cross = (gen_mean.value / cmem.prefactor.value) ** (1.0 / cmem.alpha.value)
    series.append(SeriesResult(
        width, lr, None if num_params is None else int(num_params), groups,
        budget=max(float(r.curves["step"][-1]) for r in srun),
        tau_mem_fit=mem_fit,
        tau_mem_per_n=ts.geometric_mean([y / x for x, y in zip(mem_x, mem_y)], conf=conf),
        tau_gen_fit=ts.fit_power_law(gen_x, gen_y, conf=conf),
        tau_gen_mean=gen_mean,
        loss_gap_fit=ts.fit_power_law(gap_x, gap_y, conf=conf),
        n_crossover=n_cross,
        contrast=_contrast(groups, thr),
        mem_sensitivity=mem_sens, gen_sensitivity=gen_sens,
        collapse=_collapse(srun, settings), loss_gap_cfit=gap_cfit))

  width_scaling, phase, width_sens = {}, {}, {}
  for lr in sorted({s.lr for s in series}):
    ss = [s for s in series if s.lr == lr]
    rr = [r for s in ss for r in s.runs]
    if len(ss) >= 2:
      width_scaling[lr] = ts.width_scaling([r.width for r in rr], [r.n for r in rr],
                                           [r.tau_gen for r in rr], [r.tau_mem for r in rr],
                                           conf=conf)
      # A seed's runs share their random key across widths too: the seed stays the cluster.
      width_sens[lr] = {
          "mem": _sensitivity(rr, tau_mem_definitions(settings), settings,
                              lambda rr: {"n": [r.n for r in rr],
                                          "width": [r.width for r in rr]}),
          "gen": _sensitivity(rr, tau_gen_definitions(settings), settings,
                              lambda rr: {"width": [r.width for r in rr]}),
      }
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
                  runs, series, width_scaling, phase, samples, notes, width_sens, list(sweeps))


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


def _bounds(e: ts.Estimate) -> tuple[float, float]:
  """An interval with open ends as -inf / inf."""
  return (-math.inf if e.lo is None else e.lo, math.inf if e.hi is None else e.hi)


def exponent_verdict(entries: Sequence[tuple[str, ts.Estimate]], ref: float) -> dict[str, Any]:
  """How a set of exponent estimates (one per definition) stands against `ref`.

  Returns {"kind": "all_contain" | "all_above" | "all_below" | "mixed" | "none",
  "contain", "above", "below": labels, "min", "max": the range of the estimates,
  "lo", "hi": the envelope of the intervals}. Every entry counts: the verdict is never
  read off the narrowest interval.
  """
  contain, above, below = [], [], []
  for label, e in entries:
    lo, hi = _bounds(e)
    (above if lo > ref else below if hi < ref else contain).append(label)
  if not entries:
    kind = "none"
  elif len(contain) == len(entries):
    kind = "all_contain"
  elif len(above) == len(entries):
    kind = "all_above"
  elif len(below) == len(entries):
    kind = "all_below"
  else:
    kind = "mixed"
  vals = [e.value for _, e in entries]
  los = [_bounds(e)[0] for _, e in entries]
  his = [_bounds(e)[1] for _, e in entries]
  return {"kind": kind, "contain": contain, "above": above, "below": below,
          "min": min(vals) if vals else None, "max": max(vals) if vals else None,
          "lo": min(los) if los else None, "hi": max(his) if his else None}


def _interval_text(e: ts.Estimate) -> str:
  r = lambda v: f"{round(v, 2) + 0.0:.2f}"
  lo = "-∞" if e.lo is None else r(e.lo)
  hi = "∞" if e.hi is None else r(e.hi)
  return f"[{lo}, {hi}]"


def _method_text(fit) -> str:
  return {fits.BOOTSTRAP: "seed bootstrap", "run_bootstrap": "run bootstrap within n",
          fits.PROFILE: "profile likelihood"}.get(fit.interval_method, "no interval")


def mem_entries(s: SeriesResult) -> list[tuple[str, ts.Estimate]]:
  """(definition, alpha) of every fitted tau_mem definition and the collapse criterion."""
  out = [(row.label, row.fit.alpha) for row in s.mem_sensitivity if row.fit is not None]
  c = s.collapse
  if c is not None and not c.at_edge and (c.alpha.lo is not None or c.alpha.hi is not None):
    out.append(("collapse of f_mem / f_mem(τ_max) against τ / n^alpha", s.collapse.alpha))
  return out


def interpret_tau_mem(s: SeriesResult, settings: Mapping[str, Any]) -> list[str]:
  """Sentences on tau_mem(n) of one series, written from the whole sensitivity table."""
  thr = settings["tau_mem_threshold"]
  conf = int(round(100 * settings["conf"]))
  runs = s.runs
  obs = [r for r in runs if r.tau_mem.observed]
  right = [r for r in runs if r.tau_mem.status == ts.RIGHT_CENSORED]
  left = [r for r in runs if r.tau_mem.status == ts.LEFT_CENSORED]
  out = []
  fit = s.tau_mem_cfit
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
    out.append(
        f"Under the configured definition (f_mem > {fmt(thr)} with f_mem_lo > 0), tau_mem "
        f"grows as n^{{{fmt_exponent(a)}}} ({conf}% interval {_interval_text(a)}, "
        f"{_method_text(fit)}; censoring-aware fit over {fit.num_runs} runs: "
        f"{fit.num_observed} observed, {fit.num_right_censored} right- and "
        f"{fit.num_left_censored} left-censored).")
    entries = mem_entries(s)
    v = exponent_verdict(entries, 1.0)
    m = len(entries)
    rng = (f"alpha lies between {fmt_slope(ts.Estimate(v['min']))} and "
           f"{fmt_slope(ts.Estimate(v['max']))}")
    head = f"Across the {m} onset definitions of the sensitivity table {rng}"
    if v["kind"] == "all_contain":
      out.append(f"{head} and every {conf}% interval contains 1: memorization time "
                 "proportional to n, as the paper finds (alpha = 1), whichever definition.")
    elif v["kind"] == "all_above":
      out.append(f"{head} and every interval lies above 1: faster than proportional to n "
                 "under every definition (the paper finds alpha = 1).")
    elif v["kind"] == "all_below":
      if all(_bounds(e)[0] > 0 for _, e in entries):
        out.append(f"{head} and every interval lies below 1: growing with n, but more slowly "
                   "than the paper's alpha = 1, under every definition.")
      else:
        out.append(f"{head}; every interval lies below 1 and some reach 0: no significant "
                   "growth with n, unlike the paper (alpha = 1); look at the censored runs "
                   "and the f_mem curves.")
    else:
      parts = []
      if v["contain"]:
        parts.append(f"consistent with 1 under {len(v['contain'])} ("
                     + "; ".join(v["contain"]) + ")")
      if v["above"]:
        parts.append(f"above 1 under {len(v['above'])} (" + "; ".join(v["above"]) + ")")
      if v["below"]:
        parts.append(f"below 1 under {len(v['below'])} (" + "; ".join(v["below"]) + ")")
      out.append(f"{head}, {', '.join(parts)}: whether tau_mem grows faster than, as fast "
                 "as or more slowly than n depends on how its onset is defined, so these "
                 "runs do not settle alpha against the paper's alpha = 1 (their intervals "
                 f"together span {_interval_text(ts.Estimate(0.0, v['lo'], v['hi']))}).")
    c = s.collapse
    if c is not None and (c.at_edge or (c.alpha.lo is None and c.alpha.hi is None)):
      out.append(f"The collapse criterion gives alpha = {fmt_slope(c.alpha)}"
                 + (" at the edge of the searched range" if c.at_edge else
                    " with no interval (nothing to resample)")
                 + ", left out of the comparison above.")
    if s.tau_mem_per_n is not None:
      out.append(f"With alpha fixed to 1, tau_mem ≈ {fmt_est(s.tau_mem_per_n)} × n steps "
                 "(observed runs; "
                 f"the paper: ≈ {PAPER_TAU_MEM_PER_N:.0f} n for its U-Net at W = 32 on "
                 "CelebA with SGD; the constant depends on model, data and optimizer).")
  if right and fit is not None:
    out.append(f"{len(right)} run(s) (n = {_runs_list(r.n for r in right)}) did not memorize "
               f"within {fmt(s.budget)} steps: they are right-censored (open triangles in "
               "the figure) and enter the censoring-aware fits as tau_mem > their last "
               "evaluation (the least-squares column leaves them out).")
  if left:
    out.append(f"{len(left)} run(s) (n = {_runs_list(r.n for r in left)}) already memorized "
               "at the first evaluation (left-censored: they enter the fits as tau_mem ≤ the "
               "first evaluation): evaluate earlier to resolve them.")
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
  entries = [(row.label, row.fit.alpha) for row in s.gen_sensitivity if row.fit is not None
             and row.fit.alpha.lo is not None and row.fit.alpha.hi is not None]
  fit = s.tau_gen_cfit
  if fit is not None and entries:
    b = fit.alpha
    text += (f"; its slope against n is {fmt_slope(b)} under the configured tolerance "
             f"({_method_text(fit)})")
    v = exponent_verdict(entries, 0.0)
    if len(entries) > 1:
      text += (f" and between {fmt_slope(ts.Estimate(v['min']))} and "
               f"{fmt_slope(ts.Estimate(v['max']))} across the {len(entries)} tolerances")
    mem = [e for _, e in mem_entries(s)]
    mem_lo = min((_bounds(e)[0] for e in mem), default=None)
    if v["kind"] == "all_contain":
      text += (": independent of n within its uncertainty under every tolerance, as in the "
               "paper (tau_gen ≈ 1e5 SGD steps at W = 32 for every n).")
    elif all(abs(e.value) < 0.2 for _, e in entries):
      text += ": nearly independent of n under every tolerance (the paper: independent of n)."
    elif (v["kind"] in ("all_above", "mixed") and mem_lo is not None and mem_lo > 0
          and v["hi"] < 0.5 * mem_lo):
      text += (": a weak dependence next to tau_mem's (every tau_gen interval ends below "
               "half of every tau_mem interval), so the generalization window [tau_gen, "
               "tau_mem] still widens with n; the paper finds tau_gen independent of n.")
    elif v["kind"] == "mixed":
      text += (": whether it depends on n depends on the tolerance (consistent with 0 under "
               + "; ".join(v["contain"]) + "), so these runs do not settle it.")
    else:
      text += ": it depends on n under every tolerance, unlike the paper's n-independent tau_gen."
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
  """The loss-gap sentence; runs open at the first evaluation are counted as left-censored."""
  gap = [r.loss_gap for r in s.runs]
  defined = [o for o in gap if o.status != ts.UNDEFINED]
  if not defined:
    return []
  obs = [r for r in s.runs if r.loss_gap.observed]
  left = [r for r in s.runs if r.loss_gap.status == ts.LEFT_CENSORED]
  right = [r for r in s.runs if r.loss_gap.status == ts.RIGHT_CENSORED]
  k = len(defined)
  parts = []
  if left:
    first = min(float(r.curves["step"][0]) for r in left)
    parts.append(f"is already open beyond its noise at the first evaluation (step "
                 f"{fmt(first)}) in {len(left)} of {k} runs (left-censored: its onset is at "
                 "or before it)")
  if obs:
    parts.append(f"opens beyond its noise during training in {len(obs)} of {k} runs")
  if right:
    parts.append(f"stays within its noise up to the last evaluation in {len(right)} of {k} "
                 "runs (right-censored)")
  text = "The test-train loss gap " + "; ".join(parts) + "."
  fit = s.loss_gap_cfit
  if fit is not None and obs:
    text += (f" Its onset grows as n^{{{fmt_exponent(fit.alpha)}}} (censoring-aware, "
             f"{_method_text(fit)}).")
  both = [r for r in obs if r.tau_mem.observed]
  if both:
    before = sum(r.loss_gap.value <= r.tau_mem.value for r in both)
    text += (f" It opens before tau_mem in {before} of the {len(both)} runs where both are "
             "observed (the paper: the overfitting onset precedes memorization).")
  if left and len(left) == k:
    text += " Evaluate earlier to see it open."
  return [text]


def interpret_width_exponents(wsens: Mapping[str, list[Sensitivity]]) -> list[str]:
  """The width exponents (censoring-aware) across every onset definition (paper: -1)."""
  out = []
  for kind, name, what in (("mem", "tau_mem ∝ n^alpha W^gamma", "gamma"),
                           ("gen", "tau_gen ∝ W^beta", "beta")):
    entries = [(row.label, row.fit.exponent("width")) for row in wsens.get(kind, [])
               if row.fit is not None]
    if not entries:
      continue
    v = exponent_verdict(entries, -1.0)
    text = (f"Censoring-aware {name}: {what} between {fmt_slope(ts.Estimate(v['min']))} and "
            f"{fmt_slope(ts.Estimate(v['max']))} across {len(entries)} definitions")
    text += {"all_contain": ", every interval containing -1, as the paper finds.",
             "all_above": ", every interval above -1 (a weaker width dependence than the "
                          "paper's W^-1).",
             "all_below": ", every interval below -1 (a stronger width dependence than the "
                          "paper's W^-1).",
             }.get(v["kind"], "; whether it is -1 (the paper) depends on the definition.")
    out.append(text)
  return out


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


def alpha_verdict(s: SeriesResult) -> dict[str, Any] | None:
  """What the sensitivity sentence of `interpret_tau_mem` concludes on alpha, short.

  The same verdict (`exponent_verdict` of every fitted definition against 1): {"kind",
  "num_definitions", "min", "max", "conclusion"}; None when tau_mem(n) is not fitted.
  """
  if s.tau_mem_cfit is None:
    return None
  entries = mem_entries(s)
  v = exponent_verdict(entries, 1.0)
  kind = v["kind"]
  if kind == "all_contain":
    text = "every interval contains 1: tau_mem ∝ n, as the paper finds"
  elif kind == "all_above":
    text = "every interval lies above 1: faster than n (the paper: alpha = 1)"
  elif kind == "all_below" and all(_bounds(e)[0] > 0 for _, e in entries):
    text = "every interval lies below 1: slower than n (the paper: alpha = 1)"
  elif kind == "all_below":
    text = "every interval lies below 1 and some reach 0: no significant growth with n"
  else:
    text = ("it depends on the onset definition: these runs do not settle alpha against "
            "the paper's alpha = 1")
  return {"kind": kind, "num_definitions": len(entries), "min": v["min"], "max": v["max"],
          "conclusion": text}


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
        "tau_mem_vs_n_censored": None if s.tau_mem_cfit is None else s.tau_mem_cfit.to_dict(),
        "tau_gen_vs_n_censored": None if s.tau_gen_cfit is None else s.tau_gen_cfit.to_dict(),
        "loss_gap_vs_n_censored": (None if s.loss_gap_cfit is None
                                   else s.loss_gap_cfit.to_dict()),
        "tau_mem_sensitivity": [row.to_dict() for row in s.mem_sensitivity],
        "tau_gen_sensitivity": [row.to_dict() for row in s.gen_sensitivity],
        "collapse": None if s.collapse is None else s.collapse.to_dict(),
        "tau_mem_alpha_verdict": alpha_verdict(s),
    })
  return {
      "workdirs": a.workdirs,
      "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in a.settings.items()},
      "definitions": definitions(a.settings),
      "quality_label": a.quality_label, "quality_name": a.quality_name,
      "runs": runs, "groups": groups, "fits": fits,
      "width_scaling": [{"lr": lr, **ws.to_dict()} for lr, ws in a.width_scaling.items()],
      "phase_diagram": [{"lr": lr, **b.to_dict()} for lr, bs in a.phase.items() for b in bs],
      "width_sensitivity": [{"lr": lr, "tau_mem": [r.to_dict() for r in ws.get("mem", [])],
                             "tau_gen": [r.to_dict() for r in ws.get("gen", [])]}
                            for lr, ws in a.width_sensitivity.items()],
      "notes": a.notes,
  }


# runs.csv: one row per run. An onset's censoring is "observed", "right" (later than the
# budget: lo = the bound, hi empty), "left" (at or before the first evaluation: lo empty,
# hi = the bound) or "undefined"; an empty cell reads as NaN in pandas.
RUNS_CSV_COLUMNS = (
    "workdir", "run", "n", "seed", "index", "lr", "width", "num_params",
    "tau_gen", "tau_gen_lo", "tau_gen_hi", "tau_gen_censoring",
    "tau_mem", "tau_mem_lo", "tau_mem_hi", "tau_mem_bracket_lo", "tau_mem_bracket_hi",
    "tau_mem_censoring",
    "loss_gap_onset", "loss_gap_onset_lo", "loss_gap_onset_hi", "loss_gap_onset_censoring",
    "final_step", "final_f_mem", "final_f_mem_lo", "final_f_mem_hi", "final_quality",
    "best_quality", "best_quality_step", "diverged")
CENSORING = {ts.OBSERVED: "observed", ts.RIGHT_CENSORED: "right", ts.LEFT_CENSORED: "left"}


def _diverged(a: Analysis, r: RunResult) -> bool | None:
  """The run's `diverged` flag from runs.json or its metrics rows; None where neither has
  the field (workdirs written before it existed)."""
  for sw in a.sweeps:
    if sw.path != r.workdir:
      continue
    flags = [e["diverged"] for e in sw.runs
             if int(e["run"]) == int(r.info["run"]) and e.get("diverged") is not None]
    flags += [row["diverged"] for row in sw.rows
              if int(row["run"]) == int(r.info["run"]) and row.get("diverged") is not None]
    if flags:
      return any(bool(f) for f in flags)
  return None


def runs_table(a: Analysis) -> list[dict[str, Any]]:
  """The rows of runs.csv (RUNS_CSV_COLUMNS), in the order of summary.json's runs."""
  out = []
  for r in a.runs:
    row = {k: r.info.get(k) for k in ("run", "n", "seed", "index", "lr", "width",
                                      "num_params")}
    row["workdir"] = r.workdir
    for name, o in (("tau_gen", r.tau_gen), ("tau_mem", r.tau_mem),
                    ("loss_gap_onset", r.loss_gap)):
      row.update({name: o.value, f"{name}_lo": o.lo, f"{name}_hi": o.hi,
                  f"{name}_censoring": CENSORING.get(o.status, "undefined")})
    # tau_mem's evaluation bracket (t_{i-1}, t_i); [lo, hi] above is wider (f_mem's band)
    bracket = r.tau_mem.bracket if r.tau_mem.observed else None
    if bracket is None and r.tau_mem.observed:
      bracket = (r.tau_mem.lo, r.tau_mem.hi)
    row["tau_mem_bracket_lo"], row["tau_mem_bracket_hi"] = bracket or (None, None)
    best, best_step = r.best_quality()
    row.update(final_step=r.final("f_mem")[1], final_f_mem=r.final("f_mem")[0],
               final_f_mem_lo=r.final("f_mem_lo")[0], final_f_mem_hi=r.final("f_mem_hi")[0],
               final_quality=r.final("quality")[0], best_quality=best,
               best_quality_step=best_step, diverged=_diverged(a, r))
    out.append(row)
  # Diverged runs are left out of the analysis but keep their row: who they were, no numbers.
  for sw in a.sweeps:
    for e in sw.runs:
      if e.get("diverged"):
        row = {k: e.get(k) for k in ("run", "n", "seed", "index", "lr", "width", "num_params")}
        row.update(workdir=sw.path, diverged=True)
        out.append(row)
  return out


def _csv_cell(v: Any) -> str:
  """Empty for None/NaN; floats to 6 significant digits (metrics are float32: more digits
  are noise); booleans as True/False."""
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return ""
  if isinstance(v, bool):
    return str(v)
  if isinstance(v, (float, np.floating)):
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"
  return str(v)


def runs_csv(a: Analysis) -> str:
  """runs.csv's text (RFC 4180, header first)."""
  import csv
  import io
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(RUNS_CSV_COLUMNS)
  for row in runs_table(a):
    w.writerow([_csv_cell(row.get(k)) for k in RUNS_CSV_COLUMNS])
  return buf.getvalue()


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
                  f"widened to where f_mem_hi and f_mem_lo cross {fmt(thr)} (the fits use the "
                  "evaluation bracket itself: f_mem's noise is part of the fitted scatter); "
                  "runs that never get there are right-censored at the last evaluation, never "
                  "given a number."),
      "loss_gap_onset": (f"first time test_loss - train_loss > {fmt(sig)}·sqrt(train_loss_std^2 "
                         "+ test_loss_std^2) (stds over the noise draws); log-time "
                         "interpolated."),
      "log_time_interpolation": ("between evaluation times t0 < t1 a curve is taken linear in "
                                 "log t: a crossing of level L is at t0 (t1/t0)^((L-v0)/(v1-v0))."),
      "fits": (f"tau = c n^alpha (and c n^alpha W^gamma, c W^beta across widths) by "
               "interval-censored maximum likelihood on log tau with log-normal scatter: "
               "each run's onset enters as its interval (the evaluation bracket when "
               "observed, (bound, ∞) when right-censored, (0, bound] when left-censored); "
               "the scatter is kept above the resolution of the brackets (median log-width "
               f"/ sqrt 12); {conf}% intervals from a bootstrap over seeds (all n of a seed "
               "together; data indices likewise; t on G - 1 degrees of freedom, each end "
               "widened to the profile-likelihood interval's where wider) where there are "
               ">= 3 of them, else from the t-calibrated profile likelihood (jaxdiff.fits). "
               "For comparison, least "
               "squares on (log n, log tau) over the observed runs only, with t-intervals. "
               "tau_mem/n with alpha fixed to 1 and tau_gen as geometric means over the "
               "observed runs with t-intervals on logs; width scaling: W·tau_gen and "
               "tau_mem·W/n per width."),
      "collapse": ("the alpha minimising the mean squared difference between the curves "
                   "f_mem/f_mem(τ_max) of runs with different n against log τ - alpha log n "
                   "(linear interpolation in log τ, grid step 0.005; runs whose final f_mem "
                   "exceeds the tau_mem threshold); interval from the seed bootstrap, or "
                   "with < 3 seeds from resampling the runs within each n."),
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
  lines.append("Every run's timescales, brackets and censoring: [runs.csv](runs.csv) (one row "
               "per run, `pandas.read_csv`); every number of this report: "
               "[summary.json](summary.json).")
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
    for sentence in (interpret_widths(ws) + interpret_width_exponents(
        a.width_sensitivity.get(lr, {})) + interpret_phase(a.phase.get(lr, []))):
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
  lines.append("Censoring-aware fits (interval-censored maximum likelihood, jaxdiff.fits); "
               "the least-squares fits over the observed runs only, the method before, in "
               "brackets after \"LS\".")
  lines.append("")
  lines.append("| W | lr | tau_mem = c n^alpha: alpha | c | LS alpha | tau_mem / n (alpha = 1) | "
               "tau_gen | tau_gen vs n: slope | LS slope | loss gap vs n: slope |")
  lines.append("|---|---|---|---|---|---|---|---|---|---|")
  for s in a.series:
    f = s.tau_mem_cfit
    alpha = "too few memorizing runs" if f is None else fmt_slope(f.alpha)
    c = "–" if f is None else fmt_est(f.prefactor)
    ls = "–" if s.tau_mem_fit is None else fmt_slope(s.tau_mem_fit.alpha)
    slope = "–" if s.tau_gen_cfit is None else fmt_slope(s.tau_gen_cfit.alpha)
    ls_gen = "–" if s.tau_gen_fit is None else fmt_slope(s.tau_gen_fit.alpha)
    gap = "–" if s.loss_gap_cfit is None else fmt_slope(s.loss_gap_cfit.alpha)
    lines.append(f"| {s.width} | {s.lr:g} | {alpha} | {c} | {ls} | {fmt_est(s.tau_mem_per_n)} "
                 f"| {fmt_est(s.tau_gen_mean)} | {slope} | {ls_gen} | {gap} |")
  lines.append("")
  lines += sensitivity_lines(a)

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

  lines += protocol_section(a)
  lines += ["## Definitions", "",
            "The paper (arXiv 2505.17638) defines tau_gen and tau_mem in words only; these are "
            "the operational definitions used here (thresholds from config.report.*).", ""]
  for k, v in definitions(s_).items():
    lines.append(f"- **{k}**: {v}")
  lines.append("")
  return "\n".join(lines)


def _sens_row(row: Sensitivity, name: str) -> str:
  obs, right, left = row.counts()
  f, ls = row.fit, row.least_squares
  cens = "not determined" if f is None else fmt_slope(f.exponent(name))
  how = "–" if f is None else _method_text(f)
  lsq = "–" if ls is None else fmt_slope(ls.exponent(name))
  return f"| {row.label} | {obs} / {right} / {left} | {cens} | {how} | {lsq} |"


def sensitivity_lines(a: Analysis) -> list[str]:
  """The sensitivity section: exponents under every onset definition, and the collapse."""
  conf = int(round(100 * a.settings["conf"]))
  out = ["## Sensitivity of the exponents to the onset definition", "",
         "The paper defines tau_mem and tau_gen in words only; the report's sentences are "
         "written from every row below, not from one. Runs: observed / right-censored / "
         f"left-censored. Exponent: censoring-aware fit with its {conf}% interval; LS: least "
         "squares over the observed runs only (t-interval), shown for comparison.", ""]
  head = ["| definition of the onset | runs | exponent | interval from | LS exponent |",
          "|---|---|---|---|---|"]
  for s in a.series:
    out += [f"**{s.label}**: tau_mem = c n^alpha", ""] + head
    out += [_sens_row(row, "n") for row in s.mem_sensitivity]
    c = s.collapse
    if c is not None:
      val = fmt_slope(c.alpha) + (" (at the grid's edge)" if c.at_edge else "")
      out.append(f"| collapse of f_mem / f_mem(τ_max) against τ / n^alpha (the paper's "
                 f"criterion) | {c.num_runs} curves | {val} | {_method_text(c)} | – |")
    out.append("")
    if any(row.fit is not None for row in s.gen_sensitivity):
      out += [f"**{s.label}**: tau_gen = c n^slope", ""] + head
      out += [_sens_row(row, "n") for row in s.gen_sensitivity]
      out.append("")
  for lr, ws in a.width_sensitivity.items():
    for kind, name, title in (("mem", "width", "tau_mem = c n^alpha W^gamma: gamma"),
                              ("gen", "width", "tau_gen = c W^beta: beta")):
      rows = ws.get(kind, [])
      if not any(r.fit is not None for r in rows):
        continue
      out += [f"**Across widths (lr = {lr:g})**: {title}", ""] + head
      out += [_sens_row(row, name) for row in rows]
      out.append("")
  details = sorted({row.fit.interval_detail for s in a.series
                    for row in s.mem_sensitivity + s.gen_sensitivity if row.fit is not None}
                   | {s.collapse.interval_detail for s in a.series if s.collapse is not None})
  if details:
    out += ["Intervals: " + "; ".join(details) + ".", ""]
  return out


def protocol_section(a: Analysis) -> list[str]:
  """How the runs were trained (from each workdir's config.json) and what differs from the paper."""
  out = ["## Protocol", ""]
  for sw in a.sweeps:
    if len(a.sweeps) > 1:
      out += [f"`{sw.path}`:", ""]
    out += protocol.protocol_lines(sw.config, sw.runs, sw.path, a.quality_label,
                                   a.quality_name)
    out.append("")
    diffs = protocol.differences(sw.config, sw.runs, a.quality_name)
    study = protocol.STUDY_TITLE[protocol.study_of(sw.config)]
    out += [f"Differences from the paper's protocol ({study}):", ""]
    out += [f"- {d}" for d in diffs] if diffs else ["- none among the settings compared."]
    out.append("")
  return out


# ------------------------------------------------------------------ terminal summary


def _fmt_group_onset(d: Mapping[str, Any] | None) -> str:
  """A group's onset (OnsetStats.to_dict) for the terminal, censoring in words."""
  if not d:
    return "–"
  if d["status"] == ts.RIGHT_CENSORED:
    return f"> {fmt(d['bound'])} (not reached)"
  if d["status"] == ts.LEFT_CENSORED:
    return f"<= {fmt(d['bound'])} (at the first evaluation)"
  e = d.get("estimate")
  if e is None:
    return "–"
  text = fmt(e["value"])
  if e.get("lo") is not None and e.get("hi") is not None:
    text += f" [{fmt(e['lo'])}, {fmt(e['hi'])}]"
  censored = d["num_right_censored"] + d["num_left_censored"]
  if censored:
    text += f" ({censored} of {d['num_runs']} runs censored)"
  return text


def _window(gen: Mapping[str, Any] | None, mem: Mapping[str, Any] | None) -> str:
  """The generalization window [tau_gen, tau_mem] of a group, from its onsets."""
  if not gen or not mem:
    return "–"
  if gen["status"] == ts.LEFT_CENSORED:
    start, g = f"<= {fmt(gen['bound'])}", None
  elif gen.get("estimate") is not None:
    g = gen["estimate"]["value"]
    start = fmt(g)
  else:
    return "not resolved (no tau_gen)"
  if mem["status"] == ts.RIGHT_CENSORED:
    return f"{start} to > {fmt(mem['bound'])} (still open at the end)"
  if mem["status"] == ts.LEFT_CENSORED:
    return "none (memorizing from the first evaluation)"
  if mem.get("estimate") is None:
    return "not resolved (no tau_mem)"
  m = mem["estimate"]["value"]
  if g is not None and m <= g:
    return f"none (tau_mem {fmt(m)} <= tau_gen {fmt(g)})"
  ratio = f", x{fmt(m / g, 2)}" if g is not None and g > 0 else ""
  return f"{start} to {fmt(m)} steps{ratio}"


def terminal_summary(summary: Mapping[str, Any], report_path: str | None = None) -> list[str]:
  """A few lines for the terminal from summary.json's content (`summary_dict`): per
  series and n, tau_gen and tau_mem with censoring and the window between them, alpha
  with its interval and the sensitivity verdict, and the report's path."""
  out = []
  for f in summary.get("fits", []):
    groups = [g for g in summary.get("groups", [])
              if g["width"] == f["width"] and g["lr"] == f["lr"]]
    nruns = sum(g["num_runs"] for g in groups)
    out.append(f"jaxdiff: summary, W={f['width']}, lr={f['lr']:g}: {nruns} runs, budget "
               f"{fmt(f['budget'])} steps")
    width = max([len(str(g["n"])) for g in groups] + [1])
    for g in sorted(groups, key=lambda g: g["n"]):
      out.append(f"  n={g['n']:<{width}}  tau_gen {_fmt_group_onset(g['tau_gen'])}; "
                 f"tau_mem {_fmt_group_onset(g['tau_mem'])}; "
                 f"window {_window(g['tau_gen'], g['tau_mem'])}")
    cfit = f.get("tau_mem_vs_n_censored")
    if cfit is None:
      out.append("  alpha (tau_mem ~ n^alpha): not fitted (memorizing runs at fewer than two "
                 "values of n)")
    else:
      a = cfit["exponents"]["n"]
      interval = ("" if a.get("lo") is None or a.get("hi") is None
                  else f" [{a['lo']:.2f}, {a['hi']:.2f}]")
      conf = int(round(100 * cfit.get("conf", 0.95)))
      line = (f"  alpha (tau_mem ~ n^alpha) = {a['value']:.2f}{interval} ({conf}%, "
              f"{cfit['num_observed']} of {cfit['num_runs']} runs observed)")
      v = f.get("tau_mem_alpha_verdict")
      if v:
        line += (f"; across {v['num_definitions']} onset definitions alpha is "
                 f"{v['min']:.2f} to {v['max']:.2f}: {v['conclusion']}")
      out.append(line)
  if report_path:
    out.append(f"jaxdiff: report written to {report_path}")
  return out


def summary_of_report(report_path: str) -> list[str]:
  """`terminal_summary` of the summary.json beside report.md; only the path when there is
  none (or it is not a diffusion sweep's, e.g. the random-features study)."""
  path = os.path.join(os.path.dirname(report_path), "summary.json")
  try:
    with open(path, encoding="utf-8") as f:
      summary = json.load(f)
  except (OSError, ValueError):
    summary = None
  if not (isinstance(summary, dict) and isinstance(summary.get("fits"), list)
          and isinstance(summary.get("groups"), list)
          and all(isinstance(x, dict) and "budget" in x for x in summary["fits"])):
    return [f"jaxdiff: report written to {report_path}"]
  return terminal_summary(summary, report_path)


# ------------------------------------------------------------------ entry points


def write_report(workdirs: Sequence[str], out_dir: str | None = None,
                 config_overrides=None) -> str:
  """Writes figures, summary.json, runs.csv and report.md for one or more workdirs.

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
  fileio.atomic_write_text(os.path.join(out_dir, "runs.csv"), runs_csv(analysis))
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
