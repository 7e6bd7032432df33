"""The report's figures (PNG, Matplotlib's Agg canvas; no pyplot state, no display).

`write_figures(analysis, out_dir)` draws, from a jaxdiff.report.Analysis:
  quality_fmem.png   quality and f_mem vs training time per n (paper Fig. 2 left)
  fmem_collapse.png  f_mem / f_mem(tau_max) vs tau / n (the inset of Fig. 2 left)
  losses.png         train/test loss at fixed t vs time and vs tau / n (Fig. 2 middle)
  timescales.png     tau_mem, tau_gen and the loss-gap onset vs n with the fits
  sensitivity.png    the exponents under every onset definition (censoring-aware and least
                     squares) and f_mem / f_mem(tau_max) against tau / n^alpha_collapse
  width_scaling.png  quality vs W tau and f_mem vs tau W / n (Fig. 3), several widths only
  phase_diagram.png  smallest n with f_mem(tau) = 0 vs parameters (Fig. 3 right), likewise
Curves are seed means with the min-max range of the runs shaded; times are optimizer steps
on log axes (step 0 is left out).
"""

from __future__ import annotations

import io
import os
from typing import Any, Sequence

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxdiff import fileio
from jaxdiff import timescales as ts

DPI = 110


def _save(fig: Figure, path: str) -> None:
  FigureCanvasAgg(fig)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
  fileio.atomic_write_bytes(path, buf.getvalue())


def _num(v: float) -> str:
  return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _n_axis(ax, ns) -> None:
  """Log x axis labelled at the n grid (no crowded minor labels)."""
  ax.set_xscale("log")
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  ax.set_xticks(sorted(set(ns)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def _n_colors(ns: Sequence[int]) -> dict[int, Any]:
  ns = sorted(set(ns))
  cmap = matplotlib.colormaps["viridis"]
  return {n: cmap(0.9 * i / max(1, len(ns) - 1)) for i, n in enumerate(ns)}


def _positive(times, *ys):
  keep = times > 0
  return (times[keep],) + tuple(y[keep] for y in ys)


def _plot_stats(ax, st: ts.CurveStats, x_scale: float = 1.0, y_scale=1.0, **kw):
  """Mean line and shaded min-max band of a CurveStats; returns the line (or None)."""
  t, m, lo, hi = _positive(st.times, st.mean, st.min, st.max)
  ok = np.isfinite(m)
  if not ok.any():
    return None
  (line,) = ax.plot(t[ok] * x_scale, m[ok] * y_scale, **kw)
  band = ok & np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
  if band.any():
    ax.fill_between(t[ok] * x_scale, (lo * y_scale)[ok], (hi * y_scale)[ok],
                    color=line.get_color(), alpha=0.15, linewidth=0)
  return line


def _has(a, name: str) -> bool:
  return any(np.any(np.isfinite(r.curves[name])) for r in a.runs)


SHORT_QUALITY = {"fid": "FID", "classifier_fd": "classifier-feature FD",
                 "pixel_fd": "pixel-space FD", "gmm_kl": "KL estimate"}


def short_quality(a) -> str:
  """A label short enough for an axis or a table column (the long one is in report.md)."""
  return SHORT_QUALITY.get(a.quality_name or "", a.quality_label or "quality")


def quality_fmem(a, path: str) -> str:
  q = short_quality(a)
  with_q = _has(a, "quality")
  ncol = 2 if with_q else 1
  fig = Figure(figsize=(5.2 * ncol, 3.6 * len(a.series)))
  axes = fig.subplots(len(a.series), ncol, squeeze=False)
  fig.subplots_adjust(hspace=0.45, wspace=0.3)
  thr = a.settings["tau_mem_threshold"]
  for row, s in zip(axes, a.series):
    colors = _n_colors([g.n for g in s.groups])
    ax_f = row[-1]
    for g in s.groups:
      _plot_stats(ax_f, g.curves["f_mem"], color=colors[g.n], label=f"n={g.n}")
      if with_q:
        _plot_stats(row[0], g.curves["quality"], color=colors[g.n], label=f"n={g.n}")
    ax_f.axhline(thr, color="gray", ls=":", lw=1, label=f"threshold {thr:g}")
    ax_f.set(xscale="log", xlabel="training step τ", ylabel="f_mem", title=f"f_mem, {s.label}")
    ax_f.legend(fontsize=7, ncol=2)
    if with_q:
      ax_q = row[0]
      vals = np.concatenate([g.curves["quality"].mean[g.curves["quality"].times > 0]
                             for g in s.groups])
      vals = vals[np.isfinite(vals)]
      if vals.size and vals.min() > 0 and vals.max() / vals.min() > 10:
        ax_q.set_yscale("log")
      if s.tau_gen_mean is not None:
        ax_q.axvline(s.tau_gen_mean.value, color="k", ls="--", lw=1,
                     label=f"τ_gen ≈ {_num(s.tau_gen_mean.value)}")
      ax_q.set(xscale="log", xlabel="training step τ", ylabel=q, title=f"{q}, {s.label}")
      ax_q.legend(fontsize=7, ncol=2)
  _save(fig, path)
  what = f"{q} (left) and f_mem (right)" if with_q else "f_mem"
  return (f"{what} against training steps, one line per n (mean over seeds, min-max range "
          "shaded); dashed: tau_gen, dotted: the tau_mem threshold.")


def fmem_collapse(a, path: str) -> str:
  thr = a.settings["tau_mem_threshold"]
  fig = Figure(figsize=(4.8 * len(a.series), 3.6))
  axes = fig.subplots(1, len(a.series), squeeze=False)[0]
  skipped = []
  for ax, s in zip(axes, a.series):
    colors = _n_colors([g.n for g in s.groups])
    for g in s.groups:
      st = g.curves["f_mem"]
      fin = st.mean[np.isfinite(st.mean)]
      if fin.size == 0 or fin[-1] <= thr:
        skipped.append(f"n={g.n} ({s.label})")
        continue
      norm = dict(st.__dict__)
      for k in ("mean", "min", "max"):
        norm[k] = st.__dict__[k] / fin[-1]
      _plot_stats(ax, ts.CurveStats(**norm), x_scale=1.0 / g.n, color=colors[g.n],
                  label=f"n={g.n}")
    if s.tau_mem_per_n is not None:
      ax.axvline(s.tau_mem_per_n.value, color="k", ls="--", lw=1,
                 label=f"τ_mem/n ≈ {_num(s.tau_mem_per_n.value)}")
    ax.set(xscale="log", xlabel="τ / n", ylabel="f_mem / f_mem(τ_max)", title=s.label)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  _save(fig, path)
  cap = ("f_mem normalised by its final value against τ/n: the curves collapse when "
         "tau_mem ∝ n; dashed: the fitted tau_mem/n.")
  if skipped:
    cap += f" Not shown (final f_mem ≤ {thr:g}): {', '.join(skipped)}."
  return cap


def losses(a, path: str) -> str | None:
  if not _has(a, "train_loss"):
    return None
  fig = Figure(figsize=(10.4, 3.6 * len(a.series)))
  axes = fig.subplots(len(a.series), 2, squeeze=False)
  fig.subplots_adjust(hspace=0.45, wspace=0.3)
  for row, s in zip(axes, a.series):
    colors = _n_colors([g.n for g in s.groups])
    for g in s.groups:
      for ax, xs in ((row[0], 1.0), (row[1], 1.0 / g.n)):
        _plot_stats(ax, g.curves["train_loss"], x_scale=xs, color=colors[g.n], label=f"n={g.n}")
        _plot_stats(ax, g.curves["test_loss"], x_scale=xs, color=colors[g.n], ls="--")
    row[0].set(xscale="log", xlabel="training step τ", ylabel="loss", title=f"losses, {s.label}")
    row[1].set(xscale="log", xlabel="τ / n", ylabel="loss", title=f"against τ/n, {s.label}")
    row[0].legend(fontsize=7, ncol=2)
  _save(fig, path)
  t = "" if a.loss_t is None else f" at t = {a.loss_t:g}"
  return (f"Training (solid) and test (dashed) loss{t} against training steps (left) and τ/n "
          "(right); the gap opens at a time ∝ n when the curves separate at the same τ/n.")


def _onset_points(ax, runs, attr: str, color, offset: float, label: str):
  obs = [(r.n * offset, getattr(r, attr)) for r in runs if getattr(r, attr).observed]
  if obs:
    x = np.array([p[0] for p in obs])
    v = np.array([o.value for _, o in obs])
    lo = np.array([o.lo if o.lo is not None else o.value for _, o in obs])
    hi = np.array([o.hi if o.hi is not None else o.value for _, o in obs])
    ax.errorbar(x, v, yerr=[v - lo, hi - v], fmt="o", color=color, ms=4, capsize=2,
                label=label)
  right = [(r.n * offset, getattr(r, attr).bound) for r in runs
           if getattr(r, attr).status == ts.RIGHT_CENSORED]
  if right:
    ax.scatter(*zip(*right), marker="^", s=40, facecolors="none", edgecolors=color,
               label=f"{label}: censored (> budget)")
  left = [(r.n * offset, getattr(r, attr).bound) for r in runs
          if getattr(r, attr).status == ts.LEFT_CENSORED]
  if left:
    ax.scatter(*zip(*left), marker="v", s=40, facecolors="none", edgecolors=color,
               label=f"{label}: ≤ first evaluation")


def timescales(a, path: str) -> str:
  panels = [("tau_mem", "tau_mem_fit", "τ_mem"), ("tau_gen", "tau_gen_fit", "τ_gen"),
            ("loss_gap", "loss_gap_fit", "loss-gap onset")]
  fig = Figure(figsize=(15, 4.2))
  axes = fig.subplots(1, 3)
  fig.subplots_adjust(wspace=0.3)
  palette = [matplotlib.colormaps["tab10"](i % 10) for i in range(len(a.series))]
  for ax, (attr, fit_attr, name) in zip(axes, panels):
    for k, (s, color) in enumerate(zip(a.series, palette)):
      offset = 1.0 + 0.04 * (k - (len(a.series) - 1) / 2)  # separate overlapping series
      _onset_points(ax, s.runs, attr, color, offset, s.label)
      ns = np.array(sorted({r.n for r in s.runs}), float)
      xs = np.geomspace(ns.min(), ns.max(), 50)
      cfit = getattr(s, fit_attr.replace("_fit", "_cfit"))
      if cfit is not None:
        ax.plot(xs, cfit.predict(xs), color=color, ls="--", lw=1,
                label=f"censoring-aware: n^{cfit.alpha.value:.2f}")
      fit = getattr(s, fit_attr)
      if fit is not None:
        ax.plot(xs, fit.predict(xs), color=color, ls=":", lw=1,
                label=f"least squares (observed): n^{fit.alpha.value:.2f}")
    ax.set(yscale="log", xlabel="n", ylabel=f"{name} (steps)", title=name)
    _n_axis(ax, [r.n for r in a.runs])
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  _save(fig, path)
  return ("tau_mem, tau_gen and the loss-gap onset against n, one point per run with its "
          "interval; open triangles: censored runs at their bound (▲ later than the budget, "
          "▼ at or before the first evaluation); dashed: censoring-aware power laws (censored "
          "runs included), dotted: least squares over the observed runs only.")


def _forest(ax, rows, extra, name: str, ref: float, ref_label: str) -> None:
  """Exponent per definition: censoring-aware (filled, with interval) and least squares."""
  labels = []
  for i, row in enumerate(rows):
    y = len(rows) + len(extra) - 1 - i
    labels.append((y, row.label))
    f = row.fit
    if f is not None:
      e = f.exponent(name)
      lo = e.lo if e.lo is not None else e.value
      hi = e.hi if e.hi is not None else e.value
      ax.errorbar([e.value], [y], xerr=[[e.value - lo], [hi - e.value]], fmt="o", color="C0",
                  ms=5, capsize=3, label="censoring-aware" if i == 0 else None)
    ls = row.least_squares
    if ls is not None:
      e = ls.exponent(name)
      lo = e.lo if e.lo is not None else e.value
      hi = e.hi if e.hi is not None else e.value
      ax.errorbar([e.value], [y - 0.25], xerr=[[e.value - lo], [hi - e.value]], fmt="s",
                  mfc="none", color="C1", ms=4, capsize=2,
                  label="least squares (observed runs)" if i == 0 else None)
  for j, (label, e) in enumerate(extra):
    y = len(extra) - 1 - j
    labels.append((y, label))
    lo = e.lo if e.lo is not None else e.value
    hi = e.hi if e.hi is not None else e.value
    ax.errorbar([e.value], [y], xerr=[[e.value - lo], [hi - e.value]], fmt="D", color="C2",
                ms=5, capsize=3, label="collapse")
  ax.axvline(ref, color="gray", ls=":", lw=1, label=ref_label)
  ax.set_yticks([y for y, _ in labels])
  ax.set_yticklabels([l if len(l) < 52 else l[:49] + "…" for _, l in labels], fontsize=7)
  ax.set_ylim(-0.8, len(labels) - 0.2)
  ax.legend(fontsize=6, loc="best")


def sensitivity(a, path: str) -> str | None:
  series = [s for s in a.series if any(r.fit is not None for r in s.mem_sensitivity)]
  if not series:
    return None
  fig = Figure(figsize=(16, 3.6 * len(series)))
  axes = fig.subplots(len(series), 3, squeeze=False, width_ratios=(1.2, 1.0, 1.0))
  fig.subplots_adjust(wspace=0.9, hspace=0.45)
  for row, s in zip(axes, series):
    extra = [] if s.collapse is None else [("collapse of f_mem / f_mem(τ_max)", s.collapse.alpha)]
    _forest(row[0], s.mem_sensitivity, extra, "n", 1.0, "paper: α = 1")
    row[0].set(xlabel="α in τ_mem = c n^α", title=f"τ_mem exponent, {s.label}")
    if any(r.fit is not None for r in s.gen_sensitivity):
      _forest(row[1], s.gen_sensitivity, [], "n", 0.0, "paper: 0")
      row[1].set(xlabel="slope of τ_gen against n", title=f"τ_gen slope, {s.label}")
    else:
      row[1].set_axis_off()
    ax = row[2]
    if s.collapse is not None:
      alpha = s.collapse.alpha.value
      colors = _n_colors([g.n for g in s.groups])
      thr = a.settings["tau_mem_threshold"]
      for r in s.runs:
        final = r.final("f_mem")[0]
        t, f = _positive(r.curves["step"], r.curves["f_mem"])
        ok = np.isfinite(f)
        if final is None or final <= thr or not ok.any():
          continue
        ax.plot(t[ok] / r.n ** alpha, f[ok] / final, color=colors[r.n], lw=1, alpha=0.8)
      for n in sorted({r.n for r in s.runs}):
        ax.plot([], [], color=colors[n], label=f"n={n}")
      ax.set(xscale="log", xlabel=f"τ / n^{alpha:.2f}", ylabel="f_mem / f_mem(τ_max)",
             title=f"collapse at α = {alpha:.2f}")
      ax.legend(fontsize=6, ncol=2)
    else:
      ax.set_axis_off()
  _save(fig, path)
  return ("Sensitivity of the exponents to the onset definition: τ_mem's α (left) and τ_gen's "
          "slope against n (middle) under each definition, censoring-aware fits (filled, "
          "with their intervals) and least squares over the observed runs (open squares); "
          "right: every run's f_mem / f_mem(τ_max) against τ / n^α at the α that best "
          "collapses them.")


def width_scaling(a, path: str) -> str | None:
  if not a.width_scaling:
    return None
  thr = a.settings["tau_mem_threshold"]
  fig = Figure(figsize=(10.4, 3.8))
  ax_q, ax_f = fig.subplots(1, 2)
  fig.subplots_adjust(wspace=0.3)
  widths = sorted({s.width for s in a.series})
  palette = {w: matplotlib.colormaps["tab10"](i % 10) for i, w in enumerate(widths)}
  seen = set()
  for s in a.series:
    if s.lr not in a.width_scaling:
      continue
    for g in s.groups:
      label = None if s.width in seen else f"W={s.width}"
      seen.add(s.width)
      _plot_stats(ax_q, g.curves["quality"], x_scale=s.width, color=palette[s.width],
                  label=label, alpha=0.8)
      st = g.curves["f_mem"]
      fin = st.mean[np.isfinite(st.mean)]
      if fin.size and fin[-1] > thr:
        ax_f.plot(*[v for v in _positive(st.times * s.width / g.n, st.mean / fin[-1])],
                  color=palette[s.width], alpha=0.8)
  q = short_quality(a)
  ax_q.set(xscale="log", xlabel="W·τ", ylabel=q, title=f"{q} against W·τ")
  ax_f.set(xscale="log", xlabel="τ·W / n", ylabel="f_mem / f_mem(τ_max)",
           title="f_mem against τ·W/n")
  if ax_q.get_legend_handles_labels()[0]:
    ax_q.legend(fontsize=7)
  _save(fig, path)
  return (f"Width scaling: {q} against W·τ (collapses when W·tau_gen is constant) and "
          "normalised f_mem against τ·W/n (collapses when tau_mem ∝ n/W), every n of every "
          "width.")


def phase_diagram(a, path: str) -> str | None:
  bounds = [b for lr, bs in a.phase.items() if lr in a.width_scaling for b in bs]
  if not bounds:
    return None
  use_p = all(b.num_params is not None for b in bounds)
  yval = (lambda b: b.num_params) if use_p else (lambda b: b.width)
  n_all = sorted({r.n for r in a.runs})
  fig = Figure(figsize=(5.4, 4.2))
  ax = fig.subplots()
  mults = sorted({b.multiplier for b in bounds})
  for i, m in enumerate(mults):
    color = matplotlib.colormaps["plasma"](0.85 * i / max(1, len(mults) - 1))
    bs = sorted([b for b in bounds if b.multiplier == m], key=yval)
    pts = [(b.n, yval(b)) for b in bs if b.n is not None]
    if pts:
      ax.plot(*zip(*pts), "o-", color=color, label=f"τ = {m:g} τ_gen")
    below = [(b.n, yval(b)) for b in bs if b.status == "at_or_below"]
    if below:
      ax.scatter(*zip(*below), marker="<", s=60, color=color)
    above = [(n_all[-1], yval(b)) for b in bs if b.status == "above_grid"]
    if above:
      ax.scatter(*zip(*above), marker=">", s=60, facecolors="none", edgecolors=color)
    if i == 0 and len(pts) >= 2 and all(b.status == ts.OBSERVED for b in bs):
      xs, ys = zip(*pts)  # shaded as in the paper: memorizes already at tau_gen
      ax.fill_betweenx(ys, [n_all[0]] * len(xs), xs, color=color, alpha=0.12,
                       label="memorizes by τ_gen")
  _n_axis(ax, n_all)
  ax.set_xlim(n_all[0] / 1.4, n_all[-1] * 1.4)
  ax.set(yscale="log", xlabel="n (training set size)",
         ylabel="parameters p" if use_p else "width W",
         title="smallest n with f_mem(τ) = 0")
  ax.legend(fontsize=7)
  _save(fig, path)
  return ("Phase diagram (paper Fig. 3 right): for each τ, the smallest n above which no run "
          "memorizes at τ; ◄: at or below the smallest n of the grid, open ►: above the "
          "largest.")


def write_figures(a, out_dir: str) -> list[tuple[str, str]]:
  """Draws every figure that applies; returns [(file name, caption)] in report order.

  A figure of an earlier report that no longer applies (e.g. the phase diagram when the
  report is rewritten for one width) is removed, so the directory matches report.md.
  """
  out = []
  for name, fn in (("quality_fmem.png", quality_fmem), ("fmem_collapse.png", fmem_collapse),
                   ("losses.png", losses), ("timescales.png", timescales),
                   ("sensitivity.png", sensitivity),
                   ("width_scaling.png", width_scaling), ("phase_diagram.png", phase_diagram)):
    path = os.path.join(out_dir, name)
    caption = fn(a, path)
    if caption is not None:
      out.append((name, caption))
    elif os.path.exists(path):
      os.remove(path)
  return out
