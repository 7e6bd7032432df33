"""The analysis of one or more sweep workdirs: every run's timescales, their seed statistics,
the fits of their scaling with n and W, the sensitivity to the onset definition, the
collapse exponent and the phase diagram.

`analyze(workdirs, settings)` turns the files of `workdirs.load_workdir` into an `Analysis`
(result types below), from which summary.py, markdown.py and figures.py write the report.
Onsets come from jaxdiff.findings.timescales, censoring-aware fits from
jaxdiff.findings.fits.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import numpy as np

from jaxdiff.errors import WorkdirError
from jaxdiff import evaluation
from jaxdiff.findings import fits
from jaxdiff.findings import timescales
from jaxdiff.findings.formatting import fmt
from jaxdiff.findings.workdirs import WorkdirFiles, sample_grids



@dataclasses.dataclass
class RunResult:
  """One run: identity, metric curves (sorted by step) and onsets."""
  workdir: str
  info: dict[str, Any]
  curves: dict[str, np.ndarray]
  tau_gen: timescales.Onset
  tau_mem: timescales.Onset
  loss_gap: timescales.Onset

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
  curves: dict[str, timescales.CurveStats]
  tau_gen: timescales.OnsetStats
  tau_mem: timescales.OnsetStats
  loss_gap: timescales.OnsetStats
  best_quality: timescales.Estimate | None
  final_f_mem: timescales.Estimate | None


@dataclasses.dataclass
class Sensitivity:
  """One onset definition, every run's onset under it, and the fits of its scaling.

  Attributes:
    key: a short identifier ("configured", "strict", "thr_0.005", "final_0.1", "tol_0.2").
    label: the definition in words.
    onsets: one Onset per run (in the order of the runs they were computed for).
    fit: the censoring-aware fit (jaxdiff.findings.fits), or None when the data do not determine it.
    least_squares: the old fit over the observed runs only (for comparison), or None.
  """
  key: str
  label: str
  onsets: list[timescales.Onset]
  fit: fits.CensoredFit | None
  least_squares: timescales.PowerLawFit | None

  def counts(self) -> tuple[int, int, int]:
    """(observed, right-censored, left-censored) runs."""
    st = [o.status for o in self.onsets]
    return (st.count(timescales.OBSERVED), st.count(timescales.RIGHT_CENSORED),
            st.count(timescales.LEFT_CENSORED))

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
  tau_mem_fit: timescales.PowerLawFit | None
  tau_mem_per_n: timescales.Estimate | None
  tau_gen_fit: timescales.PowerLawFit | None
  tau_gen_mean: timescales.Estimate | None
  loss_gap_fit: timescales.PowerLawFit | None
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
  width_scaling: dict[float, timescales.WidthScaling]
  phase: dict[float, list[timescales.PhaseBoundary]]
  samples: list[dict[str, Any]]
  notes: list[str]
  # per lr with several widths: {"mem": [Sensitivity of tau_mem = c n^a W^g], "gen":
  # [Sensitivity of tau_gen = c W^b]}
  width_sensitivity: dict[float, dict[str, list[Sensitivity]]] = dataclasses.field(
      default_factory=dict)
  sweeps: list[WorkdirFiles] = dataclasses.field(default_factory=list)


def _run_curves(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
  by_step: dict[int, dict[str, Any]] = {}
  for r in rows:  # a resume may log a step again: the last row wins
    by_step[int(r["step"])] = r
  steps = sorted(by_step)
  out = {"step": np.array(steps, dtype=np.float64)}
  for name in evaluation.report_curves():  # any may be missing or null in a row
    vals = [by_step[s].get(name) for s in steps]
    out[name] = np.array([np.nan if not isinstance(v, (int, float)) or isinstance(v, bool)
                          else float(v) for v in vals], dtype=np.float64)
  return out


def _first(values):
  return next((v for v in values if v is not None), None)


def _contrast(groups: list[GroupResult], threshold: float) -> dict[str, Any] | None:
  """f_mem of the largest n at the first evaluation where every run of the smallest n memorizes."""
  if len(groups) < 2:
    return None
  small, large = groups[0], groups[-1]
  flags = []
  for r in small.runs:
    f = timescales.memorized(r.curves["f_mem"], r.curves["f_mem_lo"], threshold=threshold)
    flags.append({float(t) for t, m in zip(r.curves["step"], f) if m})
  common = set.intersection(*flags) if flags else set()
  if not common:
    return None
  t = min(common)
  f_large = [timescales.f_mem_at(r.curves["step"], r.curves["f_mem"], t) for r in large.runs]
  f_small = [timescales.f_mem_at(r.curves["step"], r.curves["f_mem"], t) for r in small.runs]
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
              lambda r: timescales.tau_mem(r.curves["step"], r.curves["f_mem"], threshold=0.0)))

  def absolute(t):
    return lambda r: timescales.tau_mem(r.curves["step"], r.curves["f_mem"], r.curves["f_mem_lo"],
                                r.curves["f_mem_hi"], threshold=t)

  def relative(frac):
    def onset(r):
      final = r.final("f_mem")[0]
      if final is None or final <= 0:
        t = r.curves["step"]
        return timescales.Onset(timescales.RIGHT_CENSORED, bound=float(t[-1]), lo=float(t[-1]))
      return timescales.tau_mem(r.curves["step"], r.curves["f_mem"], r.curves["f_mem_lo"],
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
    return lambda r: timescales.tau_gen(r.curves["step"], r.curves["quality"], tol=tol,
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
    ls = timescales.fit_power_law_multi({k: np.asarray(v, float)[obs] for k, v in xs.items()},
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


def analyze(sweeps: Sequence[WorkdirFiles], settings: Mapping[str, Any]) -> Analysis:
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
          tau_gen=timescales.tau_gen(c["step"], c["quality"], tol=settings["tau_gen_tol"],
                             abs_tol=settings["tau_gen_abs_tol"], quality_std=c["quality_std"],
                             reference=settings["tau_gen_reference"]),
          tau_mem=timescales.tau_mem(c["step"], c["f_mem"], c["f_mem_lo"], c["f_mem_hi"],
                             threshold=thr),
          loss_gap=timescales.loss_gap_onset(c["step"], c["train_loss"], c["test_loss"],
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
      curves = {name: timescales.curve_stats([(r.curves["step"], r.curves[name]) for r in grun],
                                             conf=conf)
                for name in evaluation.report_curves()}
      groups.append(GroupResult(
          width, lr, n, grun, curves,
          timescales.onset_stats([r.tau_gen for r in grun], conf=conf),
          timescales.onset_stats([r.tau_mem for r in grun], conf=conf),
          timescales.onset_stats([r.loss_gap for r in grun], conf=conf),
          timescales.mean_interval([r.best_quality()[0] for r in grun], conf=conf),
          timescales.mean_interval([r.final("f_mem")[0] for r in grun], conf=conf)))
    ns = [r.n for r in srun]
    mem_x, mem_y = timescales.observed_points(ns, [r.tau_mem for r in srun])
    gen_x, gen_y = timescales.observed_points(ns, [r.tau_gen for r in srun])
    gap_x, gap_y = timescales.observed_points(ns, [r.loss_gap for r in srun])
    mem_fit = timescales.fit_power_law(mem_x, mem_y, conf=conf)
    gen_mean = timescales.geometric_mean(gen_y, conf=conf)
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
        tau_mem_per_n=timescales.geometric_mean([y / x for x, y in zip(mem_x, mem_y)], conf=conf),
        tau_gen_fit=timescales.fit_power_law(gen_x, gen_y, conf=conf),
        tau_gen_mean=gen_mean,
        loss_gap_fit=timescales.fit_power_law(gap_x, gap_y, conf=conf),
        n_crossover=n_cross,
        contrast=_contrast(groups, thr),
        mem_sensitivity=mem_sens, gen_sensitivity=gen_sens,
        collapse=_collapse(srun, settings), loss_gap_cfit=gap_cfit))

  width_scaling, phase, width_sens = {}, {}, {}
  for lr in sorted({s.lr for s in series}):
    ss = [s for s in series if s.lr == lr]
    rr = [r for s in ss for r in s.runs]
    if len(ss) >= 2:
      width_scaling[lr] = timescales.width_scaling([r.width for r in rr], [r.n for r in rr],
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
    phase[lr] = timescales.phase_diagram(
        records, {s.width: None if s.tau_gen_mean is None else s.tau_gen_mean.value for s in ss},
        multipliers=settings["phase_multipliers"], threshold=thr, use_lo=True)

  samples = [g for sw in sweeps for g in sample_grids(sw.path)]
  return Analysis([sw.path for sw in sweeps], dict(settings),
                  " / ".join(sorted(labels)) if labels else None,
                  " / ".join(sorted(names)) if names else None,
                  min(loss_ts) if len(loss_ts) == 1 else None,
                  runs, series, width_scaling, phase, samples, notes, width_sens, list(sweeps))
