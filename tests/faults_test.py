"""The fault table of issue 12, injected on configs/test.py: nothing lost, nothing twice.

Every test damages a workdir the way a cluster does (a second process, a full disk, a cut
line, a deleted or corrupt checkpoint, another device count, a diverging run, SIGTERM) and
compares metrics.jsonl row by row, every field but wall_time, with ONE uninterrupted
reference run shared by the module: no row lost, none twice, the same numbers. Most faults
start from a copy of the finished reference (so only the steps after the damaged point are
recomputed) and run in this process; the exit code of SIGTERM needs one subprocess.
"""

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import test as test_config
from jaxdiff import checkpointing
from jaxdiff import fileio
from jaxdiff import train
from jaxdiff import workdir as workdir_lib
from jaxdiff.errors import JaxdiffError, WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE = None  # devices of the reference: set in the fixture (the first device)


def config(**overrides):
  c = test_config.get_config()
  c.report.auto = False
  # The runs batched with vmap: each of the module's ~15 sweeps traces (and loads from the
  # compilation cache) one copy of the step and of the sampler, not one per run. Nothing
  # here depends on the layout; vmap equals unroll (sharding_test).
  c.train.models_axis = "vmap"
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


def run_sweep(wd, cfg=None, devices=None):
  return train.Sweep(cfg or config(), str(wd), devices=devices or jax.devices()[:1]).run()


def lines_of(wd):
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    return f.read().splitlines()


def rows_of(wd, key=("step", "run")):
  """Every line parses and no (step, run) appears twice; rows by `key`."""
  rows = [json.loads(l) for l in lines_of(wd)]
  keys = [tuple(r[k] for k in key) for r in rows]
  assert len(keys) == len(set(keys)), "a row written twice"
  return dict(zip(keys, rows))


def assert_same_rows(ref, got, rtol=0.0, key=("step", "run"), only=None):
  """Same (step, run) rows with the same values (every field but wall_time)."""
  want = {k: r for k, r in ref.items() if only is None or only(r)}
  have = {k: r for k, r in got.items() if only is None or only(r)}
  assert have.keys() == want.keys(), (sorted(set(want) - set(have)),
                                      sorted(set(have) - set(want)))
  for k in want:
    a, b = dict(want[k]), dict(have[k])
    a.pop("wall_time"), b.pop("wall_time")
    if rtol == 0.0:
      assert a == b, k
    else:
      assert a.keys() == b.keys(), k
      for name in a:
        if isinstance(a[name], float):
          np.testing.assert_allclose(b[name], a[name], rtol=rtol, atol=1e-5,
                                     err_msg=f"{k} {name}")
        elif not isinstance(a[name], dict):
          assert a[name] == b[name], (k, name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("faults") / "reference")
  run_sweep(wd)
  return wd, rows_of(wd)


def copy_of(reference, tmp_path, name="wd"):
  wd = str(tmp_path / name)
  shutil.copytree(reference[0], wd)
  return wd


def drop_rows(wd, step):
  """metrics.jsonl without the rows of `step` (as if the run stopped before writing them)."""
  path = os.path.join(wd, "metrics.jsonl")
  keep = [l for l in lines_of(wd) if json.loads(l)["step"] != step]
  with open(path, "w") as f:
    f.write("".join(l + "\n" for l in keep))


# ------------------------------------------------------------------ one writer


HOLD = """
import sys, time
from jaxdiff import workdir
claim = workdir.claim(sys.argv[1], {"a": 1})
print("held", flush=True)
time.sleep(600)
"""


def test_second_process_refused_then_stale_lock_taken_over(tmp_path, caplog):
  """Today both processes run and write every row twice; now the second is refused at
  once with the holder's pid, and a holder killed with -9 is taken over with a warning."""
  wd = str(tmp_path / "wd")
  holder = subprocess.Popen([sys.executable, "-c", HOLD, wd], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    assert holder.stdout.readline().strip() == "held"
    t0 = time.time()
    with pytest.raises(WorkdirError, match=rf"is in use by pid {holder.pid} on host"):
      train.Sweep(config(), wd, devices=jax.devices()[:1])
    assert time.time() - t0 < 10
    assert not os.path.exists(os.path.join(wd, "config.json"))
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with caplog.at_level(logging.WARNING):
    claim = workdir_lib.claim(wd, config().to_dict())
  try:
    assert f"pid {holder.pid}" in caplog.text and "taking over" in caplog.text
  finally:
    claim.release()


def test_heartbeat_guards_filesystems_without_os_lock(tmp_path, monkeypatch, caplog):
  """Where flock fails (ENOLCK on some shared filesystems) a fresh heartbeat of another
  host refuses, one older than STALE_SECS is taken over."""
  import fcntl

  def no_lock(fd, op):
    raise OSError(errno.ENOLCK, "No locks available")
  monkeypatch.setattr(fcntl, "flock", no_lock)
  monkeypatch.setattr(workdir_lib, "_SETTLE_SECS", 0.01)
  wd = tmp_path / "wd"
  wd.mkdir()
  record = dict(host="other-host", pid=1, start_time=time.time() - 100,
                heartbeat=time.time() - 5, token="x")
  (wd / workdir_lib.LOCK_NAME).write_text(json.dumps(record))
  with pytest.raises(WorkdirError, match="other-host.*heartbeat is 5 s old"):
    workdir_lib.claim(str(wd), {"a": 1})
  record["heartbeat"] = time.time() - workdir_lib.STALE_SECS - 1
  (wd / workdir_lib.LOCK_NAME).write_text(json.dumps(record))
  with caplog.at_level(logging.WARNING):
    workdir_lib.claim(str(wd), {"a": 1}).release()
  assert "taking over" in caplog.text and "other-host" in caplog.text


def test_released_lock_is_taken_without_warning(tmp_path, caplog):
  wd = str(tmp_path / "wd")
  workdir_lib.claim(wd, {"a": 1}).release()
  with caplog.at_level(logging.WARNING):
    claim = workdir_lib.claim(wd, {"a": 1})
  claim.release()
  assert "taking over" not in caplog.text
  # Within one process a workdir is claimed once (a second Sweep object shares it).
  with workdir_lib.claim(wd, {"a": 1}), workdir_lib.claim(wd, {"a": 1}):
    pass


# ------------------------------------------------------------------ metrics.jsonl


def test_write_all_and_scan(tmp_path, monkeypatch):
  """The pieces: short writes are continued; damaged lines are found and moved aside."""
  path = str(tmp_path / "m.jsonl")
  real_write = os.write
  monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
  fileio.append_jsonl(path, [{"step": 1, "run": r} for r in range(4)])
  monkeypatch.undo()
  with open(path, "a") as f:
    f.write('{"step": 2, "ru\n{"step": 2, "run": 0}\n{"step": 2')
  rows, damaged = fileio.scan_jsonl(path)
  assert [r for _, r in rows] == [{"step": 1, "run": r} for r in range(4)] + [
      {"step": 2, "run": 0}]
  assert [n for n, _ in damaged] == [5, 7]
  fileio.set_aside_lines(path, [5, 7], str(tmp_path / "aside"))
  assert (tmp_path / "aside").read_text() == '{"step": 2, "ru\n{"step": 2\n'
  assert [r for _, r in fileio.scan_jsonl(path)[0]] == [r for _, r in rows]



def _metrics_fd(fd):
  try:
    return os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl")
  except OSError:
    return False


@pytest.mark.slow
def test_short_writes_and_full_disk_during_append(reference, tmp_path, monkeypatch):
  """Today a short os.write loses the rest of the rows silently; now every byte is
  written, and ENOSPC ends with a clear resumable error whose rerun completes the rows."""
  real_write = os.write
  wd = copy_of(reference, tmp_path)
  drop_rows(wd, 200)
  monkeypatch.setattr(os, "write", lambda fd, data: real_write(
      fd, bytes(data[:40]) if _metrics_fd(fd) else data))
  run_sweep(wd)
  monkeypatch.undo()
  assert_same_rows(reference[1], rows_of(wd))

  drop_rows(wd, 200)
  state = {"calls": 0}

  def full(fd, data):
    if not _metrics_fd(fd):
      return real_write(fd, data)
    state["calls"] += 1
    if state["calls"] == 1:
      return real_write(fd, bytes(data[:len(data) // 2 + 7]))  # mid-line
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(os, "write", full)
  with pytest.raises(fileio.DiskFullError, match="no space left.*rerun the same command"):
    run_sweep(wd)
  monkeypatch.undo()
  run_sweep(wd)
  assert_same_rows(reference[1], rows_of(wd))
  assert os.path.getsize(os.path.join(wd, "metrics.damaged.jsonl")) > 0


@pytest.mark.parametrize("line", [-1, 8])  # the last line; line 9 (step 100, run 2)
@pytest.mark.slow
def test_cut_line_is_moved_aside_and_recomputed(reference, tmp_path, line):
  """Today the broken line stays and its step is never recomputed."""
  wd = copy_of(reference, tmp_path)
  lines = lines_of(wd)
  cut = lines[line][:len(lines[line]) // 2]
  lines[line] = cut
  text = "\n".join(lines) + ("" if line == -1 else "\n")
  with open(os.path.join(wd, "metrics.jsonl"), "w") as f:
    f.write(text)
  run_sweep(wd)
  assert_same_rows(reference[1], rows_of(wd))
  with open(os.path.join(wd, "metrics.damaged.jsonl")) as f:
    assert f.read() == cut + "\n"


@pytest.mark.slow
def test_rows_without_checkpoint_are_reported_missing(reference, tmp_path, capsys):
  """Line 3 (step 50): no checkpoint of step 50 is kept, so its row is reported missing
  (and not written twice by anything else)."""
  wd = copy_of(reference, tmp_path)
  lines = lines_of(wd)
  lines[2] = lines[2][:20]
  with open(os.path.join(wd, "metrics.jsonl"), "w") as f:
    f.write("\n".join(lines) + "\n")
  run_sweep(wd)
  assert "step 50: the rows of runs [2] are missing" in capsys.readouterr().err
  ref = dict(reference[1])
  del ref[(50, 2)]
  assert_same_rows(ref, rows_of(wd))
  from jaxdiff.findings import report
  with open(report.write_report([wd])) as f:
    assert "the rows of runs [2] at step 50 are missing" in f.read()


# ------------------------------------------------------------------ checkpoints


@pytest.mark.slow
def test_latest_checkpoint_deleted(reference, tmp_path):
  """Today the rerun appends the rows of step 200 again (6 duplicates)."""
  wd = copy_of(reference, tmp_path)
  shutil.rmtree(os.path.join(wd, "checkpoints", "200"))
  run_sweep(wd)
  assert_same_rows(reference[1], rows_of(wd))
  assert checkpointing.Checkpointer(wd).latest_step() == 200


@pytest.mark.slow
def test_every_checkpoint_deleted(reference, tmp_path):
  """Today 18 duplicates: the sweep restarts from step 0 and rewrites every row."""
  wd = copy_of(reference, tmp_path)
  shutil.rmtree(os.path.join(wd, "checkpoints"))
  run_sweep(wd)
  assert_same_rows(reference[1], rows_of(wd))


def _corrupt_data(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, "state", "d"))
           for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.write(np.random.default_rng(0).bytes(os.path.getsize(biggest)))


def _corrupt_metadata(step_dir):
  with open(os.path.join(step_dir, "state", "_METADATA"), "w") as f:
    f.write("garbage{")


@pytest.mark.parametrize("corrupt", [_corrupt_data, _corrupt_metadata])
@pytest.mark.slow
def test_unreadable_latest_checkpoint_falls_back(reference, tmp_path, corrupt, capsys):
  """Today a 156-line orbax traceback; now it is named, moved aside, and step 100 used."""
  wd = copy_of(reference, tmp_path)
  corrupt(os.path.join(wd, "checkpoints", "200"))
  run_sweep(wd)
  err = capsys.readouterr().err
  assert "checkpoints/200 is unreadable" in err and "resumed" in err and "step 100" in err
  assert os.path.isdir(os.path.join(wd, checkpointing.UNREADABLE, "200"))
  assert_same_rows(reference[1], rows_of(wd))


@pytest.mark.slow
def test_no_readable_checkpoint_is_one_error(reference, tmp_path):
  wd = copy_of(reference, tmp_path)
  for step in ("100", "200"):
    _corrupt_metadata(os.path.join(wd, "checkpoints", step))
  with pytest.raises(WorkdirError, match=r"no readable checkpoint in .*checkpoints \(step 200"):
    run_sweep(wd)
  assert sorted(os.listdir(os.path.join(wd, checkpointing.UNREADABLE))) == ["100", "200"]


@pytest.mark.slow
def test_resume_on_four_devices_from_one(reference, tmp_path):
  """6 runs saved unpadded on 1 device, resumed padded to 8 on 4 devices (today a
  shape ValueError)."""
  wd = copy_of(reference, tmp_path)
  shutil.rmtree(os.path.join(wd, "checkpoints", "200"))
  drop_rows(wd, 200)
  run_sweep(wd, devices=jax.devices()[:4])
  assert_same_rows(reference[1], rows_of(wd), rtol=2e-4)


@pytest.mark.slow
def test_full_disk_during_checkpoint(reference, tmp_path, monkeypatch):
  """Today a traceback; now DiskFullError (one line, exit 2) and the rerun completes."""
  wd = copy_of(reference, tmp_path)
  shutil.rmtree(os.path.join(wd, "checkpoints", "200"))
  drop_rows(wd, 200)

  def full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(ocp.CheckpointManager, "save", full)
  with pytest.raises(fileio.DiskFullError, match="checkpoint of step 200"):
    run_sweep(wd)
  monkeypatch.undo()
  assert (200, 0) not in rows_of(wd)  # rows follow their checkpoint
  run_sweep(wd)
  assert_same_rows(reference[1], rows_of(wd))


# ------------------------------------------------------------------ divergence


@pytest.mark.slow
def test_parameters_non_finite_on_the_last_step_of_a_chunk(reference, tmp_path):
  """Today the loss check misses it and the evaluation crashes for every run; now run 2
  is frozen and marked, the others are evaluated as in the reference."""
  wd = copy_of(reference, tmp_path)
  shutil.rmtree(os.path.join(wd, "checkpoints", "200"))
  drop_rows(wd, 200)
  sweep = train.Sweep(config(), wd, devices=jax.devices()[:1])
  chunk = sweep.programs.chunk

  def poisoned(state, inputs, pool, num_steps):
    out = chunk(state, inputs, pool, num_steps)
    return out.replace(params=jax.tree.map(lambda x: x.at[2].set(np.nan), out.params))
  sweep.programs.chunk = poisoned
  with pytest.raises(train.TrainingDiverged, match=r"1 of 6 runs diverged.*run 2 .*"
                     r"non-finite parameters between steps 100 and 200") as e:
    sweep.run()
  assert e.value.exit_code == train.EXIT_DIVERGED
  got = rows_of(wd)
  assert_same_rows(reference[1], got, only=lambda r: not (r["step"] == 200 and r["run"] == 2))
  assert got[(200, 2)]["diverged"]["frozen_at"] == 100 and got[(200, 2)]["f_mem"] is None
  runs = json.load(open(os.path.join(wd, "runs.json")))
  assert runs[2]["diverged"]["step"] == 200 and runs[0]["diverged"] is None
  from jaxdiff.findings import report
  with open(report.write_report([wd])) as f:
    assert "run 2 (n=16, seed=0, lr=0.001) diverged at step 200" in f.read()


@pytest.mark.slow
def test_one_diverging_run_leaves_the_others(reference, tmp_path):
  """--config.optim.lr=1e-3,1e6: today all 12 runs stop; now the 6 runs at 1e6 are frozen
  and marked and the 6 at 1e-3 train to the end with the reference's numbers (to float32
  reassociation: 12 runs batched by vmap against 6)."""
  wd = str(tmp_path / "wd")
  with pytest.raises(train.TrainingDiverged, match="6 of 12 runs diverged"):
    run_sweep(wd, config(**{"optim.lr": (1e-3, 1e6)}))
  key = ("step", "n", "seed", "lr")
  got = rows_of(wd, key)
  ref = {(r["step"], r["n"], r["seed"], r["lr"]): r for r in reference[1].values()}
  good = {k: dict(r, run=None) for k, r in got.items() if r["lr"] == 1e-3}
  assert_same_rows({k: dict(r, run=None) for k, r in ref.items()}, good, rtol=2e-4)
  bad = [r for r in got.values() if r["lr"] == 1e6]
  assert len(bad) == 18 and all(r["diverged"] and r["f_mem"] is None for r in bad)
  runs = json.load(open(os.path.join(wd, "runs.json")))
  assert sorted(r["run"] for r in runs if r["diverged"]) == sorted(
      {r["run"] for r in bad})


# ------------------------------------------------------------------ set-up faults


def test_refused_config_leaves_the_workdir_unclaimed(tmp_path):
  """Today config.json is written before the data check, so the corrected command is
  refused as a different config."""
  wd = str(tmp_path / "wd")
  with pytest.raises(JaxdiffError, match="n_train"):
    train.Sweep(config(**{"data.n_train": (8, 16, 5000)}), wd, devices=jax.devices()[:1])
  assert not os.path.exists(os.path.join(wd, "config.json"))
  sweep = train.Sweep(config(), wd, devices=jax.devices()[:1])
  sweep.claim.release()
  assert os.path.exists(os.path.join(wd, "config.json"))


def test_unusable_workdir_paths(tmp_path, monkeypatch):
  afile = tmp_path / "afile"
  afile.write_text("x")
  with pytest.raises(WorkdirError, match="is a file, not a directory"):
    workdir_lib.claim(str(afile), {})
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o555)
  if os.geteuid() == 0:  # root writes anyway: simulate the refusal of the filesystem
    monkeypatch.setattr(os, "access", lambda path, mode: False)
  with pytest.raises(WorkdirError, match="is not writable"):
    workdir_lib.claim(str(ro), {})


# ------------------------------------------------------------------ SIGTERM


@pytest.mark.slow  # a CLI sweep in a subprocess (the in-process resume: train_test)
def test_sigterm_exits_75_and_resumes(reference, tmp_path):
  """Today SIGTERM exits 0; now the documented code 75, and the rerun completes the rows."""
  wd = str(tmp_path / "wd")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  proc = subprocess.Popen([sys.executable, "-m", "jaxdiff.main", "--config=configs/test.py",
                           "--config.train.models_axis=vmap", f"--workdir={wd}"],
                          cwd=ROOT, env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  metrics = os.path.join(wd, "metrics.jsonl")
  deadline = time.time() + 400
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
      break
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=400)
  assert proc.returncode == train.EXIT_STOPPED, err[-2000:]
  assert "rerun the same command to resume" in err and "Traceback" not in err
  run_sweep(wd)
  assert_same_rows(reference[1], rows_of(wd))


@pytest.mark.slow
def test_cli_exit_code_when_some_runs_diverge(tmp_path):
  """The command line ends with exit code 3, the report written and one error line."""
  wd = str(tmp_path / "wd")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  result = subprocess.run(
      [sys.executable, "-m", "jaxdiff.main", "--config=configs/test.py", f"--workdir={wd}",
       "--config.optim.lr=1e-3,1e6", "--config.data.n_train=8", "--config.data.seeds=0",
       "--config.train.num_steps=50", "--config.eval.times=50"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == train.EXIT_DIVERGED, result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert len(errors) == 1 and "1 of 2 runs diverged" in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr and "report written to" in result.stdout
