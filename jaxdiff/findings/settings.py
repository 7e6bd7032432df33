"""The report's settings: config.report.* of a workdir's config.json over the defaults.

The defaults are configs/base.py's report section (read from that file, the one place
where every key is defined with its comment), less the keys that steer the trainer rather
than the analysis (`NOT_SETTINGS`). A workdir written before a key existed gets the key's
default; an old config.json is never rewritten.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any, Mapping

from jaxdiff import fileio
from jaxdiff.errors import ConfigError, JaxdiffError
from jaxdiff.findings import timescales

# configs/ ships beside the jaxdiff package (as jaxdiff.main's --help lists it).
BASE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs", "base.py")
# config.report keys that are not analysis settings (auto: write the report after training).
NOT_SETTINGS = ("auto",)


@functools.lru_cache(maxsize=1)
def _base_report() -> tuple[tuple[str, Any], ...]:
  if not os.path.isfile(BASE_CONFIG):
    raise JaxdiffError(f"{BASE_CONFIG} is missing: the report's default settings are its "
                       "report section (run jaxdiff from its source tree)")
  spec = importlib.util.spec_from_file_location("_jaxdiff_base_config", BASE_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  report = module.get_config().report.to_dict()
  return tuple((k, v) for k, v in report.items() if k not in NOT_SETTINGS)


def defaults() -> dict[str, Any]:
  """The default settings: configs/base.py's config.report less NOT_SETTINGS (a new dict)."""
  return dict(_base_report())


def settings_from_config(config: Mapping[str, Any], overrides=None) -> dict[str, Any]:
  """The report's thresholds: config.report.* over the defaults, then `overrides`.

  Args:
    config: a config dict (config.json).
    overrides: None, a mapping (nested {"report": {...}} or dotted {"report.tau_gen_tol":
      0.2}; bare keys mean report.*) or an ml_collections ConfigDict.

  Raises:
    ConfigError: a value out of range.
  """
  flat = {k[len("report."):]: v for k, v in fileio.flatten_dict(config).items()
          if k.startswith("report.")}
  if overrides is not None:
    if hasattr(overrides, "to_dict"):
      overrides = overrides.to_dict()
    for k, v in fileio.flatten_dict(overrides).items():
      flat[k[len("report."):] if k.startswith("report.") else k] = v
  s = defaults()
  s.update({k: v for k, v in flat.items() if k in s})
  checks = (("tau_gen_tol", lambda v: v >= 0, "a relative tolerance >= 0 (e.g. 0.1)"),
            ("tau_gen_abs_tol", lambda v: v >= 0, "an absolute tolerance >= 0"),
            ("tau_mem_threshold", lambda v: 0 <= v < 1, "a fraction in [0, 1) (e.g. 0.01)"),
            ("loss_gap_sigmas", lambda v: v >= 0, "a number of standard deviations >= 0"),
            ("conf", lambda v: 0 < v < 1, "a confidence level in (0, 1)"))
  for key, ok, expected in checks:
    try:
      s[key] = float(s[key])
      valid = ok(s[key])
    except (TypeError, ValueError):
      valid = False
    if not valid:
      raise ConfigError(f"report.{key}", s[key], expected)
  if s["tau_gen_reference"] not in timescales.TAU_GEN_REFERENCES:
    raise ConfigError("report.tau_gen_reference", s["tau_gen_reference"],
                      f"one of {timescales.TAU_GEN_REFERENCES}")
  try:
    s["phase_multipliers"] = tuple(float(m) for m in s["phase_multipliers"])
  except (TypeError, ValueError):
    raise ConfigError("report.phase_multipliers", s["phase_multipliers"],
                      "a tuple of positive numbers, e.g. (1, 3, 8)") from None
  if not s["phase_multipliers"] or min(s["phase_multipliers"]) <= 0:
    raise ConfigError("report.phase_multipliers", s["phase_multipliers"],
                      "a tuple of positive numbers, e.g. (1, 3, 8)")
  for key, ok, expected in (
      ("sensitivity_thresholds", lambda v: 0 <= v < 1, "a tuple of fractions in [0, 1)"),
      ("sensitivity_final_fractions", lambda v: 0 < v <= 1, "a tuple of fractions in (0, 1]"),
      ("sensitivity_tau_gen_tols", lambda v: v >= 0, "a tuple of tolerances >= 0")):
    try:
      s[key] = tuple(float(v) for v in s[key])
      valid = all(ok(v) for v in s[key])
    except (TypeError, ValueError):
      valid = False
    if not valid:
      raise ConfigError(f"report.{key}", s[key], expected)
  for key in ("n_bootstrap", "bootstrap_seed"):
    v = s[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < (
        10 if key == "n_bootstrap" else 0):
      raise ConfigError(f"report.{key}", v, "an integer >= 10" if key == "n_bootstrap"
                        else "an integer >= 0")
    s[key] = int(v)
  return s
