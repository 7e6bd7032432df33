"""The command line, as a user runs it: errors, the end-to-end sweep, kill -9 and resume.

Each command runs in a subprocess (`python -m jaxdiff.main`), from the repository root,
sharing the session's persistent compilation cache so that identical programs compile once.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import pytest

from jaxdiff import fileio

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
  e.pop("XLA_FLAGS", None)
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
def test_user_mistakes_end_with_one_line(tmp_path, args, expected):
  empty = tmp_path / "no_tfds"
  empty.mkdir()
  args = [a.replace("{empty}", str(empty)) for a in args]
  result = run("--config=configs/test.py", f"--workdir={tmp_path / 'wd'}", *args)
  assert expected in one_error_line(result)


@pytest.mark.parametrize("body,expected", [
    ("def get_config():\n  raise ValueError('no such preset')\n",
     r"bad.py, line 2 \(raise ValueError\('no such preset'\)\): ValueError: no such preset"),
    ("def get_config(:\n  pass\n", r"bad.py, line 1: SyntaxError"),
    ("from configs import test\ndef get_config():\n  c = test.get_config()\n"
     "  c.optim.lr = (1e309,)\n  return c\n", r"optim.lr = \(inf,\): expected .*finite"),
])
def test_bad_config_files_end_with_their_own_line(tmp_path, body, expected):
  (tmp_path / "bad.py").write_text(body)
  line = one_error_line(run(f"--config={tmp_path / 'bad.py'}", f"--workdir={tmp_path / 'wd'}"))
  assert re.search(expected, line), line
  assert not os.path.exists(tmp_path / "wd" / "config.json")


def test_missing_config_file_is_one_clean_line(tmp_path):
  line = one_error_line(run("--config=configs/nope.py", f"--workdir={tmp_path / 'wd'}"))
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


def test_workdir_that_is_a_file(tmp_path):
  (tmp_path / "f").write_text("x")
  line = one_error_line(run("--config=configs/test.py", f"--workdir={tmp_path / 'f'}"))
  assert "is a file, not a directory" in line


def test_missing_flags(tmp_path):
  assert "--workdir is required" in one_error_line(run("--config=configs/test.py"))
  assert "--config is required" in one_error_line(run(f"--workdir={tmp_path}"))


def _rows(workdir):
  return {(r["step"], r["run"]): r for r in fileio.read_jsonl(os.path.join(workdir, "metrics.jsonl"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("e2e") / "wd")
  result = run("--config=configs/test.py", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


def test_end_to_end_outputs(finished):
  workdir, result = finished
  rows = _rows(workdir)
  assert len(rows) == 3 * 6  # 3 evaluation times x (3 n x 2 seeds)
  assert {s for s, _ in rows} == {50, 100, 200}
  runs = json.load(open(os.path.join(workdir, "runs.json")))
  assert [(r["n"], r["seed"]) for r in runs] == [(8, 0), (8, 1), (16, 0), (16, 1), (32, 0),
                                                 (32, 1)]
  for row in rows.values():
    assert 0.0 <= row["f_mem"] <= 1.0 and row["f_mem_lo"] <= row["f_mem"] <= row["f_mem_hi"]
    assert row["train_loss"] > 0 and row["test_loss"] > 0 and row["quality"] is not None
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["data"]["n_train"] == [8, 16, 32]
  for step in (50, 100, 200):
    assert os.path.exists(os.path.join(workdir, "samples", f"step_{step:09d}.png"))
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  for name in ("report.md", "summary.json"):
    assert os.path.exists(os.path.join(workdir, "report", name))
  assert "report written to" in result.stdout


def test_kill_9_and_resume_equals_uninterrupted(finished, tmp_path):
  reference, _ = finished
  workdir = str(tmp_path / "wd")
  proc = subprocess.Popen(command("--config=configs/test.py", f"--workdir={workdir}"),
                          cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 400
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
      break
    time.sleep(0.2)
  time.sleep(random.uniform(0.0, 1.5))  # somewhere after the first evaluation
  was_running = proc.poll() is None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  result = run("--config=configs/test.py", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  if was_running:
    assert "resumed" in result.stderr or "step 0" not in result.stderr
  ref, got = _rows(reference), _rows(workdir)
  assert ref.keys() == got.keys()  # no duplicated or missing rows
  for key in ref:
    for name in NUMERIC:
      assert ref[key][name] == got[key][name], (key, name)
