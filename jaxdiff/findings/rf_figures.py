"""Figures of the random-features study (paper Figs 4, 5, 13, 14), as PNG and PDF files.

Each function takes the arrays of one study stage (jaxdiff.rf_study) and a path; the files
are written like the sweep report's (jaxdiff.findings.figures.save_figure: Agg canvas, no
pyplot state, atomic, no timestamps), uncropped and with matplotlib's own tick labels.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jaxdiff.findings import figures

_COLORS = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(fig: Figure, path: str) -> None:
  figures.save_figure(fig, path, plain_ticks=False, crop=False)


def covariance_label(eigs, weights=None) -> str:
  """Sigma in words: "Sigma = I", or its eigenvalues with their weights."""
  eigs = [float(e) for e in eigs]
  if len(eigs) == 1:
    return "Σ = I" if eigs[0] == 1.0 else f"Σ = {eigs[0]:g} I"
  text = "Σ eigenvalues " + ", ".join(f"{e:g}" for e in eigs)
  if weights is not None:
    text += " (fractions " + ", ".join(f"{float(w):g}" for w in weights) + ")"
  return text


def _hist_density(ax, eigs, num_total, most, lo, hi, log=False, **kwargs) -> float:
  """Histogram as an absolute density: count / (num_total * bin width); returns its peak.

  With log=True the widths are in ln(lambda), i.e. the histogram estimates lambda rho(lambda).
  The bins span the eigenvalues' own range within the plotted [lo, hi], as many as numpy's "auto" rule (the larger of
  Sturges' and Freedman-Diaconis') gives, at most `most`: a few hundred eigenvalues get a
  dozen bins instead of a comb of empty and single-count ones.
  """
  eigs = eigs[(eigs >= lo) & (eigs <= hi)]
  if eigs.size < 2:
    return 0.0
  x = np.log(eigs) if log else eigs
  edges = np.histogram_bin_edges(x, bins="auto")
  if edges.size - 1 > most:
    edges = np.linspace(x.min(), x.max(), most + 1)
  counts, edges = np.histogram(x, bins=edges)
  widths = np.diff(edges)
  if log:
    edges = np.exp(edges)
  density = counts / (num_total * widths)
  ax.stairs(density, edges, **kwargs)
  return float(density.max())


def spectrum_figure(cases: list[dict], stages: list[dict], path: str) -> None:
  """Fig. 4 / Fig. 14: Theorem 3.1 density vs eigenvalue histograms, per bulk region.

  Left: the rho_1 region on a log axis, as lambda rho(lambda) (density per unit of
  ln lambda), so that the finite-psi_n sub-bulk near s_t^2 and rho_1 are both visible;
  the delta peak at s_t^2 is marked with its mass. Right: the rho_2 region, rho(lambda).
  """
  fig = Figure(figsize=(12, 3.6 * len(cases)))
  axes = fig.subplots(len(cases), 2, squeeze=False)
  for row, (case, st) in enumerate(zip(cases, stages)):
    p_ge = st["eig_ge"].size
    d_ge = int(round(p_ge / case["psi_p"]))
    s2, split = float(st["s2"]), float(st["split"])
    title = (f"$\\psi_p$={case['psi_p']:g}, $\\psi_n$={case['psi_n']:g}, t={case['t']:g}, "
             + covariance_label(case["cov_eigs"], case["cov_weights"]))
    ev = st["eig_ge"]
    ge_label = f"Gaussian-equivalent U, d={d_ge}"
    mc_label = f"U from its definition (Monte Carlo), d={int(st.get('mc_d', 0))}"
    ax = axes[row, 0]
    g1, r1 = st["grid1"], np.nan_to_num(st["rho1"])
    bulk1 = ev[(ev > s2 * (1 + 1e-9)) & (ev < split)]
    peak = _hist_density(ax, bulk1, p_ge, 60, g1[0], g1[-1], log=True, fill=True, alpha=0.35,
                         color=_COLORS[0], label=ge_label)
    if "eig_mc" in st:
      em = st["eig_mc"]
      peak = max(peak, _hist_density(ax, em[em < split], em.size, 60, g1[0], g1[-1],
                                     log=True, color=_COLORS[2], label=mc_label))
    ax.plot(g1, g1 * r1, color="k", lw=1.2, label="Theorem 3.1")
    ax.plot(g1, g1 * st["thm32_rho1"], color=_COLORS[3], ls="--", lw=1,
            label="Theorem 3.2 $\\rho_1$")
    # Room for the histograms' peaks too (they were clipped at the theory's).
    ax.set_ylim(0, 1.15 * max(float(np.max(g1 * r1)), peak, 1e-12))
    ax.axvline(s2, color="gray", ls=":", lw=1)
    ax.text(s2, ax.get_ylim()[1] * 0.92,
            f" $\\delta$ at $s_t^2$: mass {float(st['delta_mass']):.3f}", fontsize=8, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("$\\lambda$")
    ax.set_ylabel("$\\lambda\\,\\rho(\\lambda)$")
    ax.set_title(title + f"; $\\rho_1$ region, KS {float(st['ks1']):.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[row, 1]
    g2 = st["grid2"]
    peak = _hist_density(ax, ev[ev >= split], p_ge, 50, g2[0], g2[-1], fill=True, alpha=0.35,
                         color=_COLORS[0], label=ge_label)
    if "eig_mc" in st:
      em = st["eig_mc"]
      peak = max(peak, _hist_density(ax, em[em >= split], em.size, 50, g2[0], g2[-1],
                                     color=_COLORS[2], label=mc_label))
    ax.plot(g2, st["rho2"], color="k", lw=1.2, label="Theorem 3.1")
    ax.plot(g2, st["thm32_rho2"], color=_COLORS[3], ls="--", lw=1,
            label="Theorem 3.2 $\\rho_2$ ($\\psi_n \\to \\infty$)")
    top = max(float(np.nanmax(st["rho2"])), float(np.nanmax(st["thm32_rho2"])), peak, 1e-12)
    ax.set_ylim(0, 1.15 * top)
    ax.set_xlabel("$\\lambda$")
    ax.set_ylabel("$\\rho(\\lambda)$")
    ax.set_title(f"$\\rho_2$ region; KS {float(st['ks2']):.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
  fig.tight_layout()
  _save(fig, path)


def losses_figure(sim: dict, psi_n, onsets: dict, path: str) -> None:
  """Fig. 5A, B: E_score, L_train / L_test and L_gen vs tau and tau / tau_mem.

  Simulation: markers (mean over seeds); closed-form mean iterate: dotted lines.
  """
  fig = Figure(figsize=(15, 8.5))
  axes = fig.subplots(2, 3)
  taus, dense = sim["taus"], sim["dense_taus"]
  tau_mem = sim["tau_mem"]
  panels = (("score", "$\\mathcal{E}_{score}$"),
            ("train", "$\\mathcal{L}_{train}$ (filled, solid), $\\mathcal{L}_{test}$ (open, dashed)"),
            ("gen", "$\\mathcal{L}_{gen}$"))
  for r, pn in enumerate(psi_n):
    color = _COLORS[r % len(_COLORS)]
    for row, scale in enumerate((1.0, float(tau_mem[r]))):
      for col, (name, label) in enumerate(panels):
        ax = axes[row, col]
        keys = ("train", "test") if name == "train" else (name,)
        for key in keys:
          # L_train: filled circles on solid lines; L_test: open squares on dashed lines.
          test = key == "test"
          y = sim[f"sim_{key}"][1:, :, r].mean(axis=1)
          ax.plot(taus[1:] / scale, y, marker="s" if test else "o", ms=3.5 if test else 3,
                  lw=0.8, ls="--" if test else "-", color=color,
                  markerfacecolor="white" if test else color,
                  label=f"$\\psi_n$={pn:g}" if (not test and row == 0) else None)
          ex = sim[f"dense_{key}"][1:, :, r].mean(axis=1)
          if np.all(np.isfinite(ex)):
            ax.plot(dense[1:] / scale, ex, ls=":", lw=1.2, color=color)
        if name == "gen" and np.isfinite(onsets["sim"][r]):
          ax.axvline(onsets["sim"][r] / scale, color=color, lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylabel(label)
        ax.set_xlabel("$\\tau = k\\eta/d^2$" if row == 0 else "$\\tau/\\tau_{mem}$")
  axes[0, 0].set_yscale("log")
  axes[1, 0].set_yscale("log")
  axes[0, 0].legend(fontsize=8)
  axes[0, 1].legend(handles=[
      Line2D([], [], color="k", marker="o", ms=4, lw=0.8, label="$\\mathcal{L}_{train}$ (simulation)"),
      Line2D([], [], color="k", marker="s", ms=4, lw=0.8, ls="--", markerfacecolor="white",
             label="$\\mathcal{L}_{test}$ (simulation)"),
      Line2D([], [], color="k", ls=":", lw=1.2, label="closed-form mean iterate")], fontsize=8)
  fig.suptitle(f"Simulation (markers, mean of {sim['sim_train'].shape[1]} seeds, "
               f"d={int(sim['d'])}, p={int(sim['p'])}) and closed-form mean iterate (dotted); "
               "dashed: onset of the L_gen rise", fontsize=10)
  fig.tight_layout()
  _save(fig, path)


def heatmap_figure(hm: dict, path: str) -> None:
  """Fig. 5C: L_gen over (psi_n, psi_p) at each fixed tau."""
  taus = hm["taus"]
  fig = Figure(figsize=(5.2 * len(taus), 4.4))
  axes = fig.subplots(1, len(taus), squeeze=False)
  for k, tau in enumerate(taus):
    ax = axes[0, k]
    z = hm["gen"][k].T  # [psi_p, psi_n]
    im = ax.imshow(z, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(hm["psi_n"])), [f"{v:g}" for v in hm["psi_n"]])
    ax.set_yticks(range(len(hm["psi_p"])), [f"{v:g}" for v in hm["psi_p"]])
    for i in range(z.shape[0]):
      for j in range(z.shape[1]):
        ax.text(j, i, f"{z[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    ax.set_xlabel("$\\psi_n$")
    ax.set_ylabel("$\\psi_p$")
    ax.set_title(f"$\\mathcal{{L}}_{{gen}}$ at $\\tau$ = {tau:g}")
    fig.colorbar(im, ax=ax)
  fig.tight_layout()
  _save(fig, path)


def escore_figure(es: dict, fit: dict | None, path: str) -> None:
  """Fig. 13: E_score(tau) per psi_n, and E*_score vs psi_n with its power-law fit."""
  fig = Figure(figsize=(11, 4.2))
  a1, a2 = fig.subplots(1, 2)
  for i, pn in enumerate(es["psi_n"]):
    a1.plot(es["taus"], es["curves"][:, i].mean(axis=0), color=_COLORS[i % len(_COLORS)],
            label=f"$\\psi_n$={pn:g}")
  a1.set_xscale("log")
  a1.set_yscale("log")
  a1.set_xlabel("$\\tau$")
  a1.set_ylabel("$\\mathcal{E}_{score}$")
  a1.legend(fontsize=8)
  mean, std = es["estar"].mean(axis=0), es["estar"].std(axis=0)
  a2.errorbar(es["psi_n"], mean, yerr=3 * std, fmt="o", capsize=3, label="closed form (3 std)")
  x = np.geomspace(es["psi_n"].min(), es["psi_n"].max(), 50)
  if fit is not None:  # None: a single psi_n
    err = "" if fit["slope_stderr"] is None else f" $\\pm$ {fit['slope_stderr']:.3f}"
    a2.plot(x, fit["prefactor"] * x**fit["slope"], "k--",
            label=f"fit: slope {fit['slope']:.3f}{err}")
  a2.plot(x, mean[0] * (x / x[0])**-0.59, color="gray", ls=":", label="paper ($\\psi_p$=32): slope -0.59")
  a2.set_xscale("log")
  a2.set_yscale("log")
  a2.set_xlabel("$\\psi_n$")
  a2.set_ylabel("$\\mathcal{E}^*_{score}$")
  a2.legend(fontsize=8)
  fig.tight_layout()
  _save(fig, path)
