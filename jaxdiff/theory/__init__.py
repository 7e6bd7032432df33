"""Random-features theory of the paper's Sect. 3 and SM C-D, runnable and checked.

  from jaxdiff import theory
  theory.gep_constants(0.01)                       # a_t, b_t, v_t^2, s_t^2, mu_1, ...
  theory.spectral_density(lams, 64, 8, 0.01)       # Theorem 3.1 density of U
  theory.tau_mem(64, 8, 0.1)                       # psi_p / (Delta_t lambda_min) = 5899

Modules: constants (Gauss-Hermite GEP constants), spectrum (Theorems 3.1 and 3.2),
empirical (U, V, U_tilde from their definitions and Gaussian equivalents), dynamics
(closed-form training curves), simulation (gradient descent as in the paper). Pure math:
the study's driver is jaxdiff.rf_study, its onsets, fits, figures and report are
jaxdiff.findings' (timescales, rf_figures, rf_report).
"""

from jaxdiff.theory.constants import GEPConstants, gep_constants
from jaxdiff.theory.spectrum import (delta_mass, lambda_min, rho1_density, rho1_support,
                                     rho2_density, rho2_support, solve_saddle_point,
                                     spectral_density, tau_mem)

__all__ = [
    "GEPConstants", "gep_constants", "delta_mass", "lambda_min", "rho1_density",
    "rho1_support", "rho2_density", "rho2_support", "solve_saddle_point", "spectral_density",
    "tau_mem",
]
