"""Several processes as one JAX system: jax.distributed on 127.0.0.1, CPU devices, gloo.

Two processes with 2 CPU devices each run `python -m jaxdiff.main` on ONE workdir, as the
workers of a pod would: the first launch stops at step 20, the second resumes from the
checkpoint both processes wrote. The metrics must equal, exactly, those of the same sweep
in one process with 4 devices, with each row written once (by process 0). Plus the
environment rules of `distributed.distributed_settings` and what happens when a peer never
arrives.

Every subprocess runs in its own session and is killed with its group on a timeout; each
test waits for all of them, so none is left behind (nor a zombie).
"""

import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import test as test_config
from jaxdiff import checkpointing
from jaxdiff import fileio
from jaxdiff import distributed
from jaxdiff import train
from jaxdiff.errors import JaxdiffError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMERIC = ("loss", "train_loss", "train_loss_std", "test_loss", "test_loss_std", "f_mem",
           "f_mem_lo", "f_mem_hi", "f_mem_k0.5", "f_mem_k0.25", "ratio_median", "quality",
           "quality_std")
# configs/test.py (6 runs, MLP on 8x8 digits) shortened: 40 steps, evaluations at 20 and 40;
# a device's 2 runs batched with vmap (one copy of the step to compile in each of the five
# launches, not two; the layout is the same in both processes and the reference).
OVERRIDES = {"train.num_steps": 40, "eval.times": (20, 40), "train.steps_per_dispatch": 20,
             "report.auto": False, "train.models_axis": "vmap"}
LAUNCH_TIMEOUT = 240  # seconds; a launch takes ~15 s here


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def flag(key, value):
  if isinstance(value, tuple):
    value = ",".join(str(v) for v in value)
  return f"--config.{key}={value}"


def env_for(process_id=None, num_processes=None, port=None, devices=2, init_timeout=60):
  e = dict(os.environ)
  for name in list(e):  # nothing from the pytest process's own JAX set-up or a cluster
    if name.startswith(("JAXDIFF_", "SLURM_", "OMPI_", "TPU_", "MEGASCALE_")):
      del e[name]
  e.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), PYTHONUNBUFFERED="1")
  # The session's compilation cache (tests/conftest.py): the second launch reuses the
  # programs the first one compiled.
  e["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir or ""
  e["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  if num_processes is not None:
    e.update(JAXDIFF_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
             JAXDIFF_NUM_PROCESSES=str(num_processes), JAXDIFF_PROCESS_ID=str(process_id),
             JAXDIFF_INIT_TIMEOUT=str(init_timeout))
  return e


@contextlib.contextmanager
def processes():
  """Popen-like starter; on exit every started process group is killed and reaped."""
  started = []

  def start(args, env, log_path, cwd=ROOT):
    log = open(log_path, "w")
    p = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    p.log_path, p.log = log_path, log
    started.append(p)
    return p

  try:
    yield start
  finally:
    for p in started:
      if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
          os.killpg(p.pid, signal.SIGKILL)
      p.wait()
      p.log.close()


def wait_all(procs, timeout):
  """Return codes of all processes; kills them all (and fails) past the deadline."""
  deadline = time.time() + timeout
  for p in procs:
    try:
      p.wait(timeout=max(0.1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      for q in procs:
        with contextlib.suppress(ProcessLookupError):
          os.killpg(q.pid, signal.SIGKILL)
      for q in procs:
        q.wait()
      pytest.fail(f"processes still running after {timeout} s; logs: "
                  + " ".join(q.log_path for q in procs))
  return [p.returncode for p in procs]


def log_text(p):
  p.log.flush()
  with open(p.log_path) as f:
    return f.read()


def launch(start, workdir, logs, tag, overrides, num_processes=2):
  port = free_port()
  args = [sys.executable, "-m", "jaxdiff.main", "--config=configs/test.py",
          f"--workdir={workdir}"] + [flag(k, v) for k, v in overrides.items()]
  procs = [start(args, env_for(i, num_processes, port), os.path.join(logs, f"{tag}{i}.log"))
           for i in range(num_processes)]
  codes = wait_all(procs, LAUNCH_TIMEOUT)
  for p, code in zip(procs, codes):
    assert code == 0, log_text(p)[-3000:]
  return [log_text(p) for p in procs]


def reference_config():
  c = test_config.get_config()
  for key, value in OVERRIDES.items():
    section, name = key.split(".")
    c[section][name] = value
  return c


@pytest.mark.slow  # five sweeps, four of them jaxdiff.main launches
def test_two_processes_equal_one_process_with_resume(tmp_path):
  # The reference: the same sweep in this (one) process on 4 of its 8 CPU devices.
  ref = str(tmp_path / "one")
  train.train_and_evaluate(reference_config(), ref, devices=jax.devices()[:4])

  workdir, logs = str(tmp_path / "two"), str(tmp_path)
  with processes() as start:
    first = launch(start, workdir, logs, "first",
                   dict(OVERRIDES, **{"train.num_steps": 20, "eval.times": (20,)}))
    second = launch(start, workdir, logs, "second", OVERRIDES)

  # Each process saw the 4 devices of both; process 0 resumed from the shared checkpoint.
  assert "process 1/2, 4 cpu device(s)" in first[0]
  assert "resumed" in second[0] and "at step 20" in second[0]
  # Only process 0 reports and writes.
  for text in (first[1], second[1]):
    assert "jaxdiff: step" not in text and "resumed" not in text and "jaxdiff: error" not in text

  rows = fileio.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  ref_rows = fileio.read_jsonl(os.path.join(ref, "metrics.jsonl"))
  keys = [(r["step"], r["run"]) for r in rows]
  assert len(keys) == len(set(keys)) == 2 * 6  # one copy of each (step, run) row
  assert sorted(keys) == sorted((r["step"], r["run"]) for r in ref_rows)
  by_key = {(r["step"], r["run"]): r for r in rows}
  for r in ref_rows:
    got = by_key[(r["step"], r["run"])]
    for name in NUMERIC:
      assert got[name] == r[name], (r["step"], r["run"], name, got[name], r[name])
  assert json.load(open(os.path.join(workdir, "runs.json"))) == json.load(
      open(os.path.join(ref, "runs.json")))

  # The final checkpoint (each process wrote its devices' shards) holds the same state.
  got = checkpointing.Checkpointer(workdir).restore_arrays()
  want = checkpointing.Checkpointer(ref).restore_arrays()
  jax.tree.map(np.testing.assert_array_equal, got["params"], want["params"])
  jax.tree.map(np.testing.assert_array_equal, got["opt_state"], want["opt_state"])

  # TensorBoard events and sample grids from process 0 only: one events file per launch.
  assert len(glob.glob(os.path.join(workdir, "tensorboard", "events.*"))) == 2
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == sorted(
      os.listdir(os.path.join(ref, "samples")))


@pytest.mark.slow
def test_missing_peer_aborts_after_the_timeout_with_a_reason(tmp_path):
  """Process 0 of 2 alone: JAX aborts at JAXDIFF_INIT_TIMEOUT; jaxdiff says why first."""
  env = env_for(0, 2, free_port(), init_timeout=2)
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
  with processes() as start:
    # JAX aborts the process: run it in tmp_path, where a core file would do no harm.
    p = start([sys.executable, "-m", "jaxdiff.main",
               f"--config={os.path.join(ROOT, 'configs', 'test.py')}",
               f"--workdir={tmp_path / 'wd'}"], env, str(tmp_path / "alone.log"),
              cwd=str(tmp_path))
    (code,) = wait_all([p], 120)
    text = log_text(p)
  assert code != 0
  lines = [l for l in text.splitlines() if l.startswith("jaxdiff: error:")]
  assert len(lines) == 1 and "have not all connected" in lines[0], text[-2000:]
  assert "JAXDIFF_INIT_TIMEOUT" in lines[0]
  assert not os.path.exists(tmp_path / "wd" / "config.json")


# ------------------------------------------------------- environment -> initialize


def test_one_host_does_nothing():
  assert distributed.distributed_settings({}) is None
  assert distributed.distributed_settings({"HOME": "/root", "JAXDIFF_DISTRIBUTED": "auto"}) is None
  # A single SLURM task or a one-worker TPU VM is one host.
  single = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1",
            "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
  assert distributed.distributed_settings(single) is None
  assert distributed.distributed_settings({"TPU_WORKER_HOSTNAMES": "localhost"}) is None
  assert distributed.distributed_settings({
      "JAXDIFF_COORDINATOR_ADDRESS": "h:1", "JAXDIFF_NUM_PROCESSES": "1",
      "JAXDIFF_PROCESS_ID": "0"}) is None
  assert distributed.maybe_initialize_distributed({}) is False


def test_explicit_variables():
  s = distributed.distributed_settings({
      "JAXDIFF_COORDINATOR_ADDRESS": "10.0.0.1:8476", "JAXDIFF_NUM_PROCESSES": "4",
      "JAXDIFF_PROCESS_ID": "3", "JAXDIFF_INIT_TIMEOUT": "20"})
  assert s.source == "explicit"
  assert dict(s.kwargs) == dict(coordinator_address="10.0.0.1:8476", num_processes=4,
                                process_id=3, initialization_timeout=20)
  # JAXDIFF_DISTRIBUTED=off wins over everything.
  assert distributed.distributed_settings({
      "JAXDIFF_DISTRIBUTED": "off", "JAXDIFF_COORDINATOR_ADDRESS": "10.0.0.1:8476",
      "JAXDIFF_NUM_PROCESSES": "4", "JAXDIFF_PROCESS_ID": "3"}) is None


@pytest.mark.parametrize("env,expected", [
    ({"JAXDIFF_COORDINATOR_ADDRESS": "h:1", "JAXDIFF_NUM_PROCESSES": "2"},
     "JAXDIFF_PROCESS_ID is not set"),
    ({"JAXDIFF_NUM_PROCESSES": "2", "JAXDIFF_PROCESS_ID": "0"},
     "JAXDIFF_COORDINATOR_ADDRESS is not set"),
    ({"JAXDIFF_COORDINATOR_ADDRESS": "h", "JAXDIFF_NUM_PROCESSES": "2",
      "JAXDIFF_PROCESS_ID": "0"}, "expected host:port"),
    ({"JAXDIFF_COORDINATOR_ADDRESS": "h:1", "JAXDIFF_NUM_PROCESSES": "two",
      "JAXDIFF_PROCESS_ID": "0"}, "JAXDIFF_NUM_PROCESSES='two': expected an integer >= 1"),
    ({"JAXDIFF_COORDINATOR_ADDRESS": "h:1", "JAXDIFF_NUM_PROCESSES": "2",
      "JAXDIFF_PROCESS_ID": "2"}, "expected an integer in [0, 1]"),
    ({"JAXDIFF_INIT_TIMEOUT": "0"}, "JAXDIFF_INIT_TIMEOUT='0': expected an integer >= 1"),
    ({"JAXDIFF_DISTRIBUTED": "maybe"}, "expected one of auto, on, off"),
])
def test_bad_variables_are_one_line_errors(env, expected):
  with pytest.raises(JaxdiffError) as e:
    distributed.distributed_settings(env)
  assert expected in str(e.value) and "\n" not in str(e.value)


SLURM = {"SLURM_JOB_ID": "12", "SLURM_STEP_NODELIST": "gpu[01-04]", "SLURM_PROCID": "1",
         "SLURM_LOCALID": "0"}


def test_slurm_one_process_per_host_sees_all_its_gpus():
  # sbatch --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 (launch/slurm_gpu.sh).
  s = distributed.distributed_settings(dict(SLURM, SLURM_NTASKS="4", SLURM_NTASKS_PER_NODE="1",
                                         CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7"))
  assert s.source == "slurm" and s.kwargs["local_device_ids"] == list(range(8))
  assert s.kwargs["initialization_timeout"] == 300
  # Tasks per node from the counts; GPUs from SLURM_GPUS_ON_NODE.
  s = distributed.distributed_settings(dict(SLURM, SLURM_NTASKS="4", SLURM_STEP_NUM_NODES="4",
                                         SLURM_GPUS_ON_NODE="4"))
  assert s.kwargs["local_device_ids"] == [0, 1, 2, 3]
  # One process per GPU (JAX's SLURM default) or the user's own choice: left to JAX.
  s = distributed.distributed_settings(dict(SLURM, SLURM_NTASKS="32", SLURM_NTASKS_PER_NODE="8",
                                         CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7"))
  assert s.source == "slurm" and "local_device_ids" not in s.kwargs
  s = distributed.distributed_settings(dict(SLURM, SLURM_NTASKS="4", SLURM_NTASKS_PER_NODE="1",
                                         JAX_LOCAL_DEVICE_IDS="0,1"))
  assert "local_device_ids" not in s.kwargs


def test_other_clusters_use_jax_auto_detection():
  s = distributed.distributed_settings({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "2"})
  assert s.source == "open_mpi" and set(s.kwargs) == {"initialization_timeout"}
  s = distributed.distributed_settings({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"})
  assert s.source == "tpu" and set(s.kwargs) == {"initialization_timeout"}
  s = distributed.distributed_settings({"MEGASCALE_NUM_SLICES": "2"})
  assert s.source == "tpu"
  # Cloud TPU VMs (launch/tpu_pod.sh): only the metadata server knows the workers.
  s = distributed.distributed_settings({"JAXDIFF_DISTRIBUTED": "on", "JAXDIFF_INIT_TIMEOUT": "9"})
  assert s.source == "forced" and dict(s.kwargs) == {"initialization_timeout": 9}


AGREEMENT = r"""
import jax
from jaxdiff import distributed
from jaxdiff.errors import JaxdiffError
assert distributed.maybe_initialize_distributed()
me = jax.process_index()
print("FLAGS", distributed.any_process(me == 1, False, True), flush=True)
try:
  distributed.check_same_on_all_processes(f"the config of process {me}", "the config")
  print("SAME", flush=True)
except JaxdiffError as e:
  print("ERROR", e, flush=True)
distributed.check_same_on_all_processes("same", "a barrier")
print("DONE", flush=True)
"""


def test_processes_take_decisions_together_and_refuse_different_configs(tmp_path):
  """2 processes: a flag set on one holds for both; different configs fail on both."""
  port = free_port()
  with processes() as start:
    procs = [start([sys.executable, "-c", AGREEMENT], env_for(i, 2, port, devices=1),
                   str(tmp_path / f"agree{i}.log")) for i in range(2)]
    codes = wait_all(procs, LAUNCH_TIMEOUT)
    texts = [log_text(p) for p in procs]
  for code, text in zip(codes, texts):
    assert code == 0, text[-2000:]
    assert "FLAGS (True, False, True)" in text, text[-2000:]
    assert ("ERROR the processes of this launch disagree about the config (process 0 vs "
            "processes [1])") in text, text[-2000:]
    assert "SAME" not in text and "DONE" in text
  assert distributed.any_process(True, False) == (True, False)  # one process: the flags
  distributed.check_same_on_all_processes("anything", "the config")  # one process: returns
