"""The random-features study: theory and simulation side by side, in one command.

  python -m jaxdiff.main --config=configs/random_features.py --workdir=DIR

Stages (each cached as DIR/stages/<name>.npz once finished, so a rerun on the same
workdir redoes only what is missing; the workdir's config.json must match the config):

  constants        GEP constants over rf.constants_t (Gauss-Hermite; instant, not cached)
  spectrum_<i>     Theorem 3.1 density vs the eigenvalue histogram of the Gaussian-
                   equivalent U at d = rf.spectrum_d (and of U from its definition at a
                   small d), with Theorem 3.2's closed forms (Fig. 4, Fig. 14)
  simulation       gradient descent over the psi_n grid and seeds in one program, with the
                   closed-form mean-iterate curves of the same matrices (Fig. 5A, B)
  heatmap          L_gen over (psi_n, psi_p) at fixed tau, Gaussian-equivalent closed form
                   (Fig. 5C)
  escore           E*_score = min_tau E_score vs psi_n and its power-law exponent (Fig. 13)

then DIR/report/ (figures, summary.json, report.md) from jaxdiff.findings.rf_report.

The driver of the study, beside jaxdiff.train (the sweep's): it claims the workdir, caches
the stages and shows progress; the math it runs is jaxdiff.theory's (pure: no files, no
plots, no progress bars) and the report is jaxdiff.findings'.
"""

from __future__ import annotations

import io
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
from tqdm import tqdm

from jaxdiff import checkpointing
from jaxdiff import fileio
from jaxdiff.errors import ConfigError
from jaxdiff.models import random_features
from jaxdiff.theory import dynamics
from jaxdiff.theory import empirical
from jaxdiff.theory import simulation
from jaxdiff.theory import spectrum
from jaxdiff.theory.constants import gep_constants

STAGE_DIR = "stages"


# ----------------------------------------------------------------------------- config


def _check(cond: bool, key: str, value, expected: str) -> None:
  if not cond:
    raise ConfigError(key, value, expected)


def _positive_tuple(rf, key: str, increasing: bool = False, allow_empty: bool = False) -> None:
  value = rf[key]
  ok = isinstance(value, (tuple, list)) and (allow_empty or len(value) > 0)
  ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                  for v in value)
  if ok and increasing:
    ok = all(a < b for a, b in zip(value, value[1:]))
  what = "strictly increasing positive numbers" if increasing else "positive numbers"
  _check(ok, f"rf.{key}", value, f"a {'possibly empty ' if allow_empty else 'non-empty '}tuple "
         f"of {what}")


def _positive(rf, key: str, integer: bool = False, allow_zero: bool = False) -> None:
  value = rf[key]
  kind = int if integer else (int, float)
  ok = isinstance(value, kind) and not isinstance(value, bool)
  ok = ok and (value >= 0 if allow_zero else value > 0)
  _check(ok, f"rf.{key}", value, f"a {'non-negative' if allow_zero else 'positive'} "
         f"{'integer' if integer else 'number'}")


def validate_config(config) -> None:
  """Raises ConfigError(key, value, expected) for the first bad value of the study."""
  _check(config.get("experiment") == "random_features", "experiment",
         config.get("experiment"), "'random_features' for jaxdiff.rf_study")
  _check(isinstance(config.get("seed"), int) and config.seed >= 0, "seed", config.get("seed"),
         "a non-negative integer")
  _check("rf" in config, "rf", None, "the rf block of configs/random_features.py")
  rf = config.rf
  _check(rf.activation in random_features.ODD_ACTIVATIONS, "rf.activation", rf.activation,
         f"one of {random_features.ODD_ACTIVATIONS} (the theory assumes E sigma(z) = 0)")
  for key in ("cov_eigs", "cov_weights", "constants_t", "spectrum_psi_n", "heatmap_taus",
              "heatmap_psi_n", "heatmap_psi_p", "escore_psi_n"):
    _positive_tuple(rf, key, increasing=key not in ("cov_eigs", "cov_weights"))
  _positive_tuple(rf, "psi_n", increasing=True)
  _check(len(rf.cov_eigs) == len(rf.cov_weights), "rf.cov_weights", rf.cov_weights,
         f"as many weights as rf.cov_eigs ({len(rf.cov_eigs)})")
  _positive_tuple(rf, "spectrum_cov_eigs", allow_empty=True)
  _positive_tuple(rf, "spectrum_cov_weights", allow_empty=True)
  _check(len(rf.spectrum_cov_eigs) == len(rf.spectrum_cov_weights), "rf.spectrum_cov_weights",
         rf.spectrum_cov_weights, "as many weights as rf.spectrum_cov_eigs")
  for key in ("spectrum_psi_p", "spectrum_t", "psi_p", "t", "tau_max", "onset_rise",
              "escore_psi_p", "escore_t"):
    _positive(rf, key)
  _positive(rf, "lr", allow_zero=True)
  for key in ("spectrum_d", "spectrum_points", "spectrum_mc_draws", "d", "num_seeds",
              "num_times", "train_noise_draws", "moment_samples", "test_samples",
              "heatmap_d", "heatmap_seeds", "escore_d", "escore_seeds", "escore_num_taus"):
    _positive(rf, key, integer=True)
  _positive(rf, "spectrum_mc_d", integer=True, allow_zero=True)
  _positive(rf, "num_steps", integer=True, allow_zero=True)
  _check(rf.optimizer in ("gd", "adam"), "rf.optimizer", rf.optimizer, "'gd' or 'adam'")
  if rf.optimizer == "adam":
    # The authors used GD's learning rate for Adam too (paper.md 4.2); require one.
    _check(rf.lr > 0, "rf.lr", rf.lr, "an explicit Adam learning rate, e.g. 1e-3")
    _check(rf.num_steps > 0, "rf.num_steps", rf.num_steps,
           "an explicit number of Adam steps (tau_max only sets gradient descent's)")
  _check(rf.num_times >= 2, "rf.num_times", rf.num_times, "at least 2")
  _check(rf.escore_num_taus >= 3, "rf.escore_num_taus", rf.escore_num_taus, "at least 3")
  # Every n = psi_n d and p = psi_p d must be a whole number of points / features.
  for dkey, pkeys in (("d", ("psi_p", "psi_n")),
                      ("spectrum_d", ("spectrum_psi_p", "spectrum_psi_n")),
                      ("heatmap_d", ("heatmap_psi_p", "heatmap_psi_n")),
                      ("escore_d", ("escore_psi_p", "escore_psi_n"))):
    d = rf[dkey]
    for pkey in pkeys:
      values = rf[pkey] if isinstance(rf[pkey], (tuple, list)) else (rf[pkey],)
      for v in values:
        _check(abs(v * d - round(v * d)) < 1e-9 and round(v * d) >= 1, f"rf.{pkey}", rf[pkey],
               f"values whose product with rf.{dkey} = {d} is a positive integer")
  if rf.optimizer == "gd":
    # Gradient descent on a quadratic is stable iff 2 Delta lambda_max dtau / psi_p < 2;
    # lambda_max <= ||sigma||^2 psi_p (1 + 1/sqrt(psi_n))^2 (1 + 1/sqrt(psi_p))^2 roughly.
    c = gep_constants(rf.t, _sigma_x(rf.cov_eigs, rf.cov_weights), rf.activation)
    dtau = time_step(rf)
    bound = (c.norm2 * rf.psi_p * (1 + 1 / math.sqrt(rf.psi_n[0]))**2
             * (1 + 1 / math.sqrt(rf.psi_p))**2)
    limit = 1.25 * rf.psi_p / (c.delta * bound)
    _check(dtau < limit, "rf.lr", rf.lr,
           f"a step eta / d^2 below about {limit:.3g}, i.e. eta < {limit * rf.d**2:.4g} "
           f"(gradient descent diverges beyond it; rf.lr = 0 means the authors' step "
           f"{1e-2 * rf.psi_p / c.delta:.3g})")


def _sigma_x(cov_eigs, cov_weights) -> float:
  return spectrum.covariance_spectrum(cov_eigs, cov_weights)[2]


def time_step(rf) -> float:
  """dtau = eta / d^2; rf.lr = 0 gives the authors' 1e-2 d / Delta_t, i.e. 1e-2 psi_p / Delta_t."""
  if rf.lr > 0:
    return rf.lr / rf.d**2
  delta = -math.expm1(-2 * rf.t)
  return 1e-2 * rf.psi_p / delta


# ----------------------------------------------------------------------------- caching


def _stage_path(workdir: str, name: str) -> str:
  return os.path.join(workdir, STAGE_DIR, f"{name}.npz")


def cached(workdir: str, name: str, compute: Callable[[], dict], timings: dict) -> dict:
  """The arrays of a finished stage, computing and saving them (atomically) if missing.

  timings[name] gets {"seconds": compute time, "cached": whether it was read back}.
  """
  path = _stage_path(workdir, name)
  if os.path.exists(path):
    with np.load(path) as f:
      out = {k: f[k] for k in f.files}
    timings[name] = {"seconds": float(out.pop("_seconds", np.nan)), "cached": True}
    return out
  start = time.time()
  out = {k: np.asarray(v) for k, v in compute().items()}
  seconds = round(time.time() - start, 2)
  buf = io.BytesIO()
  np.savez(buf, _seconds=seconds, **out)
  fileio.atomic_write_bytes(path, buf.getvalue())
  timings[name] = {"seconds": seconds, "cached": False}
  return out


# ----------------------------------------------------------------------------- stages


def constants_table(rf) -> list[dict]:
  sigma_x = _sigma_x(rf.cov_eigs, rf.cov_weights)
  return [gep_constants(t, sigma_x, rf.activation).as_dict() for t in rf.constants_t]


def spectrum_cases(rf) -> list[dict]:
  """(psi_p, psi_n, t, covariance) of each spectrum figure panel."""
  cases = [dict(psi_p=rf.spectrum_psi_p, psi_n=pn, t=rf.spectrum_t, cov_eigs=tuple(rf.cov_eigs),
                cov_weights=tuple(rf.cov_weights)) for pn in rf.spectrum_psi_n]
  if len(rf.spectrum_cov_eigs):
    cases.append(dict(psi_p=rf.spectrum_psi_p, psi_n=rf.spectrum_psi_n[0], t=rf.spectrum_t,
                      cov_eigs=tuple(rf.spectrum_cov_eigs),
                      cov_weights=tuple(rf.spectrum_cov_weights)))
  return cases


def spectrum_regions(psi_p, psi_n, t, cov_eigs, cov_weights, activation, num):
  """Two grids: [s^2, split] (delta excluded, log-spaced in lambda - s^2) and [split, top].

  split sits between the rho_1 and rho_2 bulks, from Theorem 3.2's edges widened by the
  finite-psi_n Marchenko-Pastur factors (1 -+ 1/sqrt(psi_n))^2 of the data covariance.
  """
  sigma_x = _sigma_x(cov_eigs, cov_weights)
  c = gep_constants(t, sigma_x, activation)
  r1_hi = spectrum.rho1_support(psi_p, psi_n, t, sigma_x, activation)[1]
  r2_lo, r2_hi = spectrum.rho2_support(psi_p, t, cov_eigs, cov_weights, activation)
  base = c.s2 + c.v2
  lo2 = base + (r2_lo - base) * max(1 - 1 / math.sqrt(psi_n), 0.0)**2 * 0.8
  hi2 = base + (r2_hi - base) * (1 + 1 / math.sqrt(psi_n))**2 * 1.25
  split = max(math.sqrt(r1_hi * max(lo2, r1_hi)), 1.5 * r1_hi)
  grid1 = c.s2 + np.geomspace(1e-7 * max(c.s2, 1e-3), split - c.s2, num)
  grid2 = np.linspace(split, max(hi2, 2 * split), num)
  return c, grid1, grid2, split


def compute_spectrum_case(rf, case: dict, key: jax.Array, rng: np.random.Generator,
                          with_mc: bool) -> dict:
  """Theory (Theorems 3.1, 3.2) and eigenvalue histograms for one (psi_p, psi_n, t, Sigma).

  rng draws the Gaussian-equivalent U; key the Monte Carlo U from its definition.
  """
  psi_p, psi_n, t = case["psi_p"], case["psi_n"], case["t"]
  ce, cw = case["cov_eigs"], case["cov_weights"]
  c, grid1, grid2, split = spectrum_regions(psi_p, psi_n, t, ce, cw, rf.activation,
                                            rf.spectrum_points)
  rho1 = spectrum.spectral_density(grid1, psi_p, psi_n, t, ce, cw, rf.activation)
  rho2 = spectrum.spectral_density(grid2, psi_p, psi_n, t, ce, cw, rf.activation)
  w1 = psi_n / psi_p if psi_p > psi_n else 1 - 1 / psi_p
  thm32_1 = w1 * spectrum.rho1_density(grid1, psi_p, psi_n, t, c.sigma_x, rf.activation)
  thm32_2 = spectrum.rho2_density(grid2, psi_p, t, ce, cw, rf.activation) * min(1.0, 1 / psi_p)
  d = rf.spectrum_d
  diag = empirical.covariance_diagonal(d, ce, cw)
  c_d = gep_constants(t, math.sqrt(diag.mean()), rf.activation)
  ev = empirical.ge_u_eigenvalues(rng, d, psi_p, psi_n, c_d, diag)
  out = dict(grid1=grid1, rho1=rho1, grid2=grid2, rho2=rho2, thm32_rho1=thm32_1,
             thm32_rho2=thm32_2, eig_ge=ev, split=split, s2=c.s2,
             delta_mass=spectrum.delta_mass(psi_p, psi_n),
             mass1=np.trapezoid(np.nan_to_num(rho1), grid1),
             mass2=np.trapezoid(np.nan_to_num(rho2), grid2))
  tol = 1e-9 * max(1.0, split)
  ev1 = ev[(ev > c_d.s2 + tol) & (ev < split)]
  ev2 = ev[ev >= split]
  out.update(ge_delta_count=np.sum(np.abs(ev - c_d.s2) <= tol), ge_count1=ev1.size,
             ge_count2=ev2.size, ks1=empirical.ks_distance(ev1, grid1, rho1),
             ks2=empirical.ks_distance(ev2, grid2, rho2))
  if with_mc:
    dm = rf.spectrum_mc_d
    p, n = int(round(psi_p * dm)), int(round(psi_n * dm))
    kw, kx, kn = jax.random.split(key, 3)
    diag_m = empirical.covariance_diagonal(dm, ce, cw)
    w = random_features.init_weights(kw, p, dm)
    x = empirical.sample_data(kx, n, diag_m)
    u, _ = empirical.mc_train_moments(kn, w, x, t, rf.spectrum_mc_draws, rf.activation)
    ev_mc = np.linalg.eigvalsh(np.asarray(u, np.float64))
    # At small d the noise part of U is not s_t^2 I (its nonlinearity lives in polynomials
    # of only d noise variables) and the Monte Carlo average smears it further, so only the
    # rho_2 bulk is compared by a number; the figure shows the rest.
    out.update(eig_mc=ev_mc, mc_d=dm,
               mc_ks2=empirical.ks_distance(ev_mc[ev_mc >= split], grid2, rho2))
  return out


def compute_simulation(rf, key: jax.Array) -> dict:
  """Fig. 5A, B: GD (or Adam) on every psi_n and seed, plus the exact mean-iterate curves."""
  sigma_x = _sigma_x(rf.cov_eigs, rf.cov_weights)
  c = gep_constants(rf.t, sigma_x, rf.activation)
  d, num_seeds = rf.d, rf.num_seeds
  p = int(round(rf.psi_p * d))
  ns = tuple(int(round(v * d)) for v in rf.psi_n)
  diag = empirical.covariance_diagonal(d, rf.cov_eigs, rf.cov_weights)
  dtau = time_step(rf)
  lr = dtau * d * d
  num_steps = rf.num_steps or int(math.ceil(rf.tau_max / dtau))
  steps = simulation.eval_steps(num_steps, rf.num_times)
  kw, kx, km, kt, ks = jax.random.split(key, 5)
  w = jnp.stack([random_features.init_weights(jax.random.fold_in(kw, s), p, d)
                 for s in range(num_seeds)])
  x = jnp.stack([empirical.sample_data(jax.random.fold_in(kx, s), ns[-1], diag)
                 for s in range(num_seeds)])
  u_tr, v_tr, tests = [], [], []
  bar = tqdm(total=num_seeds * (len(ns) + 1), desc="rf moments", leave=False)
  for s in range(num_seeds):
    us, vs = [], []
    for r, n in enumerate(ns):
      draws = max(rf.train_noise_draws, -(-rf.moment_samples // n))
      u, v = empirical.mc_train_moments(jax.random.fold_in(km, s * len(ns) + r), w[s], x[s, :n],
                                        rf.t, draws, rf.activation)
      us.append(u)
      vs.append(v)
      bar.update()
    u_tr.append(jnp.stack(us))
    v_tr.append(jnp.stack(vs))
    tests.append(empirical.mc_test_moments(jax.random.fold_in(kt, s), w[s], rf.t,
                                           rf.test_samples, diag, rf.activation))
    bar.update()
  bar.close()
  moments = simulation.Moments(
      u_train=jnp.stack(u_tr), v_train=jnp.stack(v_tr),
      u_test=jnp.stack([m[0] for m in tests]), v_test=jnp.stack([m[1] for m in tests]),
      c_test=jnp.stack([m[2] for m in tests]), e_test=jnp.stack([m[3] for m in tests]))
  spec = simulation.TrainSpec(ns=ns, t=rf.t, lr=lr, optimizer=rf.optimizer,
                              activation=rf.activation)
  sim = simulation.simulate(ks, w, x, moments, spec, steps,
                            progress=lambda it: tqdm(it, desc="rf simulation", leave=False))
  taus = steps * dtau
  # Exact curves of the same matrices: on the evaluation times (for the agreement numbers)
  # and on a dense grid (for the figure). Gradient descent only: Adam has no closed form.
  dense_steps = np.unique(np.concatenate(
      [[0], np.round(np.geomspace(1, num_steps, 200)).astype(np.int64)]))
  names = ("train", "test", "gen", "score")
  exact = {k: np.full((len(steps), num_seeds, len(ns)), np.nan) for k in names}
  dense = {k: np.full((len(dense_steps), num_seeds, len(ns)), np.nan) for k in names}
  if rf.optimizer == "gd":
    for s in range(num_seeds):
      ut, vt, ct, e = (np.asarray(a, np.float64) for a in tests[s])
      for r in range(len(ns)):
        prob = dynamics.problem_from_dense(moments.u_train[s, r], moments.v_train[s, r], ut, vt,
                                           ct, float(e), c.delta, p / d)
        for grid_steps, target in ((steps, exact), (dense_steps, dense)):
          cur = prob.curves(grid_steps * dtau, dtau)
          for k in names:
            target[k][:, s, r] = cur[k]
  out = {f"sim_{k}": sim[k] for k in names}
  out.update({f"exact_{k}": exact[k] for k in names})
  out.update({f"dense_{k}": dense[k] for k in names})
  out.update(taus=taus, steps=steps, dense_taus=dense_steps * dtau, dtau=dtau, lr=lr,
             num_steps=num_steps, ns=np.asarray(ns), p=p, d=d,
             tau_mem=np.asarray([spectrum.tau_mem(rf.psi_p, v, rf.t, sigma_x, rf.activation)
                                 for v in rf.psi_n]))
  return out


def _ge_problem(rng, d, psi_p, psi_n, t, cov_eigs, cov_weights, activation):
  p, n = int(round(psi_p * d)), int(round(psi_n * d))
  diag = empirical.covariance_diagonal(d, cov_eigs, cov_weights)
  c = gep_constants(t, math.sqrt(diag.mean()), activation)
  w, x = empirical.draw_ge_inputs(rng, d, p, n, diag)
  return dynamics.problem_from_ge(empirical.ge_factor(rng, w, x, c), w, c, diag)


def _rng(seed: int, *path: int) -> np.random.Generator:
  """A numpy Generator for one (stage, cell) of the study, independent of the others."""
  return np.random.default_rng([seed, *path])


def compute_heatmap(rf, seed: int) -> dict:
  """Fig. 5C: L_train, L_test, L_gen at rf.heatmap_taus over (psi_n, psi_p), gradient flow."""
  taus = np.asarray(rf.heatmap_taus, np.float64)
  shape = (len(taus), len(rf.heatmap_psi_n), len(rf.heatmap_psi_p))
  out = {k: np.zeros(shape) for k in ("train", "test", "gen")}
  cells = [(i, j, s) for i in range(shape[1]) for j in range(shape[2])
           for s in range(rf.heatmap_seeds)]
  for i, j, s in tqdm(cells, desc="rf heat map", leave=False):
    cur = _ge_problem(_rng(seed, 3, i, j, s), rf.heatmap_d, rf.heatmap_psi_p[j],
                      rf.heatmap_psi_n[i], rf.t, rf.cov_eigs, rf.cov_weights,
                      rf.activation).curves(taus)
    for name in out:
      out[name][:, i, j] += cur[name] / rf.heatmap_seeds
  return dict(taus=taus, psi_n=np.asarray(rf.heatmap_psi_n), psi_p=np.asarray(rf.heatmap_psi_p),
              **out)


def compute_escore(rf, seed: int) -> dict:
  """Fig. 13: E_score(tau) and its minimum over tau for every psi_n and seed (closed form)."""
  taus = np.geomspace(1e-1, 1e7, rf.escore_num_taus)
  psi_n = np.asarray(rf.escore_psi_n)
  curves = np.zeros((rf.escore_seeds, len(psi_n), len(taus)))
  cells = [(s, i) for s in range(rf.escore_seeds) for i in range(len(psi_n))]
  for s, i in tqdm(cells, desc="rf E*_score", leave=False):
    prob = _ge_problem(_rng(seed, 4, s, i), rf.escore_d, rf.escore_psi_p, psi_n[i],
                       rf.escore_t, rf.cov_eigs, rf.cov_weights, rf.activation)
    curves[s, i] = prob.curves(taus)["score"]
  return dict(taus=taus, psi_n=psi_n, curves=curves, estar=curves.min(axis=2),
              tau_star=taus[np.argmin(curves, axis=2)])


# ----------------------------------------------------------------------------- driver


def run_study(config, workdir: str) -> str:
  """Runs (or resumes) the study in `workdir`; returns the report directory.

  Raises:
    ConfigError: a bad rf.* value (checked before anything is computed or written).
    WorkdirError: the workdir holds another config or is not a jaxdiff workdir.
  """
  validate_config(config)
  checkpointing.claim_workdir(workdir, config.to_dict())
  # NumPy's LAPACK runs single-threaded: beside XLA's own thread pool, multithreaded
  # OpenBLAS eigensolvers were up to 10x slower on the shared 2-core machine (measured:
  # eigvalsh of a 3300 x 3300 matrix 2.7 s with 1 thread, 26 s with 2).
  with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
    return _run_stages(config, workdir)


def _run_stages(config, workdir: str) -> str:
  rf = config.rf
  root = jax.random.key(config.seed)
  timings: dict = {}
  start = time.time()
  results = {"constants": constants_table(rf), "spectrum": [], "cases": spectrum_cases(rf)}
  for i, case in enumerate(tqdm(results["cases"], desc="rf spectra", leave=False)):
    results["spectrum"].append(cached(
        workdir, f"spectrum_{i}",
        lambda i=i, case=case: compute_spectrum_case(
            rf, case, jax.random.fold_in(jax.random.fold_in(root, 1), i),
            _rng(config.seed, 1, i), with_mc=(i == 0 and rf.spectrum_mc_d > 0)), timings))
  results["simulation"] = cached(
      workdir, "simulation", lambda: compute_simulation(rf, jax.random.fold_in(root, 2)), timings)
  results["heatmap"] = cached(
      workdir, "heatmap", lambda: compute_heatmap(rf, config.seed), timings)
  results["escore"] = cached(
      workdir, "escore", lambda: compute_escore(rf, config.seed), timings)
  timings["total"] = {"seconds": round(time.time() - start, 2), "cached": False}
  from jaxdiff.findings import rf_report  # matplotlib only when writing the report
  return rf_report.write_report(workdir, config, results, timings)
