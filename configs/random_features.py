"""The random-features study (paper Sect. 3, SM C-D): theory and simulation side by side.

  python -m jaxdiff.main --config=configs/random_features.py --workdir=DIR
  python -m jaxdiff.main --config=configs/random_features.py:quick --workdir=DIR  # tests

Writes DIR/config.json, DIR/stages/*.npz (finished stages, reused by a rerun on the same
workdir) and DIR/report/ (report.md, summary.json, fig4_14_spectrum.png,
fig5ab_losses.png, fig5c_heatmap.png, fig13_escore.png, each also as PDF). The quick
variant says so in its report (`rf.variant`).

Sized for this project's 2-core CPU: measured 1.2 minutes wall time while the machine
was shared with other jobs (load ~3.5): simulation 48 s, the three spectra 17 s,
E*_score 1.5 s, heat map 0.5 s, report 5 s; peak memory 1.1 GB. The quick variant takes
about 20 s.

Expected results: GEP constants equal to paper.md's table (t = 0.01: a_t 0.605706,
b_t 0.085233, v_t^2 0.025542, s_t^2 0.001874); the Theorem 3.1 density of U integrates
to 1 with the delta mass 1 - (1 + psi_n)/psi_p at s_t^2, its rho_2 spans [9.85, 44.7] at
(psi_p, psi_n, t) = (64, 8, 0.01) (paper: about [10, 45]) and it matches the eigenvalue
histogram of the d = 100 Gaussian-equivalent U (Kolmogorov-Smirnov 0.004 on rho_1,
0.02 on rho_2); tau_mem = 2556 / 5899 / 12878 / 22138 at psi_p = 64, t = 0.1; in the
simulation (d = 16) the onsets of the L_gen rise spread over ~40x in tau but ~5x in
tau / tau_mem; the closed-form mean-iterate curves follow the simulated ones up to the
gradient-noise excess of the authors' large learning rate (~0.03 on L_gen);
E*_score ~ psi_n^-0.53 (paper: -0.59).

Time is in the paper's units tau = k eta / d^2 with the 1/sqrt(p) parameterisation.
"""

import ml_collections


def get_config(arg=None):
  """The study's defaults; `arg="quick"` shrinks every stage for tests (~20 s)."""
  config = ml_collections.ConfigDict()
  # Dispatch key of jaxdiff.main.
  config.experiment = "random_features"
  # Root seed: every random draw of the study (W, data, noise, Omega) derives from it.
  config.seed = 0

  config.rf = rf = ml_collections.ConfigDict()
  # "full" (the study) or "quick" (every stage shrunk for tests; its report says so).
  rf.variant = "quick" if arg == "quick" else "full"
  # Activation sigma of the random features (theory needs an odd one: tanh | erf).
  rf.activation = "tanh"
  # Data covariance as a discrete spectrum: its eigenvalues (Sigma = I here)...
  rf.cov_eigs = (1.0,)
  # ... and the fraction of the d directions carrying each (normalised to sum 1).
  rf.cov_weights = (1.0,)
  # Diffusion times of the GEP-constants table in the report.
  rf.constants_t = (0.01, 0.1, 0.5, 1.0)

  # ---------------------------------------------------------------- spectrum (Fig. 4, 14)
  # psi_p of the spectrum figures.
  rf.spectrum_psi_p = 64.0
  # psi_n values of the spectrum figures (Fig. 14: 8 and 32), with Sigma from rf.cov_*.
  rf.spectrum_psi_n = (8.0, 32.0)
  # Diffusion time of the spectrum figures.
  rf.spectrum_t = 0.01
  # Eigenvalues of a second data spectrum shown at spectrum_psi_n[0] (Fig. 4 right); () = none.
  rf.spectrum_cov_eigs = (0.5, 1.5)
  # Their weights.
  rf.spectrum_cov_weights = (0.5, 0.5)
  # d of the Gaussian-equivalent U whose eigenvalue histogram is compared with theory.
  rf.spectrum_d = 100
  # Grid points of the theoretical density in each bulk region.
  rf.spectrum_points = 3000
  # d of a histogram of U built from its definition (Monte Carlo over noise); 0 = skip.
  rf.spectrum_mc_d = 16
  # Noise draws per training point for that Monte Carlo U.
  rf.spectrum_mc_draws = 400

  # ---------------------------------------------------------------- simulation (Fig. 5A, B)
  # p / d of the simulated model.
  rf.psi_p = 64.0
  # n / d of the simulated runs (nested training sets), strictly increasing.
  rf.psi_n = (4.0, 8.0, 16.0, 32.0)
  # Diffusion time of the simulation, the heat map and tau_mem.
  rf.t = 0.1
  # Data dimension of the simulation (the paper: 100; the cost grows as d^3).
  rf.d = 16
  # Independent draws (W, data, noise) trained side by side on a vmapped axis.
  rf.num_seeds = 2
  # gd (the paper) | adam (Fig. 15).
  rf.optimizer = "gd"
  # Learning rate eta in the paper's parameterisation; 0 = the authors' choice
  # 1e-2 d / Delta_t translated to it, i.e. a time step eta / d^2 = 1e-2 psi_p / Delta_t.
  rf.lr = 0.0
  # Last simulated time tau_max (units k eta / d^2); steps = ceil(tau_max d^2 / eta).
  rf.tau_max = 4.0e4
  # Optimizer steps instead (required for adam); 0 = derived from tau_max.
  rf.num_steps = 0
  # Log-spaced evaluation times (plus tau = 0).
  rf.num_times = 48
  # Noise draws per training point for the train-loss matrices (the paper: N = 100).
  rf.train_noise_draws = 100
  # At least this many (point, noise) samples per run for U (also the exact curves' U).
  rf.moment_samples = 30000
  # Fresh samples of P_t for the test loss and score error (the paper: 10,000).
  rf.test_samples = 10000
  # Memorization onset: first time after the test-loss minimum at which L_gen has grown
  # by this much above its value at that minimum.
  rf.onset_rise = 0.1

  # ---------------------------------------------------------------- heat map (Fig. 5C)
  # Times tau of the L_gen heat maps (Gaussian-equivalent closed form, t = rf.t).
  rf.heatmap_taus = (1.0e3, 1.0e4)
  # psi_n axis of the heat maps.
  rf.heatmap_psi_n = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
  # psi_p axis of the heat maps.
  rf.heatmap_psi_p = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
  # d of the heat-map matrices.
  rf.heatmap_d = 16
  # Independent draws averaged per cell.
  rf.heatmap_seeds = 1

  # ---------------------------------------------------------------- E*_score (Fig. 13)
  # psi_p of E*_score = min_tau of the closed-form score error (Gaussian equivalent).
  rf.escore_psi_p = 32.0
  # psi_n values of the E*_score power-law fit.
  rf.escore_psi_n = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
  # Diffusion time of the E*_score study.
  rf.escore_t = 0.01
  # d of its matrices.
  rf.escore_d = 24
  # Independent draws (the paper: 10 runs; error bars 3 x std).
  rf.escore_seeds = 10
  # Log-spaced times searched for the minimum, in [1e-1, 1e7].
  rf.escore_num_taus = 241

  if arg == "quick":
    # Fig. 5's psi_p, psi_n and t at d = 8, small spectra and grids.
    rf.spectrum_psi_p = 16.0
    rf.spectrum_psi_n = (4.0,)
    rf.spectrum_d = 40
    rf.spectrum_points = 800
    rf.spectrum_mc_d = 8
    rf.spectrum_mc_draws = 100
    rf.d = 8
    rf.tau_max = 2.0e4
    rf.num_times = 32
    rf.moment_samples = 8000
    rf.test_samples = 4000
    rf.heatmap_taus = (1.0e3,)
    rf.heatmap_psi_n = (1.0, 4.0, 16.0)
    rf.heatmap_psi_p = (2.0, 8.0, 32.0)
    rf.heatmap_d = 8
    rf.escore_psi_p = 16.0
    rf.escore_psi_n = (1.0, 2.0, 4.0, 8.0)
    rf.escore_d = 8
    rf.escore_seeds = 3
  elif arg not in (None, ""):
    raise ValueError(f"configs/random_features.py: unknown argument {arg!r} (use 'quick')")
  return config
