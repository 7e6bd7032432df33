"""report.md: the findings' sentences, the tables, the figures with their captions, the sample
grids, the protocol and the definitions, from an `analysis.Analysis`."""

from __future__ import annotations

import os
from typing import Any, Sequence

from jaxdiff.findings import interpretation
from jaxdiff.findings import protocol
from jaxdiff.findings import timescales
from jaxdiff.findings.analysis import Analysis, Sensitivity
from jaxdiff.findings.formatting import (fmt, fmt_est, fmt_onset, fmt_slope, fmt_stats,
                                         short_quality, table_head)
from jaxdiff.findings.interpretation import (definitions, interpret_contrast,
                                             interpret_loss_gap, interpret_phase,
                                             interpret_tau_gen, interpret_tau_mem,
                                             interpret_width_exponents, interpret_widths)


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
  lines += table_head("W", "lr", "n", "runs", "tau_gen", "tau_mem", "tau_mem / n",
                      "loss-gap onset", f"best {q}", "final f_mem")
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
  lines += table_head("W", "lr", "tau_mem = c n^alpha: alpha", "c", "LS alpha",
                      "tau_mem / n (alpha = 1)", "tau_gen", "tau_gen vs n: slope", "LS slope",
                      "loss gap vs n: slope")
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
    lines += table_head("lr", "W", "parameters", "tau_gen",
                        *(f"tau = {fmt(m)} tau_gen" for m in mults))
    for lr, bs in a.phase.items():
      for w in sorted({b.width for b in bs}):
        row = [b for b in bs if b.width == w]
        tg = next((s.tau_gen_mean for s in a.series if s.width == w and s.lr == lr), None)
        cells = []
        for b in row:
          if b.status == timescales.OBSERVED:
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
  lines += table_head("workdir", "run", "W", "lr", "n", "seed", "index", "tau_gen", "tau_mem",
                      "loss-gap onset", f"best {q}", "final f_mem")
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
  how = "–" if f is None else interpretation.method_text(f)
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
  head = table_head("definition of the onset", "runs", "exponent", "interval from",
                    "LS exponent")
  for s in a.series:
    out += [f"**{s.label}**: tau_mem = c n^alpha", ""] + head
    out += [_sens_row(row, "n") for row in s.mem_sensitivity]
    c = s.collapse
    if c is not None:
      val = fmt_slope(c.alpha) + (" (at the grid's edge)" if c.at_edge else "")
      out.append(f"| collapse of f_mem / f_mem(τ_max) against τ / n^alpha (the paper's "
                 f"criterion) | {c.num_runs} curves | {val} | "
                 f"{interpretation.method_text(c)} | – |")
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
