"""The report's figures (Matplotlib's Agg canvas; no pyplot state, no display).

`write_figures(analysis, out_dir)` draws, from a jaxdiff.findings.analysis.Analysis, each figure as
NAME.png and as the vector NAME.pdf beside it:
  quality_fmem.png   quality and f_mem vs training time per n (paper Fig. 2 left), with each
                     n's tau_gen / tau_mem marked on its curve
  fmem_collapse.png  f_mem vs tau / n and vs tau / n^alpha (the fitted alpha), and the
                     paper's f_mem / f_mem(tau_max) vs tau / n (the inset of Fig. 2 left)
  losses.png         train/test loss at fixed t vs time and vs tau / n (Fig. 2 middle)
  timescales.png     tau_mem, tau_gen and the loss-gap onset vs n with the fits (their
                     exponent intervals in the legend) and the paper's n^1 / n^0 references
  sensitivity.png    the exponents under every onset definition (censoring-aware and least
                     squares) and f_mem / f_mem(tau_max) against tau / n^alpha_collapse
  width_scaling.png  quality vs W tau and f_mem vs tau W / n (Fig. 3), several widths only
  phase_diagram.png  smallest n with f_mem(tau) = 0 vs parameters (Fig. 3 right), likewise
Curves are seed means with the min-max range of the runs shaded; times are optimizer steps
on log axes (step 0 is left out), labelled with plain numbers (100, 1,000, 10k).
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
from matplotlib.lines import Line2D

from jaxdiff import fileio
from jaxdiff.findings import timescales
from jaxdiff.findings.formatting import fmt_slope, short_quality

DPI = 110
VECTOR = "pdf"  # the vector copy written beside every PNG
# A run whose final f_mem is below this has not saturated: dividing its curve by the final
# value stretches its rise (drawn dotted where the figures still normalise that way).
SATURATED = 0.5


def plain_number(v: float) -> str:
  """A tick label without exponents: 0.01, 5, 100, 1,000, 10k, 250k, 1M."""
  if not np.isfinite(v) or v <= 0:
    return ""
  if v >= 1e6:
    return f"{v / 1e6:g}M"
  if v >= 1e4:
    return f"{v / 1e3:g}k"
  if v >= 1000:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
  return f"{v:g}"


def _plain_log_axis(axis, lo: float, hi: float) -> None:
  """Major ticks at 1 (2, 5, ...) x 10^k, chosen so that a short range keeps >= 2 labels."""
  span = np.log10(hi / lo) if lo > 0 and hi > lo else 0.0
  subs = ((1.0,) if span > 2.2 else (1.0, 2.0, 5.0) if span > 0.9 else
          (1.0, 2.0, 3.0, 5.0) if span > 0.6 else tuple(float(k) for k in range(1, 10)))
  axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=100))
  axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: plain_number(v)))
  axis.set_minor_locator(ticker.LogLocator(base=10, subs="auto", numticks=100))
  axis.set_minor_formatter(ticker.NullFormatter())


def _plain_log_ticks(fig: Figure) -> None:
  """Every log axis of the figure with plain tick labels (n axes keep their fixed ticks)."""
  for ax in fig.axes:
    for axis, scale, lim in ((ax.xaxis, ax.get_xscale(), ax.get_xlim),
                             (ax.yaxis, ax.get_yscale(), ax.get_ylim)):
      if scale == "log" and not isinstance(axis.get_major_locator(), ticker.FixedLocator):
        _plain_log_axis(axis, *sorted(lim()))


def vector_path(path: str) -> str:
  return os.path.splitext(path)[0] + "." + VECTOR


def save_figure(fig: Figure, path: str, *, plain_ticks: bool = True, crop: bool = True) -> None:
  """Writes the figure as PNG at `path` and as PDF beside it, atomically (no timestamps:
  rewriting a report with the same data gives the same files).

  plain_ticks: log axes labelled with plain numbers (`plain_number`); crop: the saved area
  is the drawn one (bbox "tight"), else the whole figure.
  """
  if plain_ticks:
    _plain_log_ticks(fig)
  FigureCanvasAgg(fig)
  for fmt, target, meta in (("png", path, {"Software": None}),
                            (VECTOR, vector_path(path), {"CreationDate": None})):
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight" if crop else None,
                metadata=meta)
    fileio.atomic_write_bytes(target, buf.getvalue())


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


def _plot_stats(ax, st: timescales.CurveStats, x_scale: float = 1.0, y_scale=1.0, **kw):
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


def _at(st: timescales.CurveStats, x: float) -> float:
  """The mean curve at time x (interpolated in log time), NaN outside its range."""
  t, m = _positive(st.times, st.mean)
  ok = np.isfinite(m)
  if not ok.any() or x <= 0:
    return np.nan
  t, m = t[ok], m[ok]
  if x < t[0] or x > t[-1]:
    return np.nan
  return float(np.interp(np.log(x), np.log(t), m))


def _mark_onset(ax, st: timescales.CurveStats, stats: timescales.OnsetStats,
                onsets: Sequence[timescales.Onset],
                color) -> str | None:
  """Marks a group's onset on its mean curve: a filled dot at the estimate (the geometric
  mean over the observed runs), with a horizontal bar over the runs' min-max range (the
  range the curves shade; a 2-seed t-interval is 12.7 standard errors wide); an open ▷
  at the budget when no run reached it, an open ◁ at the first evaluation when every run
  was past it already. Returns which kind was drawn."""
  e = stats.estimate
  if e is not None:
    x = e.value
    vals = [o.value for o in onsets if o.observed]
    xerr = [[x - min(vals)], [max(vals) - x]] if len(vals) > 1 else None
    ax.errorbar([x], [_at(st, x)], xerr=xerr, fmt="o", ms=5, mfc=color, mec="k",
                mew=0.8, ecolor=color, elinewidth=1.5, capsize=2, zorder=5)
    return "observed"
  if (stats.status in (timescales.RIGHT_CENSORED, timescales.LEFT_CENSORED)
      and stats.bound is not None):
    right = stats.status == timescales.RIGHT_CENSORED
    ax.plot([stats.bound], [_at(st, stats.bound)], ">" if right else "<",
            ms=7, mfc="none", mec=color, mew=1.2, zorder=5)
    return stats.status
  return None


def _marker_legend(name: str, kinds: set) -> list:
  """Proxy legend entries for the onset markers that were drawn."""
  out = []
  if "observed" in kinds:
    out.append(Line2D([], [], ls="none", marker="o", ms=5, mfc="0.5", mec="k",
                      label=f"{name} per n (seed mean; bar: min-max)"))
  if timescales.RIGHT_CENSORED in kinds:
    out.append(Line2D([], [], ls="none", marker=">", ms=7, mfc="none", mec="0.3",
                      label=f"{name} > budget (no run reached it)"))
  if timescales.LEFT_CENSORED in kinds:
    out.append(Line2D([], [], ls="none", marker="<", ms=7, mfc="none", mec="0.3",
                      label=f"{name} ≤ first evaluation"))
  return out


def quality_fmem(a, path: str) -> str:
  q = short_quality(a)
  with_q = _has(a, "quality")
  ncol = 2 if with_q else 1
  fig = Figure(figsize=(5.6 * ncol, 3.9 * len(a.series)))
  axes = fig.subplots(len(a.series), ncol, squeeze=False)
  fig.subplots_adjust(hspace=0.45, wspace=0.3)
  thr = a.settings["tau_mem_threshold"]
  for row, s in zip(axes, a.series):
    colors = _n_colors([g.n for g in s.groups])
    ax_f = row[-1]
    mem_kinds, gen_kinds = set(), set()
    for g in s.groups:
      _plot_stats(ax_f, g.curves["f_mem"], color=colors[g.n], label=f"n={g.n}")
      mem_kinds.add(_mark_onset(ax_f, g.curves["f_mem"], g.tau_mem,
                                [r.tau_mem for r in g.runs], colors[g.n]))
      if with_q:
        _plot_stats(row[0], g.curves["quality"], color=colors[g.n], label=f"n={g.n}")
        gen_kinds.add(_mark_onset(row[0], g.curves["quality"], g.tau_gen,
                                  [r.tau_gen for r in g.runs], colors[g.n]))
    ax_f.axhline(thr, color="gray", ls=":", lw=1, label=f"threshold {thr:g}")
    ax_f.set(xscale="log", xlabel="training step τ", ylabel="f_mem", title=f"f_mem, {s.label}")
    handles, _ = ax_f.get_legend_handles_labels()
    # f_mem starts at 0 for every n: the upper left is free
    ax_f.legend(handles=handles + _marker_legend("τ_mem", mem_kinds), fontsize=6.5,
                loc="upper left")
    if with_q:
      ax_q = row[0]
      vals = np.concatenate([g.curves["quality"].mean[g.curves["quality"].times > 0]
                             for g in s.groups])
      vals = vals[np.isfinite(vals)]
      if vals.size and vals.min() > 0 and vals.max() / vals.min() > 10:
        ax_q.set_yscale("log")
      if s.tau_gen_mean is not None:
        ax_q.axvline(s.tau_gen_mean.value, color="k", ls="--", lw=1,
                     label=f"τ_gen, all n ≈ {_num(s.tau_gen_mean.value)}")
      ax_q.set(xscale="log", xlabel="training step τ", ylabel=q, title=f"{q}, {s.label}")
      handles, _ = ax_q.get_legend_handles_labels()
      ax_q.legend(handles=handles + _marker_legend("τ_gen", gen_kinds), fontsize=7, ncol=2)
  save_figure(fig, path)
  what = f"{q} (left) and f_mem (right)" if with_q else "f_mem"
  return (f"{what} against training steps, one line per n (mean over seeds, min-max range "
          "shaded). Dots on the curves: each n's tau_gen and tau_mem (geometric mean over "
          "the observed runs, bar: their min-max range), open ▷ at the budget where no run "
          "memorized; "
          "dashed: the geometric mean of tau_gen over all n, dotted: the tau_mem threshold.")


def _collapse_panel(ax, s, alpha: float, thr: float, normalise: bool) -> list[str]:
  """f_mem (or f_mem / f_mem(tau_max)) of each n against tau / n^alpha; returns the groups
  left out (normalised panel: final f_mem <= threshold)."""
  colors = _n_colors([g.n for g in s.groups])
  skipped = []
  for g in s.groups:
    st = g.curves["f_mem"]
    fin = st.mean[np.isfinite(st.mean)]
    scale = 1.0
    kw = {}
    if normalise:
      if fin.size == 0 or fin[-1] <= thr:
        skipped.append(f"n={g.n} ({s.label})")
        continue
      scale = 1.0 / fin[-1]
      if fin[-1] < SATURATED:
        kw["ls"] = ":"
    _plot_stats(ax, st, x_scale=1.0 / g.n ** alpha, y_scale=scale, color=colors[g.n],
                label=f"n={g.n}" + (f" (final {fin[-1]:.0%})" if normalise and kw else ""),
                **kw)
  return skipped


def fmem_collapse(a, path: str) -> str:
  """Three views of the collapse, one row per series.

  The paper's inset divides f_mem by its final value f_mem(tau_max). For a run far from
  saturation (digits n = 128 ends at 25%) that stretches its rise four-fold, so the first
  two panels show f_mem itself, which saturates at 1 for every n: against tau / n
  (alpha = 1, the paper) and against tau / n^alpha at the censoring-aware fit's alpha."""
  thr = a.settings["tau_mem_threshold"]
  fig = Figure(figsize=(14.4, 3.8 * len(a.series)))
  axes = fig.subplots(len(a.series), 3, squeeze=False)
  fig.subplots_adjust(wspace=0.28, hspace=0.5)
  skipped = []
  for row, s in zip(axes, a.series):
    _collapse_panel(row[0], s, 1.0, thr, normalise=False)
    if s.tau_mem_per_n is not None:
      row[0].axvline(s.tau_mem_per_n.value, color="k", ls="--", lw=1,
                     label=f"τ_mem/n ≈ {_num(s.tau_mem_per_n.value)}")
    row[0].set(title=f"f_mem against τ/n (α = 1), {s.label}", xlabel="τ / n")
    cfit = s.tau_mem_cfit
    if cfit is not None:
      alpha = cfit.alpha.value
      _collapse_panel(row[1], s, alpha, thr, normalise=False)
      row[1].axvline(cfit.prefactor.value, color="k", ls="--", lw=1,
                     label=f"fit: τ_mem/n^α = {_num(cfit.prefactor.value)}")
      row[1].set(title=f"against τ/n^α, fitted α = {fmt_slope(cfit.alpha)}",
                 xlabel=f"τ / n^{alpha:.2f}")
    else:
      row[1].set_axis_off()
    skipped += _collapse_panel(row[2], s, 1.0, thr, normalise=True)
    row[2].set(title="f_mem / f_mem(τ_max) against τ/n (paper's inset)", xlabel="τ / n",
               ylabel="f_mem / f_mem(τ_max)")
    # f_mem's own scale, 0 to 1, unless no run comes near 1 (then the rise would be flat)
    peak = max([float(np.nanmax(g.curves["f_mem"].max)) for g in s.groups
                if np.isfinite(g.curves["f_mem"].max).any()] or [1.0])
    top = min(1.03, max(0.1, 1.1 * peak))
    for ax in row[:2]:
      ax.axhline(thr, color="gray", ls=":", lw=1, label=f"threshold {thr:g}")
      ax.set(ylabel="f_mem", ylim=(-0.03 * top, top))
    for ax in row:
      if ax.axison:
        ax.set_xscale("log")
        if ax.get_legend_handles_labels()[0]:
          ax.legend(fontsize=7)
  save_figure(fig, path)
  cap = ("f_mem of each n (mean over seeds) against τ/n (left: the curves collapse when "
         "tau_mem ∝ n, the paper's α = 1) and against τ/n^α at the censoring-aware fit's α "
         "(middle); f_mem itself is shown because it saturates at 1 for every n. Right: the "
         "paper's inset, f_mem divided by its final value; it stretches the rise of runs far "
         f"from saturation (final f_mem < {SATURATED:.0%}, dotted), so read collapse from the "
         "left panels. Dashed: the fitted tau_mem/n and tau_mem/n^α.")
  if skipped:
    cap += f" Not shown on the right (final f_mem ≤ {thr:g}): {', '.join(skipped)}."
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
        # train: thick solid; test: thin dashed with open circles at the evaluations
        _plot_stats(ax, g.curves["train_loss"], x_scale=xs, color=colors[g.n], lw=2.0,
                    label=f"n={g.n}")
        _plot_stats(ax, g.curves["test_loss"], x_scale=xs, color=colors[g.n], ls="--", lw=1.0,
                    marker="o", ms=3, mfc="white")
    row[0].set(xscale="log", xlabel="training step τ", ylabel="loss", title=f"losses, {s.label}")
    row[1].set(xscale="log", xlabel="τ / n", ylabel="loss", title=f"against τ/n, {s.label}")
    handles, _ = row[0].get_legend_handles_labels()
    style = [Line2D([], [], color="k", lw=2.0, label="train loss"),
             Line2D([], [], color="k", lw=1.0, ls="--", marker="o", ms=3, mfc="white",
                    label="test loss")]
    row[0].legend(handles=handles, fontsize=7, ncol=2)
    row[1].legend(handles=style, fontsize=7)
  save_figure(fig, path)
  t = "" if a.loss_t is None else f" at t = {a.loss_t:g}"
  return (f"Training (thick solid) and test (thin dashed, open circles) loss{t} against "
          "training steps (left) and τ/n (right); the gap opens at a time ∝ n when the curves "
          "separate at the same τ/n.")


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
           if getattr(r, attr).status == timescales.RIGHT_CENSORED]
  if right:
    ax.scatter(*zip(*right), marker="^", s=40, facecolors="none", edgecolors=color,
               label=f"{label}: censored (> budget)")
  left = [(r.n * offset, getattr(r, attr).bound) for r in runs
          if getattr(r, attr).status == timescales.LEFT_CENSORED]
  if left:
    ax.scatter(*zip(*left), marker="v", s=40, facecolors="none", edgecolors=color,
               label=f"{label}: ≤ first evaluation")


def fit_label(fit, kind: str) -> str:
  """A fit's legend entry with the exponent's interval, as the report states it:
  "censoring-aware fit: n^α, α = 1.21 [1.03, 1.38]"."""
  return f"{kind}: n^α, α = {fmt_slope(fit.alpha)}"


# The paper's reference exponents per panel: tau_mem ∝ n (alpha = 1), tau_gen independent
# of n; the loss gap opens with memorization, so at a time ∝ n too.
REFERENCES = {"tau_mem": (1.0, "reference n^1 (paper: α = 1)"),
              "tau_gen": (0.0, "reference n^0 (paper: τ_gen independent of n)"),
              "loss_gap": (1.0, "reference n^1 (gap opens with memorization)")}


def _reference_line(ax, s, attr: str, cfit, fit, xs, color, label: str | None) -> bool:
  """The paper's power law n^ref through the series' centre: for tau_gen its geometric
  mean over the observed runs; otherwise the censoring-aware fit's value at the geometric
  mean of n (else the least-squares fit's, else the observed
  runs' geometric mean when they span two n or more), so that it differs from the fit
  only in slope. Returns whether it was drawn."""
  ref = REFERENCES[attr][0]
  obs = [(r.n, getattr(r, attr).value) for r in s.runs if getattr(r, attr).observed]
  ns = np.array(sorted({r.n for r in s.runs}), float)
  n_c = float(np.exp(np.mean(np.log(ns))))
  if attr == "tau_gen" and s.tau_gen_mean is not None:
    # flat at the mean tau_gen, the dashed line of quality_fmem.png (a sloped fit's centre
    # can lie below every observed run, e.g. when the largest n is left-censored)
    y_c = s.tau_gen_mean.value
  elif cfit is not None:
    y_c = float(cfit.predict(np.array([n_c]))[0])
  elif fit is not None:
    y_c = float(fit.predict(np.array([n_c]))[0])
  elif len({n for n, _ in obs}) >= 2:  # one n alone would pin a line to a single point
    n_c = float(np.exp(np.mean(np.log([n for n, _ in obs]))))
    y_c = float(np.exp(np.mean(np.log([v for _, v in obs]))))
  else:
    return False
  ax.plot(xs, y_c * (xs / n_c) ** ref, color=color, ls="-.", lw=1.2, alpha=0.6, label=label)
  return True


def timescales_figure(a, path: str) -> str:
  panels = [("tau_mem", "tau_mem_fit", "τ_mem"), ("tau_gen", "tau_gen_fit", "τ_gen"),
            ("loss_gap", "loss_gap_fit", "loss-gap onset")]
  fig = Figure(figsize=(16.5, 4.8))
  axes = fig.subplots(1, 3)
  fig.subplots_adjust(wspace=0.3)
  palette = [matplotlib.colormaps["tab10"](i % 10) for i in range(len(a.series))]
  for ax, (attr, fit_attr, name) in zip(axes, panels):
    ref_drawn = False
    for k, (s, color) in enumerate(zip(a.series, palette)):
      offset = 1.0 + 0.04 * (k - (len(a.series) - 1) / 2)  # separate overlapping series
      _onset_points(ax, s.runs, attr, color, offset, s.label)
      ns = np.array(sorted({r.n for r in s.runs}), float)
      xs = np.geomspace(ns.min(), ns.max(), 50)
      cfit = getattr(s, fit_attr.replace("_fit", "_cfit"))
      if cfit is not None:
        ax.plot(xs, cfit.predict(xs), color=color, ls="--", lw=1.2,
                label=fit_label(cfit, "censoring-aware fit"))
      fit = getattr(s, fit_attr)
      if fit is not None:
        ax.plot(xs, fit.predict(xs), color=color, ls=":", lw=1,
                label=fit_label(fit, "least squares (observed)"))
      ref_drawn |= _reference_line(ax, s, attr, cfit, fit, xs, "gray",
                                   None if ref_drawn else REFERENCES[attr][1])
    ax.set(yscale="log", xlabel="n", ylabel=f"{name} (steps)", title=name)
    _n_axis(ax, [r.n for r in a.runs])
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  save_figure(fig, path)
  return ("tau_mem, tau_gen and the loss-gap onset against n, one point per run with its "
          "interval; open triangles: censored runs at their bound (▲ later than the budget, "
          "▼ at or before the first evaluation); dashed: censoring-aware power laws (censored "
          "runs included), dotted: least squares over the observed runs only, each with its "
          f"exponent's {a.settings['conf']:.0%} interval in the legend; dash-dotted gray: "
          "the paper's scaling, tau_mem ∝ n through the fit's value at the geometric-mean n "
          "(the loss-gap onset likewise), tau_gen flat at its geometric mean over the "
          "observed runs.")


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
  # constrained layout: the long definition labels of the middle panel need their own room
  fig = Figure(figsize=(17, 3.8 * len(series)), layout="constrained")
  axes = fig.subplots(len(series), 3, squeeze=False, width_ratios=(1.2, 1.0, 1.0))
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
        ax.plot(t[ok] / r.n ** alpha, f[ok] / final, color=colors[r.n], lw=1, alpha=0.8,
                ls=":" if final < SATURATED else "-")
      for n in sorted({r.n for r in s.runs}):
        ax.plot([], [], color=colors[n], label=f"n={n}")
      ax.set(xscale="log", xlabel=f"τ / n^{alpha:.2f}", ylabel="f_mem / f_mem(τ_max)",
             title=f"collapse at α = {alpha:.2f}")
      ax.legend(fontsize=6, ncol=2)
    else:
      ax.set_axis_off()
  save_figure(fig, path)
  return ("Sensitivity of the exponents to the onset definition: τ_mem's α (left) and τ_gen's "
          "slope against n (middle) under each definition, censoring-aware fits (filled, "
          "with their intervals) and least squares over the observed runs (open squares); "
          "right: every run's f_mem / f_mem(τ_max) against τ / n^α at the α that best "
          f"collapses them (dotted: runs that end below {SATURATED:.0%}, whose rise the "
          "normalisation stretches).")


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
      st = g.curves["f_mem"]  # f_mem itself: it saturates at 1, the final value may not
      ax_f.plot(*[v for v in _positive(st.times * s.width / g.n, st.mean)],
                color=palette[s.width], alpha=0.8)
  q = short_quality(a)
  ax_q.set(xscale="log", xlabel="W·τ", ylabel=q, title=f"{q} against W·τ")
  ax_f.axhline(thr, color="gray", ls=":", lw=1, label=f"threshold {thr:g}")
  ax_f.set(xscale="log", xlabel="τ·W / n", ylabel="f_mem", title="f_mem against τ·W/n")
  ax_f.legend(fontsize=7)
  if ax_q.get_legend_handles_labels()[0]:
    ax_q.legend(fontsize=7)
  save_figure(fig, path)
  return (f"Width scaling: {q} against W·τ (collapses when W·tau_gen is constant) and "
          "f_mem against τ·W/n (collapses when tau_mem ∝ n/W), every n of every width.")


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
    if i == 0 and len(pts) >= 2 and all(b.status == timescales.OBSERVED for b in bs):
      xs, ys = zip(*pts)  # shaded as in the paper: memorizes already at tau_gen
      ax.fill_betweenx(ys, [n_all[0]] * len(xs), xs, color=color, alpha=0.12,
                       label="memorizes by τ_gen")
  _n_axis(ax, n_all)
  ax.set_xlim(n_all[0] / 1.4, n_all[-1] * 1.4)
  ax.set(yscale="log", xlabel="n (training set size)",
         ylabel="parameters p" if use_p else "width W",
         title="smallest n with f_mem(τ) = 0")
  ax.legend(fontsize=7)
  save_figure(fig, path)
  return ("Phase diagram (paper Fig. 3 right): for each τ, the smallest n above which no run "
          "memorizes at τ; ◄: at or below the smallest n of the grid, open ►: above the "
          "largest.")


def write_figures(a, out_dir: str) -> list[tuple[str, str]]:
  """Draws every figure that applies (PNG and PDF); returns [(PNG name, caption)] in report
  order.

  A figure of an earlier report that no longer applies (e.g. the phase diagram when the
  report is rewritten for one width) is removed, so the directory matches report.md.
  """
  out = []
  for name, fn in (("quality_fmem.png", quality_fmem), ("fmem_collapse.png", fmem_collapse),
                   ("losses.png", losses), ("timescales.png", timescales_figure),
                   ("sensitivity.png", sensitivity),
                   ("width_scaling.png", width_scaling), ("phase_diagram.png", phase_diagram)):
    path = os.path.join(out_dir, name)
    caption = fn(a, path)
    if caption is not None:
      vec = os.path.basename(vector_path(path))
      out.append((name, f"{caption} Vector copy: [{vec}]({vec})."))
    else:
      for p in (path, vector_path(path)):
        if os.path.exists(p):
          os.remove(p)
  return out
