"""The report's reading of the numbers: the sentences of report.md's findings, the verdicts
on the exponents against the paper's, and the operational definitions in words.

Every sentence is written from an `analysis.SeriesResult` (or the width scaling and the
phase diagram of several widths); the verdict on alpha is taken from every onset
definition of the sensitivity table, never from one.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from jaxdiff.findings import fits
from jaxdiff.findings import timescales
from jaxdiff.findings.analysis import SeriesResult, Sensitivity
from jaxdiff.findings.formatting import fmt, fmt_est, fmt_exponent, fmt_slope

# The paper's numbers quoted in the interpretation (paper.md 1.8).
PAPER_TAU_MEM_PER_N = 300.0      # tau_mem ~ 300 n at W = 32 (U-Net, CelebA, SGD)
PAPER_TAU_GEN = 1e5              # tau_gen ~ 1e5 steps at W = 32, independent of n
PAPER_W_TAU_GEN = 3e6            # W tau_gen ~ 3e6


def _runs_list(ns: Sequence[int]) -> str:
  return ", ".join(str(n) for n in sorted(set(ns)))


def _bounds(e: timescales.Estimate) -> tuple[float, float]:
  """An interval with open ends as -inf / inf."""
  return (-math.inf if e.lo is None else e.lo, math.inf if e.hi is None else e.hi)


def exponent_verdict(entries: Sequence[tuple[str, timescales.Estimate]],
                     ref: float) -> dict[str, Any]:
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


def _interval_text(e: timescales.Estimate) -> str:
  r = lambda v: f"{round(v, 2) + 0.0:.2f}"
  lo = "-∞" if e.lo is None else r(e.lo)
  hi = "∞" if e.hi is None else r(e.hi)
  return f"[{lo}, {hi}]"


def method_text(fit) -> str:
  return {fits.BOOTSTRAP: "seed bootstrap", "run_bootstrap": "run bootstrap within n",
          fits.PROFILE: "profile likelihood"}.get(fit.interval_method, "no interval")


def mem_entries(s: SeriesResult) -> list[tuple[str, timescales.Estimate]]:
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
  right = [r for r in runs if r.tau_mem.status == timescales.RIGHT_CENSORED]
  left = [r for r in runs if r.tau_mem.status == timescales.LEFT_CENSORED]
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
        f"{method_text(fit)}; censoring-aware fit over {fit.num_runs} runs: "
        f"{fit.num_observed} observed, {fit.num_right_censored} right- and "
        f"{fit.num_left_censored} left-censored).")
    entries = mem_entries(s)
    v = exponent_verdict(entries, 1.0)
    m = len(entries)
    rng = (f"alpha lies between {fmt_slope(timescales.Estimate(v['min']))} and "
           f"{fmt_slope(timescales.Estimate(v['max']))}")
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
                 f"together span {_interval_text(timescales.Estimate(0.0, v['lo'], v['hi']))}).")
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
             f"({method_text(fit)})")
    v = exponent_verdict(entries, 0.0)
    if len(entries) > 1:
      text += (f" and between {fmt_slope(timescales.Estimate(v['min']))} and "
               f"{fmt_slope(timescales.Estimate(v['max']))} across the {len(entries)} tolerances")
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
  defined = [o for o in gap if o.status != timescales.UNDEFINED]
  if not defined:
    return []
  obs = [r for r in s.runs if r.loss_gap.observed]
  left = [r for r in s.runs if r.loss_gap.status == timescales.LEFT_CENSORED]
  right = [r for r in s.runs if r.loss_gap.status == timescales.RIGHT_CENSORED]
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
             f"{method_text(fit)}).")
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
    lo, hi = (fmt_slope(timescales.Estimate(v[k])) for k in ("min", "max"))
    text = (f"Censoring-aware {name}: {what} between {lo} and {hi} across {len(entries)} "
            "definitions")
    text += {"all_contain": ", every interval containing -1, as the paper finds.",
             "all_above": ", every interval above -1 (a weaker width dependence than the "
                          "paper's W^-1).",
             "all_below": ", every interval below -1 (a stronger width dependence than the "
                          "paper's W^-1).",
             }.get(v["kind"], "; whether it is -1 (the paper) depends on the definition.")
    out.append(text)
  return out


def interpret_widths(ws: timescales.WidthScaling) -> list[str]:
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


def interpret_phase(bounds: list[timescales.PhaseBoundary]) -> list[str]:
  out = []
  for w in sorted({b.width for b in bounds}):
    bs = [b for b in bounds if b.width == w and b.n is not None]
    ns = [b.n for b in bs]
    if len(ns) >= 2 and all(a <= b for a, b in zip(ns, ns[1:])) and ns[-1] > ns[0]:
      out.append(f"W = {w}: the boundary moves from n = {ns[0]} to n = {ns[-1]} as tau grows "
                 f"from {fmt(bs[0].multiplier)} to {fmt(bs[-1].multiplier)} tau_gen, as in "
                 "the paper's Fig. 3 (right).")
  return out


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
