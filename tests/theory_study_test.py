"""The one-command random-features study (configs/random_features.py:quick), end to end."""

import json
import os
import subprocess
import sys

import pytest

from configs import random_features as rf_config
from jaxdiff.errors import ConfigError, WorkdirError
from jaxdiff import rf_study as study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  """The quick study, run by the command. Its time is the simulation's steps, not
  compiling: a subprocess at XLA's level 1 instead of the tests' level 0
  (tests/conftest.py) took 17 s against 22 s in this process."""
  workdir = str(tmp_path_factory.mktemp("rf") / "wd")
  env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "").replace(
      "--xla_backend_optimization_level=0", "--xla_backend_optimization_level=1"))
  result = subprocess.run(
      [sys.executable, "-m", "jaxdiff.main", "--config=configs/random_features.py:quick",
       f"--workdir={workdir}"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report_dir = os.path.join(workdir, "report")
  with open(os.path.join(report_dir, "summary.json")) as f:
    return workdir, report_dir, json.load(f)


@pytest.mark.slow
def test_writes_config_stages_and_report(quick):
  workdir, report_dir, _ = quick
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["experiment"] == "random_features"
  for name in ("report.md", "summary.json", "fig4_14_spectrum.png", "fig5ab_losses.png",
               "fig5c_heatmap.png", "fig13_escore.png"):
    assert os.path.getsize(os.path.join(report_dir, name)) > 1000, name
  stages = sorted(os.listdir(os.path.join(workdir, "stages")))
  assert stages == ["escore.npz", "heatmap.npz", "simulation.npz", "spectrum_0.npz",
                    "spectrum_1.npz"]
  for name in ("fig4_14_spectrum.pdf", "fig5ab_losses.pdf", "fig5c_heatmap.pdf",
               "fig13_escore.pdf"):  # a vector copy of each figure
    with open(os.path.join(report_dir, name), "rb") as f:
      assert f.read(5) == b"%PDF-", name
  text = open(os.path.join(report_dir, "report.md")).read()
  assert "![losses](fig5ab_losses.png)" in text and "tau_mem" in text
  # The quick variant says so, and does not hold its E*_score slope against the paper's
  # (measured at psi_p = 32; the quick config uses 16); no Python tuples in the text.
  assert "**Quick variant**" in text
  assert "is not the paper's, so the two slopes are not expected to agree" in text
  assert "(1.0,)" not in text and "Σ = I" in text


def test_escore_comparison_with_the_paper():
  from jaxdiff.findings import rf_report as report
  es = dict(paper_slope=-0.59, psi_p=32.0, t=0.01, d=24,
            fit=dict(slope=-0.55, slope_stderr=0.03))
  assert "within two standard errors" in report._escore_comparison(es)
  es["fit"]["slope"] = -0.40
  assert "outside two standard errors" in report._escore_comparison(es)
  es["psi_p"] = 16.0
  assert "not expected to agree" in report._escore_comparison(es)


def test_spectrum_histogram_bins_and_peak():
  """A few hundred eigenvalues get a dozen-odd bins over their own range (not a comb of
  80 bins over the theory's grid), and the returned peak is the drawn maximum."""
  import matplotlib.pyplot as plt
  import numpy as np
  from jaxdiff.findings import rf_figures as figures
  eigs = np.random.default_rng(0).uniform(2.0, 6.0, size=300)
  fig, ax = plt.subplots()
  peak = figures._hist_density(ax, eigs, 600, 50, 0.0, 30.0)
  (stairs,) = ax.patches
  values, edges = stairs.get_data().values, stairs.get_data().edges
  assert 8 <= values.size <= 20
  assert edges[0] == pytest.approx(eigs.min()) and edges[-1] == pytest.approx(eigs.max())
  assert peak == pytest.approx(values.max())
  # Density per unit lambda, normalised by the whole count: integrates to 300 / 600.
  assert np.sum(values * np.diff(edges)) == pytest.approx(0.5)
  plt.close(fig)
  assert figures.covariance_label((1.0,), (1.0,)) == "Σ = I"
  assert figures.covariance_label((0.5, 1.5), (0.5, 0.5)) == (
      "Σ eigenvalues 0.5, 1.5 (fractions 0.5, 0.5)")


@pytest.mark.slow
def test_summary_numbers(quick):
  _, _, s = quick
  c001 = next(c for c in s["constants"] if c["t"] == 0.01)
  assert c001["s2"] == pytest.approx(0.001874, abs=1e-6)
  for case in s["spectrum"]:
    assert case["total_mass"] == pytest.approx(1.0, abs=1e-3)
    assert case["ks_region1"] < 0.06 and case["ks_region2"] < 0.2
  for row in s["tau_mem"]:  # the quick config keeps Fig. 5's psi_p = 64, t = 0.1
    assert row["tau_mem"] == pytest.approx(row["paper"], rel=0.01)
  sim = s["simulation"]
  # The onsets of the L_gen rise spread over ~90x in tau but collapse in tau / tau_mem
  # (measured 93 -> 11 in the simulation, 40 -> 4.6 in the closed form).
  assert sim["onset_spread_sim"] > 10
  assert sim["onset_over_tau_mem_spread_sim"] < sim["onset_spread_sim"] / 4
  assert sim["onset_over_tau_mem_spread_exact"] < sim["onset_spread_exact"] / 4
  # Simulation vs closed-form mean iterate at the authors' (large) learning rate.
  assert sim["sim_minus_exact"]["gen"]["max_abs_diff"] < 0.06
  assert len(s["escore"]["estar_mean"]) == 4 and s["escore"]["fit"]["slope"] < 0


@pytest.mark.slow
def test_rerun_reuses_finished_stages(quick):
  workdir, _, _ = quick
  stage_dir = os.path.join(workdir, "stages")
  before = {n: os.stat(os.path.join(stage_dir, n)).st_mtime_ns for n in os.listdir(stage_dir)}
  os.remove(os.path.join(stage_dir, "heatmap.npz"))
  report_dir = study.run_study(rf_config.get_config("quick"), workdir)
  assert report_dir == os.path.join(workdir, "report")
  with open(os.path.join(workdir, "report", "summary.json")) as f:
    timings = json.load(f)["timings_s"]
  assert timings["simulation"]["cached"] and timings["spectrum_0"]["cached"]
  assert not timings["heatmap"]["cached"]  # only the missing stage was recomputed
  assert timings["simulation"]["seconds"] > 1  # the time of the run that computed it
  after = {n: os.stat(os.path.join(stage_dir, n)).st_mtime_ns for n in os.listdir(stage_dir)}
  assert {n: t for n, t in after.items() if n != "heatmap.npz"} == {
      n: t for n, t in before.items() if n != "heatmap.npz"}


@pytest.mark.slow
def test_a_different_config_is_refused(quick):
  workdir, _, _ = quick
  config = rf_config.get_config("quick")
  config.rf.t = 0.2
  with pytest.raises(WorkdirError, match="rf.t"):
    study.run_study(config, workdir)


@pytest.mark.parametrize("key,value", [
    ("activation", "relu"), ("psi_n", (8.0, 4.0)), ("d", 0), ("optimizer", "sgd"),
    ("cov_weights", (1.0, 1.0)), ("spectrum_psi_n", (8.31,)), ("lr", 1e9), ("num_times", 1),
])
def test_bad_values_are_config_errors(tmp_path, key, value):
  config = rf_config.get_config("quick")
  config.rf[key] = value
  with pytest.raises(ConfigError, match=f"rf.{key}"):
    study.run_study(config, str(tmp_path / "wd"))
  assert not os.path.exists(tmp_path / "wd")  # nothing written before validation


@pytest.mark.slow
def test_command_line_reports_a_bad_value_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "jaxdiff.main", "--config=configs/random_features.py:quick",
       f"--workdir={tmp_path / 'wd'}", "--config.rf.d=-3"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "rf.d = -3" in result.stderr.strip().splitlines()[-1]
