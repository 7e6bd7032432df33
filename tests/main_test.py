"""The command line, as a user runs it: errors, the end-to-end sweep, kill -9 and resume.

The error cases call the command's own flag parser and `main` in this process (what
`python -m jaxdiff.main ARGS` runs, with sys.argv and the absl flags set as there); one
error, --help and the sweeps run as subprocesses (`python -m jaxdiff.main`, from the
repository root, sharing the session's persistent compilation cache) for the exit codes
and the kill.
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

from absl import flags
from absl import logging as absl_logging
import jax
import numpy as np
import pytest

from jaxdiff import checkpointing
from jaxdiff import fileio
from jaxdiff import main as main_lib
# The command's flag parser (absl's, with config-override mistakes made one line).
from jaxdiff.cli import parse_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMERIC = ("loss", "train_loss", "test_loss", "f_mem", "f_mem_lo", "f_mem_hi", "quality",
           "ratio_median")


def command(*args):
  return [sys.executable, "-m", "jaxdiff.main", *args]


def env():
  e = dict(os.environ)
  e["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir or ""
  e["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  e["JAX_PLATFORMS"] = "cpu"
  return e


def run(*args, timeout=600):
  return subprocess.run(command(*args), cwd=ROOT, env=env(), capture_output=True, text=True,
                        timeout=timeout)


def one_error_line(result):
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert len(lines) == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  return lines[0]


@pytest.fixture
def in_process(monkeypatch, capsys):
  """`python -m jaxdiff.main ARGS` in this process: returns subprocess.run's fields
  (returncode, stdout, stderr). ml_collections reads the overrides from sys.argv."""
  monkeypatch.chdir(ROOT)

  def reset():
    # ml_collections defines a flag per override (--config.data.n_train), bound to the
    # config it loaded: drop them, or the next call would set the previous config.
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
      delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()

  def call(*args):
    argv = ["jaxdiff.main", *args]
    monkeypatch.setattr(sys, "argv", argv)
    reset()
    verbosity = absl_logging.get_verbosity()  # main quiets absl's INFO logs: restored
    code = 0
    try:
      main_lib.main(parse_flags(argv))
    except SystemExit as e:
      code = e.code
    finally:
      reset()
      absl_logging.set_verbosity(verbosity)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)

  return call


@pytest.mark.parametrize("args,expected", [
    (["--config.data.n_tran=3"], "bad --config override --config.data.n_tran: no key "
                                 "data.n_tran (did you mean data.n_train?); every key is "
                                 "listed, with a comment, in configs/base.py"),
    (["--config.trian.num_steps=3"], "no key trian (did you mean train.num_steps?)"),
    (["--config.eval.k=2"], "eval.k = 2.0: expected a number strictly between 0 and 1"),
    (["--config.data.n_train=64,32"], "data.n_train = (64, 32): expected strictly increasing"),
    (["--config.data.n_train=8,4000"], "data.n_train"),
    (["--config.data.dataset=celeb_a", "--config.data.image_size=32",
      "--config.data.tfds_data_dir={empty}"], "tfds build celeb_a"),
    (["stray"], "unexpected arguments ['stray']"),
])
def test_user_mistakes_end_with_one_line(tmp_path, args, expected, in_process):
  empty = tmp_path / "no_tfds"
  empty.mkdir()
  args = [a.replace("{empty}", str(empty)) for a in args]
  result = in_process("--config=configs/test.py", f"--workdir={tmp_path / 'wd'}", *args)
  assert expected in one_error_line(result)
  assert not os.path.exists(tmp_path / "wd" / "config.json")  # the workdir is not claimed


@pytest.mark.slow
def test_a_user_mistake_exits_2_with_one_line_from_the_command(tmp_path):
  """The one subprocess of the error cases: the exit code and stderr of the real command."""
  result = run("--config=configs/test.py", f"--workdir={tmp_path / 'wd'}",
               "--config.eval.k=2")
  assert one_error_line(result) == ("jaxdiff: error: config key eval.k = 2.0: expected a "
                                    "number strictly between 0 and 1")


@pytest.mark.parametrize("body,expected", [
    ("def get_config():\n  raise ValueError('no such preset')\n",
     r"bad.py, line 2 \(raise ValueError\('no such preset'\)\): ValueError: no such preset"),
    ("def get_config(:\n  pass\n", r"bad.py, line 1: SyntaxError"),
    ("from configs import test\ndef get_config():\n  c = test.get_config()\n"
     "  c.optim.lr = (1e309,)\n  return c\n", r"optim.lr = \(inf,\): expected .*finite"),
])
def test_bad_config_files_end_with_their_own_line(tmp_path, body, expected, in_process):
  (tmp_path / "bad.py").write_text(body)
  line = one_error_line(in_process(f"--config={tmp_path / 'bad.py'}",
                                   f"--workdir={tmp_path / 'wd'}"))
  assert re.search(expected, line), line
  assert not os.path.exists(tmp_path / "wd" / "config.json")


def test_missing_config_file_is_one_clean_line(tmp_path, in_process):
  line = one_error_line(in_process("--config=configs/nope.py", f"--workdir={tmp_path / 'wd'}"))
  assert line == ("jaxdiff: error: --config=configs/nope.py: no such file; expected a config "
                  "file such as configs/digits.py (python -m jaxdiff.main --help lists them)")


def test_help_lists_commands_overrides_and_exits_0():
  result = run("--help")
  assert result.returncode == 0, result.stderr[-2000:]
  text = result.stdout
  for needle in ("--config.KEY=VALUE", "configs/base.py", "configs/digits.py",
                 "--config.train.num_steps=400", "python -m jaxdiff.report",
                 "python -m jaxdiff.plan", "python -m jaxdiff.audit", "Exit codes"):
    assert needle in text, needle
  assert "(default: 'None')" not in text


def test_workdir_that_is_a_file(tmp_path, in_process):
  (tmp_path / "f").write_text("x")
  line = one_error_line(in_process("--config=configs/test.py", f"--workdir={tmp_path / 'f'}"))
  assert "is a file, not a directory" in line


def test_missing_flags(tmp_path, in_process):
  assert "--workdir is required" in one_error_line(in_process("--config=configs/test.py"))
  assert "--config is required" in one_error_line(in_process(f"--workdir={tmp_path}"))


def _rows(workdir):
  return {(r["step"], r["run"]): r for r in fileio.read_jsonl(os.path.join(workdir, "metrics.jsonl"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("e2e") / "wd")
  result = run("--config=configs/test.py", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


@pytest.mark.slow  # a CLI sweep (train_test checks the trainer's rows in-process)
def test_end_to_end_outputs(finished):
  workdir, result = finished
  rows = _rows(workdir)
  runs = json.load(open(os.path.join(workdir, "runs.json")))
  config = json.load(open(os.path.join(workdir, "config.json")))
  times = config["eval"]["times"]
  assert config["data"]["n_train"] == [8, 16, 32] and times == [50, 100, 200]
  assert [(r["run"], r["n"], r["seed"]) for r in runs] == [
      (0, 8, 0), (1, 8, 1), (2, 16, 0), (3, 16, 1), (4, 32, 0), (5, 32, 1)]
  # One row per (evaluation, run): 3 x 6, nothing else.
  assert sorted(rows) == sorted((t, r["run"]) for t in times for r in runs)
  for (step, run_id), row in rows.items():
    assert row["n"] == runs[run_id]["n"] and row["seed"] == runs[run_id]["seed"]
    # f_mem is a fraction of the 32 samples, inside its own bootstrap interval.
    assert 0.0 <= row["f_mem_lo"] <= row["f_mem"] <= row["f_mem_hi"] <= 1.0, row
    assert abs(row["f_mem"] * 32 - round(row["f_mem"] * 32)) < 1e-4, row["f_mem"]
    for name in ("loss", "train_loss", "test_loss", "quality", "ratio_median"):
      assert math.isfinite(row[name]), (name, row)
    assert row["train_loss"] > 0 and row["test_loss"] > 0 and row["ratio_median"] > 0
  for r in runs:
    # The training loss (the mean over the steps since the last evaluation) goes down.
    losses = [rows[(t, r["run"])]["loss"] for t in times]
    assert losses[-1] < losses[0], (r, losses)
  # The smallest n memorizes more than the largest by the end (200 steps on 8 vs 32 images).
  final = {n: np.mean([rows[(200, r["run"])]["f_mem"] for r in runs if r["n"] == n])
           for n in (8, 32)}
  assert final[8] >= final[32], final

  # The report's numbers are the rows' numbers.
  summary = json.load(open(os.path.join(workdir, "report", "summary.json")))
  assert sorted(s["run"] for s in summary["runs"]) == [r["run"] for r in runs]
  for s in summary["runs"]:
    last = rows[(200, s["run"])]
    assert s["final_step"] == 200
    for name in ("f_mem", "f_mem_lo", "f_mem_hi", "quality"):
      assert s[f"final_{name}"] == pytest.approx(last[name], rel=1e-6, abs=1e-9), name
    curve = {t: rows[(t, s["run"])]["quality"] for t in times}
    best = min(curve, key=curve.get)
    assert (s["best_quality_step"], s["best_quality"]) == (best, pytest.approx(curve[best]))
  groups = {g["n"]: g for g in summary["groups"]}
  assert sorted(groups) == [8, 16, 32] and all(g["num_runs"] == 2 for g in groups.values())
  with open(os.path.join(workdir, "report", "runs.csv")) as f:
    assert len(f.read().strip().splitlines()) == 1 + len(runs)  # header + one per run

  for step in times:
    assert os.path.exists(os.path.join(workdir, "samples", f"step_{step:09d}.png"))
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert os.path.exists(os.path.join(workdir, "report", "report.md"))
  assert "report written to" in result.stdout


@pytest.mark.slow  # a second CLI sweep, killed and rerun
def test_kill_9_and_resume_equals_uninterrupted(finished, tmp_path):
  """kill -9 once the checkpoint of the first evaluation (step 50) is on disk, whatever the
  process is doing then; the rerun resumes from the latest complete checkpoint and the
  rows equal the uninterrupted run's, none lost, none twice."""
  reference, _ = finished
  workdir = str(tmp_path / "wd")
  proc = subprocess.Popen(command("--config=configs/test.py", f"--workdir={workdir}"),
                          cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  first = os.path.join(workdir, "checkpoints", "50")  # orbax renames a complete one to this
  deadline = time.time() + 400
  while time.time() < deadline and proc.poll() is None and not os.path.isdir(first):
    time.sleep(0.05)
  was_running = proc.poll() is None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert was_running and os.path.isdir(first), "the sweep ended before its first checkpoint"
  latest = checkpointing.Checkpointer(workdir).latest_step()
  assert latest is not None and latest >= 50
  result = run("--config=configs/test.py", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"resumed {workdir} at step {latest}" in result.stderr, result.stderr[-3000:]
  ref, got = _rows(reference), _rows(workdir)
  lines = fileio.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert len(lines) == len(got) == len(ref)  # no duplicated or missing rows
  assert ref.keys() == got.keys()
  for key in ref:
    for name in NUMERIC:
      assert ref[key][name] == got[key][name], (key, name)
