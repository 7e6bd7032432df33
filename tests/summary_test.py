"""The terminal summary, the finished workdir, and metrics.jsonl rows for pandas (issue 15).

Synthetic workdirs with known onsets check that the summary carries the report's own
numbers and that old rows (f_mem_extra nested) and new ones (flat f_mem_k columns) give
the same analysis. One tiny real sweep of configs/test.py (40 steps), shared by the
module, checks the rows it writes and what a rerun of the finished workdir does.
"""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import base
from configs import test as test_config
from jaxdiff import fileio
from jaxdiff.findings import report
from jaxdiff.findings.analysis import analyze
from jaxdiff.findings.formatting import fmt
from jaxdiff.findings.settings import settings_from_config
from jaxdiff.findings.summary import _fmt_group_onset, _window, summary_dict, terminal_summary
from jaxdiff.findings.workdirs import load_workdir
from jaxdiff import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMES = [0] + [100 * 2 ** k for k in range(8)]  # up to 12800
NS = (8, 16, 32, 64)  # tau_mem = 200 n: n = 64 (12800, 14080) is not reached
OVERRIDES = {"train.num_steps": 40, "eval.times": (20, 40), "train.steps_per_dispatch": 20}


# ------------------------------------------------------------------ synthetic workdirs


def _rows(nested: bool):
  """A sweep of 4 n x 2 seeds: tau_mem = 200 n x (1, 1.1), quality flat from 400 steps."""
  config = base.get_config()
  config.data.dataset, config.data.n_train, config.data.seeds = "digits", NS, (0, 1)
  config.model.name, config.model.width = "mlp", 32
  config = json.loads(fileio.dumps(config.to_dict()))
  runs, rows = [], []
  for n in NS:
    for seed in (0, 1):
      ident = dict(run=len(runs), n=n, seed=seed, index=0, lr=1e-3, width=32,
                   num_params=1000, dataset="digits", model="mlp")
      runs.append(dict(ident, batch_size=64))
      tau = 200.0 * n * (1.0, 1.1)[seed]
      for t in TIMES:
        prev = max([s for s in TIMES if s < tau] or [0])
        f = 0.0 if t <= prev else min(0.9, 0.01 * math.log(t / prev) / math.log(tau / prev))
        row = dict(ident, step=t, loss=1.0, train_loss=1.0, train_loss_std=0.01,
                   test_loss=1.0, test_loss_std=0.01, k=1 / 3, f_mem=f, f_mem_lo=0.5 * f,
                   f_mem_hi=min(1.0, 2 * f), ratio_median=0.8, num_samples=500,
                   quality=50.0 if t < 400 else 40.0 + n / 64, quality_name="pixel_fd",
                   quality_label="pixel FD", wall_time=t / 100)
        extra = {"0.5": min(1.0, 2 * f), "0.25": 0.5 * f}
        if nested:  # as jaxdiff wrote rows before the flat columns
          row.update(f_mem_extra=extra, quality_std=0.0)
        else:
          row.update({f"f_mem_k{k}": v for k, v in extra.items()}, quality_std=None)
        rows.append(row)
  return config, runs, rows


def _workdir(path, nested):
  config, runs, rows = _rows(nested)
  os.makedirs(path)
  fileio.atomic_write_json(os.path.join(path, "config.json"), config)
  fileio.atomic_write_json(os.path.join(path, "runs.json"), runs)
  fileio.append_jsonl(os.path.join(path, "metrics.jsonl"), rows)
  return str(path)


def test_report_reads_old_and_new_rows_alike(tmp_path):
  old, new = _workdir(tmp_path / "old", True), _workdir(tmp_path / "new", False)
  old_rows = load_workdir(old).rows
  assert all("f_mem_extra" not in r and "f_mem_k0.5" in r and "f_mem_k0.25" in r
             for r in old_rows)
  assert old_rows[5]["f_mem_k0.5"] == _rows(True)[2][5]["f_mem_extra"]["0.5"]
  summaries = []
  for wd in (old, new):
    sweep = load_workdir(wd)
    a = analyze([sweep], settings_from_config(sweep.config))
    s = json.loads(fileio.dumps(summary_dict(a)))
    summaries.append((s["groups"], s["fits"], [r["tau_mem"] for r in s["runs"]]))
  assert summaries[0] == summaries[1]
  assert summaries[0][1][0]["tau_mem_vs_n_censored"] is not None


@pytest.mark.slow
def test_summary_lines_carry_the_reports_numbers(tmp_path):
  wd = _workdir(tmp_path / "wd", True)
  path = report.write_report([wd])
  with open(os.path.join(wd, "report", "summary.json")) as f:
    summary = json.load(f)
  lines = report.summary_of_report(path)
  assert lines == terminal_summary(summary, path)
  assert lines[-1] == f"jaxdiff: report written to {path}"
  text = "\n".join(lines)
  groups = {g["n"]: g for g in summary["groups"]}
  by_n = {n: next(l for l in lines if l.strip().startswith(f"n={n} ")) for n in NS}
  for n in NS[:-1]:  # observed: the group's geometric mean, as in summary.json
    est = groups[n]["tau_mem"]["estimate"]
    assert f"tau_mem {fmt(est['value'])} [" in by_n[n]
    assert 200 * n <= est["value"] <= 1.1 * 200 * n * 1.01
  # n = 64 never memorizes within the budget: censored, and the window stays open
  assert f"tau_mem > {fmt(TIMES[-1])} (not reached)" in by_n[64]
  assert "(still open at the end)" in by_n[64]
  # tau_gen is observed (quality flat from 400): the window runs from it to tau_mem
  g8 = groups[8]["tau_gen"]["estimate"]["value"]
  m8 = groups[8]["tau_mem"]["estimate"]["value"]
  assert f"window {fmt(g8)} to {fmt(m8)} steps" in by_n[8]
  fit = next(f for f in summary["fits"])
  a = fit["tau_mem_vs_n_censored"]["exponents"]["n"]
  assert f"alpha (tau_mem ~ n^alpha) = {a['value']:.2f} [{a['lo']:.2f}, {a['hi']:.2f}]" in text
  assert abs(a["value"] - 1.0) < 0.15
  verdict = fit["tau_mem_alpha_verdict"]
  assert verdict["conclusion"] in text and verdict["kind"] in (
      "all_contain", "all_above", "all_below", "mixed")
  assert f"across {verdict['num_definitions']} onset definitions" in text


def test_summary_of_something_else_is_only_the_path(tmp_path):
  (tmp_path / "summary.json").write_text(json.dumps({"fits": "not a sweep"}))
  path = str(tmp_path / "report.md")
  assert report.summary_of_report(path) == [f"jaxdiff: report written to {path}"]


def test_left_censored_onsets_read_as_at_most():
  onset = {"status": "left_censored", "bound": 100.0, "estimate": None, "num_runs": 2,
           "num_observed": 0, "num_right_censored": 0, "num_left_censored": 2}
  assert _fmt_group_onset(onset) == "<= 100 (at the first evaluation)"
  assert _window(onset, onset) == "none (memorizing from the first evaluation)"


def test_quality_std_is_none_with_one_reference_set():
  from jaxdiff.metrics import quality
  rng = np.random.default_rng(0)
  sets = [rng.random((50, 4)).astype(np.float32) for _ in range(2)]
  x = rng.random((50, 4))
  mu, sigma = x.mean(0), np.cov(x, rowvar=False)
  one = quality.make_quality_metric("pixel_fd", reference_sets=sets[:1])
  two = quality.make_quality_metric("pixel_fd", reference_sets=sets)
  assert one.distance(mu, sigma)[1] is None
  mean, std = two.distance(mu, sigma)
  assert std == pytest.approx(np.std(two.distances(mu, sigma))) and std > 0


# ------------------------------------------------------------------ a real tiny sweep


def config(**overrides):
  c = test_config.get_config()
  for key, value in {**OVERRIDES, **overrides}.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("finished") / "wd")
  path = train.train_and_evaluate(config(), wd, devices=jax.devices()[:1])
  assert path and os.path.isfile(path)
  return wd, path


def _stamps(wd):
  out = {}
  for root, dirs, files in os.walk(wd):
    for name in dirs + files:
      p = os.path.join(root, name)
      st = os.stat(p)
      out[os.path.relpath(p, wd)] = (st.st_mtime_ns, st.st_size, st.st_ino)
  return out


@pytest.mark.slow
def test_rows_are_flat_and_rounded(finished):
  wd, _ = finished
  rows = fileio.read_jsonl(os.path.join(wd, "metrics.jsonl"))
  assert len(rows) == 2 * 6
  for row in rows:
    assert "f_mem_extra" not in row and {"f_mem_k0.5", "f_mem_k0.25"} <= row.keys()
    assert not any(isinstance(v, (dict, list)) for v in row.values()), row
    for name, v in row.items():
      if isinstance(v, float) and name not in ("k", "lr", "wall_time"):
        assert float(f"{v:.7g}") == v, (name, v)  # no float32 conversion noise
    for name in ("f_mem", "f_mem_k0.5", "f_mem_k0.25"):
      count = row[name] * row["num_samples"]
      assert count == round(count) and row[name] == round(count) / row["num_samples"]
    assert row["quality"] is not None and row["quality_std"] is None  # fid_num_sets = 1


@pytest.mark.slow
def test_rerun_of_a_finished_workdir_touches_nothing(finished, monkeypatch, capsys):
  wd, path = finished
  before = _stamps(wd)

  def no_sweep(*args, **kwargs):
    raise AssertionError("a finished workdir built a Sweep (data, compilation)")

  monkeypatch.setattr(train, "Sweep", no_sweep)
  assert train.train_and_evaluate(config(), wd) == path
  assert "is already finished (step 40" in capsys.readouterr().err
  assert _stamps(wd) == before


@pytest.mark.slow
def test_rerun_from_the_command_line_prints_the_summary(finished):
  wd, path = finished
  before = _stamps(wd)
  flags = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
           for k, v in OVERRIDES.items()]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-m", "jaxdiff.main", "--config=configs/test.py",
                           f"--workdir={wd}", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "already finished" in result.stderr
  assert result.stdout.splitlines()[-len(report.summary_of_report(path)):] == \
      report.summary_of_report(path)
  assert "tau_mem" in result.stdout and "n=8" in result.stdout
  assert _stamps(wd) == before


@pytest.mark.slow
def test_rewrite_report_rewrites_only_the_report(finished, monkeypatch):
  wd, path = finished
  before = _stamps(wd)
  monkeypatch.setattr(train, "Sweep", lambda *a, **k: pytest.fail("built a Sweep"))
  assert train.train_and_evaluate(config(), wd, rewrite_report=True) == path
  after = _stamps(wd)
  changed = {k for k in before if before[k] != after.get(k)}
  assert os.path.join("report", "report.md") in changed
  assert all(k.startswith("report") for k in changed), changed


class _Built(Exception):
  pass


def _building(*args, **kwargs):
  raise _Built()


@pytest.mark.parametrize("change", ["num_steps", "metrics", "marker"])
@pytest.mark.slow
def test_what_is_not_finished_trains_on(finished, tmp_path, monkeypatch, change):
  import shutil
  wd = str(tmp_path / "wd")
  shutil.copytree(finished[0], wd)
  cfg = config()
  assert train.finished_marker(cfg, wd) is not None
  if change == "num_steps":  # a resumable key: a longer budget trains on
    cfg = config(**{"train.num_steps": 60, "eval.times": (20, 40, 60)})
  elif change == "metrics":  # rows changed since (e.g. a damaged line): resume repairs
    with open(os.path.join(wd, "metrics.jsonl"), "a") as f:
      f.write("{}\n")
  else:
    os.remove(os.path.join(wd, train.FINISHED_NAME))
  assert train.finished_marker(cfg, wd) is None
  monkeypatch.setattr(train, "Sweep", _building)
  with pytest.raises(_Built):
    train.train_and_evaluate(cfg, wd)
