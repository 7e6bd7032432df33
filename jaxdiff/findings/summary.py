"""summary.json (every number of a report), runs.csv (one row per run) and the few lines the
terminal shows at the end of a sweep or of `python -m jaxdiff.report`."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import numpy as np

from jaxdiff.findings import timescales
from jaxdiff.findings.analysis import Analysis, RunResult
from jaxdiff.findings.formatting import fmt
from jaxdiff.findings.interpretation import alpha_verdict, definitions


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
CENSORING = {timescales.OBSERVED: "observed", timescales.RIGHT_CENSORED: "right",
             timescales.LEFT_CENSORED: "left"}


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


def _fmt_group_onset(d: Mapping[str, Any] | None) -> str:
  """A group's onset (OnsetStats.to_dict) for the terminal, censoring in words."""
  if not d:
    return "–"
  if d["status"] == timescales.RIGHT_CENSORED:
    return f"> {fmt(d['bound'])} (not reached)"
  if d["status"] == timescales.LEFT_CENSORED:
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
  if gen["status"] == timescales.LEFT_CENSORED:
    start, g = f"<= {fmt(gen['bound'])}", None
  elif gen.get("estimate") is not None:
    g = gen["estimate"]["value"]
    start = fmt(g)
  else:
    return "not resolved (no tau_gen)"
  if mem["status"] == timescales.RIGHT_CENSORED:
    return f"{start} to > {fmt(mem['bound'])} (still open at the end)"
  if mem["status"] == timescales.LEFT_CENSORED:
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
