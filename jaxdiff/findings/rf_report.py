"""summary.json, report.md and the figures of the random-features study (DIR/report/).

The paper's own numbers (paper.md 2.2, 2.5, Fig. 4, Fig. 13) are printed beside ours for
comparison; nothing here is computed from them.
"""

from __future__ import annotations

import math
import os

import numpy as np

from jaxdiff import fileio
from jaxdiff.findings import rf_figures
from jaxdiff.findings import timescales
from jaxdiff.findings.formatting import table_head
from jaxdiff.theory import spectrum

# paper.md 2.2 (tanh, sigma_x = 1): t -> (a_t, b_t, v_t^2, s_t^2).
PAPER_CONSTANTS = {0.01: (0.605706, 0.085233, 0.025542, 0.001874),
                   0.1: (0.605706, 0.257884, 0.013841, 0.013574),
                   0.5: (0.605706, 0.481572, 0.001124, 0.026291),
                   1.0: (0.605706, 0.563229, 5.5e-05, 0.027361)}
# paper.md 2.5: tau_mem at psi_p = 64, t = 0.1.
PAPER_TAU_MEM = {4.0: 2556, 8.0: 5899, 16.0: 12878, 32.0: 22138}
PAPER_ESCORE_SLOPE = -0.59
PAPER_ESCORE_PSI_P = 32.0  # paper.md, Fig. 13: psi_p = 32, t = 0.01, 10 runs


def _f(x) -> float:
  return float(np.asarray(x))


def spectrum_summary(case: dict, st: dict, activation: str) -> dict:
  sigma_x = spectrum.covariance_spectrum(case["cov_eigs"], case["cov_weights"])[2]
  r1 = spectrum.rho1_support(case["psi_p"], case["psi_n"], case["t"], sigma_x, activation)
  r2 = spectrum.rho2_support(case["psi_p"], case["t"], case["cov_eigs"], case["cov_weights"],
                             activation)
  out = dict(case,
             delta_mass=_f(st["delta_mass"]), mass_region1=_f(st["mass1"]),
             mass_region2=_f(st["mass2"]),
             total_mass=_f(st["delta_mass"]) + _f(st["mass1"]) + _f(st["mass2"]),
             thm31_support_region1=spectrum.support_intervals(st["grid1"], st["rho1"]),
             thm31_support_region2=spectrum.support_intervals(st["grid2"], st["rho2"]),
             thm32_rho1_support=list(r1), thm32_rho2_support=list(r2),
             ge_d=int(st["eig_ge"].size // round(case["psi_p"])),
             ge_counts={"delta": int(st["ge_delta_count"]), "region1": int(st["ge_count1"]),
                        "region2": int(st["ge_count2"])},
             ge_region2_range=[float(st["eig_ge"][st["eig_ge"] >= st["split"]].min()),
                               float(st["eig_ge"].max())],
             ks_region1=_f(st["ks1"]), ks_region2=_f(st["ks2"]), split=_f(st["split"]))
  if "eig_mc" in st:
    out.update(mc_d=int(st["mc_d"]), mc_ks_region2=_f(st["mc_ks2"]))
  return out


def _onset(taus, test, gen, rise: float) -> float:
  """The onset of the L_gen rise (timescales.rise_onset after the test-loss minimum); NaN
  when it never rises that much or the test loss is not finite throughout."""
  if not np.all(np.isfinite(test)):
    return math.nan
  o = timescales.rise_onset(taus, test, gen, rise=rise)
  return o.value if o.observed else math.nan


def _spread(values) -> float:
  """max / min of the onsets (1: a perfect collapse); NaN when one is missing."""
  v = np.asarray(values, np.float64)
  if not np.all(np.isfinite(v)) or np.any(v <= 0):
    return math.nan
  s = timescales.spread(v)
  return math.nan if s is None else s


def escore_fit(es: dict) -> dict | None:
  """E*_score = c psi_n^slope: the seed mean weighted by the seeds' spread (with more than
  one seed), by timescales.fit_power_law; {"slope", "slope_stderr", "prefactor"}, or None
  with a single psi_n."""
  estar = es["estar"]
  fit = timescales.fit_power_law(es["psi_n"], estar.mean(axis=0), name="psi_n",
                                 y_err=estar.std(axis=0) if estar.shape[0] > 1 else None)
  if fit is None:
    return None
  return {"slope": fit.alpha.value, "slope_stderr": fit.stderrs[0],
          "prefactor": fit.prefactor.value}


def simulation_summary(sim: dict, rf) -> tuple[dict, dict]:
  """Onsets of the L_gen rise (simulation and exact), their collapse, and agreement."""
  taus, tau_mem = sim["taus"], sim["tau_mem"]
  onsets = {"sim": [], "exact": []}
  for r in range(len(rf.psi_n)):
    for kind in onsets:
      test = sim[f"{kind}_test"][:, :, r].mean(axis=1)
      gen = sim[f"{kind}_gen"][:, :, r].mean(axis=1)
      onsets[kind].append(_onset(taus, test, gen, rf.onset_rise))
  out = dict(d=int(sim["d"]), p=int(sim["p"]), n=[int(v) for v in sim["ns"]],
             psi_p=rf.psi_p, psi_n=list(rf.psi_n), t=rf.t, num_seeds=rf.num_seeds,
             optimizer=rf.optimizer, lr=_f(sim["lr"]), dtau=_f(sim["dtau"]),
             num_steps=int(sim["num_steps"]), tau_max=float(taus[-1]),
             tau_mem=[float(v) for v in tau_mem], onset_rise=rf.onset_rise)
  for kind, values in onsets.items():
    v = np.asarray(values)
    out[f"onset_{kind}"] = [float(x) for x in v]
    out[f"onset_over_tau_mem_{kind}"] = [float(x) for x in v / tau_mem]
    out[f"onset_spread_{kind}"] = _spread(v)
    out[f"onset_over_tau_mem_spread_{kind}"] = _spread(v / tau_mem)
  agree = {}
  if np.all(np.isfinite(sim["exact_train"])):
    for k in ("train", "test", "gen", "score"):
      diff = sim[f"sim_{k}"].mean(axis=1) - sim[f"exact_{k}"].mean(axis=1)  # [T, R]
      agree[k] = {"max_abs_diff": float(np.abs(diff).max()),
                  "final_abs_diff": [float(x) for x in np.abs(diff[-1])]}
  out["sim_minus_exact"] = agree
  return out, onsets


def write_report(workdir: str, config, results: dict, timings: dict) -> str:
  """Writes DIR/report/{summary.json, report.md, *.png}; returns the report directory."""
  rf = config.rf
  out_dir = os.path.join(workdir, "report")
  os.makedirs(out_dir, exist_ok=True)

  constants = []
  for row in results["constants"]:
    entry = {k: row[k] for k in ("t", "sigma_x", "delta", "gamma", "a", "b", "v2", "s2", "mu0",
                                 "mu1", "norm2")}
    ref = PAPER_CONSTANTS.get(row["t"])
    if ref is not None and row["sigma_x"] == 1.0 and row["activation"] == "tanh":
      entry["paper_a_b_v2_s2"] = list(ref)
    constants.append(entry)

  spec = [spectrum_summary(c, st, rf.activation)
          for c, st in zip(results["cases"], results["spectrum"])]
  sim_sum, onsets = simulation_summary(results["simulation"], rf)
  sigma_x = spectrum.covariance_spectrum(rf.cov_eigs, rf.cov_weights)[2]
  tau_mem = [{"psi_p": rf.psi_p, "psi_n": pn, "t": rf.t,
              "lambda_min": spectrum.lambda_min(rf.psi_p, pn, rf.t, sigma_x, rf.activation),
              "tau_mem": spectrum.tau_mem(rf.psi_p, pn, rf.t, sigma_x, rf.activation),
              "paper": PAPER_TAU_MEM.get(pn) if (rf.psi_p, rf.t, sigma_x) == (64.0, 0.1, 1.0)
              else None} for pn in rf.psi_n]

  hm = results["heatmap"]
  es = results["escore"]
  fit = escore_fit(es)
  summary = {
      "constants": constants,
      "spectrum": spec,
      "tau_mem": tau_mem,
      "simulation": sim_sum,
      "heatmap": {"taus": hm["taus"].tolist(), "psi_n": hm["psi_n"].tolist(),
                  "psi_p": hm["psi_p"].tolist(), "t": rf.t, "d": rf.heatmap_d,
                  "L_gen": hm["gen"].tolist()},
      "variant": rf.get("variant", "full"),
      "escore": {"psi_p": rf.escore_psi_p, "t": rf.escore_t, "d": rf.escore_d,
                 "psi_n": es["psi_n"].tolist(), "estar_mean": es["estar"].mean(axis=0).tolist(),
                 "estar_std": es["estar"].std(axis=0).tolist(),
                 "tau_star_median": np.median(es["tau_star"], axis=0).tolist(),
                 "fit": fit, "paper_slope": PAPER_ESCORE_SLOPE},
      "timings_s": timings,
  }
  fileio.atomic_write_json(os.path.join(out_dir, "summary.json"), summary)

  rf_figures.spectrum_figure(results["cases"], results["spectrum"],
                          os.path.join(out_dir, "fig4_14_spectrum.png"))
  rf_figures.losses_figure(results["simulation"], rf.psi_n, onsets,
                        os.path.join(out_dir, "fig5ab_losses.png"))
  rf_figures.heatmap_figure(hm, os.path.join(out_dir, "fig5c_heatmap.png"))
  rf_figures.escore_figure(es, fit, os.path.join(out_dir, "fig13_escore.png"))
  fileio.atomic_write_text(os.path.join(out_dir, "report.md"), _markdown(summary))
  return out_dir


def _fmt(x, digits=4) -> str:
  if x is None:
    return "-"
  if isinstance(x, float) and not math.isfinite(x):
    return "n/a"
  return f"{x:.{digits}g}"


def _escore_comparison(es: dict) -> str:
  """The paper's slope, compared only where the setting is the paper's (psi_p = 32)."""
  paper = (f"The paper's slope, {es['paper_slope']}, is measured at psi_p = "
           f"{PAPER_ESCORE_PSI_P:g}, t = 0.01")
  if es["psi_p"] != PAPER_ESCORE_PSI_P or es["t"] != 0.01:
    return (paper + f"; this setting (psi_p = {es['psi_p']:g}, t = {es['t']:g}) is not the "
            "paper's, so the two slopes are not expected to agree.")
  if es["fit"] is None or es["fit"]["slope_stderr"] is None:
    return paper + ": this fit has no standard error (fewer than three psi_n)."
  slope, err = es["fit"]["slope"], es["fit"]["slope_stderr"]
  within = abs(slope - es["paper_slope"]) <= 2 * err
  return (paper + f": {'within' if within else 'outside'} two standard errors of this fit"
          + ("" if es["d"] >= 24 else f" (at d = {es['d']} finite-size effects are large)") + ".")


def _fit_text(fit: dict | None) -> str:
  if fit is None:
    return "no fit (a single psi_n)"
  err = "" if fit["slope_stderr"] is None else f" +- {fit['slope_stderr']:.3f}"
  return f"fitted slope {fit['slope']:.3f}{err}"


def _markdown(s: dict) -> str:
  lines = ["# Random-features study (paper Sect. 3, SM C-D)", ""]
  if s.get("variant") == "quick":
    lines += ["**Quick variant** (`configs/random_features.py:quick`): every stage is shrunk "
              "(small d, few seeds, coarse grids) so that it runs in seconds for tests. Its "
              "numbers show that the pipeline works, not the paper's values: run the full "
              "config for those.", ""]
  lines += ["## Gaussian-equivalence constants", "",
            *table_head("t", "Delta_t", "Gamma_t", "a_t", "b_t", "v_t^2", "s_t^2", "mu_1",
                        "norm^2", "paper (a, b, v^2, s^2)")]
  for c in s["constants"]:
    ref = ", ".join(f"{v:g}" for v in c["paper_a_b_v2_s2"]) if "paper_a_b_v2_s2" in c else "-"
    lines.append(f"| {c['t']:g} | {c['delta']:.6f} | {c['gamma']:.6f} | {c['a']:.6f} | "
                 f"{c['b']:.6f} | {c['v2']:.6g} | {c['s2']:.6g} | {c['mu1']:.6f} | "
                 f"{c['norm2']:.6f} | {ref} |")
  lines += ["", "## Spectrum of U (Fig. 4, Fig. 14)", "", "![spectrum](fig4_14_spectrum.png)", "",
            *table_head("psi_p", "psi_n", "t", "Sigma", "delta mass", "mass rho_1 region",
                        "mass rho_2 region", "total", "Thm 3.1 rho_2 support", "Thm 3.2 rho_1",
                        "Thm 3.2 rho_2", "GE counts (delta/1/2)", "KS 1", "KS 2")]
  for c in s["spectrum"]:
    sup2 = c["thm31_support_region2"]
    sup2 = f"[{sup2[0][0]:.3g}, {sup2[-1][1]:.3g}]" if sup2 else "-"
    lines.append(
        f"| {c['psi_p']:g} | {c['psi_n']:g} | {c['t']:g} | "
        f"{rf_figures.covariance_label(c['cov_eigs'], c.get('cov_weights'))} | "
        f"{c['delta_mass']:.4f} | {c['mass_region1']:.4f} | {c['mass_region2']:.5f} | "
        f"{c['total_mass']:.5f} | {sup2} | [{c['thm32_rho1_support'][0]:.4g}, "
        f"{c['thm32_rho1_support'][1]:.4g}] | [{c['thm32_rho2_support'][0]:.4g}, "
        f"{c['thm32_rho2_support'][1]:.4g}] | {c['ge_counts']['delta']}/{c['ge_counts']['region1']}"
        f"/{c['ge_counts']['region2']} | {c['ks_region1']:.3f} | {c['ks_region2']:.3f} |")
  lines += ["", "Thm 3.1 support intervals of the rho_1 region (a small sub-bulk of mass 1/psi_p "
            "sits below rho_1 at finite psi_n):", ""]
  for c in s["spectrum"]:
    iv = ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in c["thm31_support_region1"])
    lines.append(f"- psi_n = {c['psi_n']:g}, "
                 f"{rf_figures.covariance_label(c['cov_eigs'], c.get('cov_weights'))}: {iv}")
  mc = [c for c in s["spectrum"] if "mc_d" in c]
  if mc:
    c = mc[0]
    lines += ["", f"U from its definition (Monte Carlo over the noise, d = {c['mc_d']}): KS vs "
              f"Theorem 3.1 on the rho_2 bulk {c['mc_ks_region2']:.3f}. At such a small d its "
              "s_t^2 peak is spread out: the noise nonlinearity lives in polynomials of only d "
              "variables, which the Gaussian equivalent's s_t^2 I assumes to be many more than p."]
  lines += ["", "## tau_mem = psi_p / (Delta_t lambda_min) (Theorem 3.2)", "",
            *table_head("psi_p", "psi_n", "t", "lambda_min", "tau_mem", "paper")]
  for r in s["tau_mem"]:
    lines.append(f"| {r['psi_p']:g} | {r['psi_n']:g} | {r['t']:g} | {r['lambda_min']:.5f} | "
                 f"{r['tau_mem']:.1f} | {r['paper'] if r['paper'] else '-'} |")
  sim = s["simulation"]
  lines += ["", "## Training dynamics (Fig. 5A, B)", "", "![losses](fig5ab_losses.png)", "",
            f"{sim['optimizer'].upper()} with d = {sim['d']}, p = {sim['p']}, n = {sim['n']}, "
            f"t = {sim['t']:g}, {sim['num_seeds']} seeds, eta = {sim['lr']:.4g} (time step "
            f"eta/d^2 = {sim['dtau']:.4g}), {sim['num_steps']} steps up to tau = "
            f"{sim['tau_max']:.4g}. Onset: L_gen {sim['onset_rise']:g} above its value at the "
            "test-loss minimum.", "",
            *table_head("psi_n", "tau_mem", "onset (sim)", "onset / tau_mem (sim)",
                        "onset (exact)", "onset / tau_mem (exact)")]
  for i, pn in enumerate(sim["psi_n"]):
    lines.append(f"| {pn:g} | {sim['tau_mem'][i]:.0f} | {_fmt(sim['onset_sim'][i])} | "
                 f"{_fmt(sim['onset_over_tau_mem_sim'][i])} | {_fmt(sim['onset_exact'][i])} | "
                 f"{_fmt(sim['onset_over_tau_mem_exact'][i])} |")
  lines += ["", f"Spread (max/min) of the onsets: {_fmt(sim['onset_spread_sim'])} in tau, "
            f"{_fmt(sim['onset_over_tau_mem_spread_sim'])} in tau/tau_mem (simulation); "
            f"{_fmt(sim['onset_spread_exact'])} and {_fmt(sim['onset_over_tau_mem_spread_exact'])}"
            " (closed form)."]
  if sim["sim_minus_exact"]:
    lines += ["", "Simulation minus closed-form mean iterate (seed means), max over tau: " +
              ", ".join(f"{k} {v['max_abs_diff']:.3g}" for k, v in sim["sim_minus_exact"].items()) +
              ". The gap is the excess loss of the gradient noise (one noise draw per point and "
              "step), which the mean iterate does not carry; it shrinks with the learning rate."]
  hm = s["heatmap"]
  lines += ["", "## L_gen heat map (Fig. 5C)", "", "![heatmap](fig5c_heatmap.png)", "",
            f"Gaussian-equivalent closed form (gradient flow), d = {hm['d']}, t = {hm['t']:g}."]
  es = s["escore"]
  lines += ["", "## E*_score vs psi_n (Fig. 13)", "", "![escore](fig13_escore.png)", "",
            f"psi_p = {es['psi_p']:g}, t = {es['t']:g}, d = {es['d']} (Gaussian-equivalent "
            f"closed form, gradient flow): {_fit_text(es['fit'])}. " + _escore_comparison(es),
            "",
            *table_head("psi_n", "E*_score", "std", "tau* (median)")]
  for i, pn in enumerate(es["psi_n"]):
    lines.append(f"| {pn:g} | {es['estar_mean'][i]:.4g} | {es['estar_std'][i]:.2g} | "
                 f"{es['tau_star_median'][i]:.4g} |")
  lines += ["", "## Wall time", "", ", ".join(
      f"{k} {v['seconds']:.1f} s" + (" (earlier run)" if v["cached"] else "")
      for k, v in s["timings_s"].items()), ""]
  return "\n".join(lines)
