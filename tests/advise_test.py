"""Tests of jaxdiff.advise: the pilot grid, the prediction's interval, a tiny end-to-end run.

The end-to-end test trains a tiny digits protocol (2 pilot sizes x 2 seeds, 800 steps)
once; the coverage test checks the interval of tau_mem(N) that advise reads off the
intercept of the fit centred at log N, on synthetic onsets with a known answer.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxdiff import advise
from jaxdiff.findings import fits
from jaxdiff.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config():
  sys.path.insert(0, ROOT)
  from configs import digits  # pylint: disable=g-import-not-at-top
  c = digits.get_config()
  c.data.n_train = (4, 8)
  c.train.num_steps = 800
  c.train.steps_per_dispatch = 800
  c.eval.first_time = 100
  c.eval.num_samples = 64
  c.eval.sample_batch = 64
  c.eval.sampler_steps = 20
  c.eval.n_bootstrap = 50
  c.eval.loss_noise_draws = 1
  c.eval.fid_set_size = 200
  c.eval.grid_runs = 1
  c.eval.grid_samples = 2
  c.report.n_bootstrap = 50
  return c


def test_default_pilot_grid_is_n_over_64_to_n_over_8():
  assert advise.default_pilot_sizes(1024) == (16, 32, 64, 128)
  assert advise.default_pilot_sizes(128) == (2, 4, 8, 16)
  assert advise.default_pilot_sizes(300) == (5, 9, 19, 38)


@pytest.mark.parametrize("text, needle", [
    ("8", "at least 2"), ("16,8", "increasing"), ("8,64", "below --n=64"), ("a,b", "auto")])
def test_bad_pilot_sizes_name_the_flag(text, needle):
  with pytest.raises(ConfigError) as info:
    advise.parse_pilot_sizes(text, 64, _tiny_config())
  assert "--pilot_sizes" in str(info.value) and needle in str(info.value)


def test_prediction_interval_covers_the_true_onset_at_n():
  """95% interval of tau(N) from pilots n = 8..64, N = 256 (4x beyond), 2 seeds, brackets.

  tau = 30 n^1.1 e^(0.2 eps), onsets seen in the brackets of an octave-like grid (x1.5)
  up to 40,000 steps: the truth at N is 30 * 256^1.1. Fitted as advise does (x = n / N,
  the intercept is log tau(N)).
  """
  rng = np.random.default_rng(1)
  ns = np.repeat([8, 16, 32, 64], 2)
  seeds = np.tile([0, 1], 4)
  grid = 50 * 1.5 ** np.arange(30)
  grid = grid[grid <= 40_000]
  reps, n_big = 200, 256
  tau = 30 * ns ** 1.1 * np.exp(0.2 * rng.standard_normal((reps, ns.size)))
  idx = np.searchsorted(grid, tau)
  lo = np.where(idx > 0, grid[np.maximum(idx - 1, 0)], 0.0)
  hi = np.where(idx < grid.size, grid[np.minimum(idx, grid.size - 1)], np.inf)
  results = fits.fit_censored_batch({"n": ns / n_big}, lo, hi, seeds=seeds, num_bootstrap=50)
  truth = 30 * n_big ** 1.1
  inside = [r.prefactor.lo <= truth <= r.prefactor.hi for r in results
            if r is not None and r.prefactor.lo is not None and r.prefactor.hi is not None]
  assert len(inside) >= 190
  coverage = np.mean(inside)
  assert 0.9 <= coverage <= 1.0, coverage
  # Not trivially wide: the median interval spans less than a factor 4.
  widths = [r.prefactor.hi / r.prefactor.lo for r in results if r is not None
            and r.prefactor.lo and r.prefactor.hi]
  assert np.median(widths) < 4.0


@pytest.mark.slow  # pilot sweeps (the prediction itself: the coverage test above)
def test_advise_end_to_end_and_resume(tmp_path, monkeypatch):
  workdir = str(tmp_path / "pilots")
  result = advise.advise(_tiny_config(), workdir, 64, pilot_sizes="4,8")
  with open(os.path.join(workdir, "advice.json")) as f:
    stored = json.load(f)
  for key in advise.KEYS:
    assert key in stored, key
  assert stored["pilot_sizes"] == [4, 8] and stored["n"] == 64
  assert stored["extrapolation"] == 8
  tau, lo, hi = stored["tau_mem"], stored["tau_mem_lo"], stored["tau_mem_hi"]
  assert tau is not None and math.isfinite(tau) and tau > 0
  assert lo is not None and lo <= tau and (hi is None or tau <= hi)
  assert stored["recommended_steps"] is not None
  assert stored["verdict"] in ("stop_before", "no_memorization_within_budget")
  with open(os.path.join(workdir, "advice.md")) as f:
    text = f.read()
  assert result["paragraph"] in text and "64 images" in text
  assert os.path.isfile(os.path.join(workdir, "report", "report.md"))  # an ordinary workdir

  # Resumed: the same advice without training again (the trainer would fail here).
  metrics = open(os.path.join(workdir, "metrics.jsonl")).read()
  from jaxdiff import train  # pylint: disable=g-import-not-at-top

  def no_training(*args, **kwargs):
    raise AssertionError("the resumed advise retrained")

  monkeypatch.setattr(train, "train_and_evaluate", no_training)
  again = advise.advise(_tiny_config(), workdir, 64, pilot_sizes="4,8")
  assert again["workdir_resumed"] and again["tau_mem"] == pytest.approx(tau)
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == metrics


@pytest.mark.slow
def test_command_line_errors_are_one_line_exit_2(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "jaxdiff.advise", f"--config={ROOT}/configs/test.py",
       f"--workdir={tmp_path}", "--n=1"], capture_output=True, text=True, cwd=ROOT,
      timeout=300)
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.splitlines() if l.strip() and "WARNING" not in l]
  assert lines == [lines[-1]] and "--n" in lines[-1] and "an integer >= 2" in lines[-1], proc.stderr
