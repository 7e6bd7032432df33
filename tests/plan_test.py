"""Capacity planning (`python -m jaxdiff.plan`): what a sweep needs per device, and refusals.

The CLI runs as a user runs it (a subprocess with 2 CPU devices, the session's compilation
cache shared so that the same programs compile once); the numbers are checked through the
Python API against closed forms: the residual MLP's parameter count (paper SM B:
p = W(2d + 13) + d + 6W^2) and Adam's two moments per parameter.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import pytest

from jaxdiff import plan
from jaxdiff.errors import JaxdiffError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, D = 32, 64  # configs/test.py: MLP width 32 on 8x8 digits (d = 64)
MLP_PARAMS = W * (2 * D + 13) + D + 6 * W * W  # 10,720


def run_plan(*args, devices=2):
  env = dict(os.environ)
  env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices),
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  return subprocess.run([sys.executable, "-m", "jaxdiff.plan", "--config=configs/test.py",
                         *args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)


@pytest.fixture(scope="module")
def text_plan():
  return run_plan("--probe_steps=5")


@pytest.mark.slow
def test_plan_names_runs_parameters_memory_and_speed(text_plan):
  assert text_plan.returncode == 0, text_plan.stderr[-3000:]
  out = text_plan.stdout
  assert "runs: 6 (n = 8..32: 3 values x 2 seeds x 1 data blocks x 1 lr)" in out
  assert "mesh: 2 models x 1 data over 2 cpu device(s)" in out
  assert "3 run(s) per device" in out
  assert f"parameters: {MLP_PARAMS:,} per run" in out
  for what in ("resident per device", "activations and temporaries",
               "estimated peak per device", "model-steps/s", "cross-device operations: "
               "chunk none, evaluation none"):
    assert what in out, what
  assert out.rstrip().endswith("fits")


@pytest.mark.slow
def test_plan_numbers(text_plan):
  """The same plan as JSON (its programs come from the compilation cache)."""
  result = run_plan("--json", "--probe_steps=2")
  assert result.returncode == 0, result.stderr[-3000:]
  p = json.loads(result.stdout)
  assert p["num_params"] == MLP_PARAMS and p["runs_per_device"] == 3
  # Per device: 3 runs' float32 parameters; Adam keeps two moments of each.
  r = p["resident"]
  assert r["params"] == 3 * MLP_PARAMS * 4
  assert 2 * r["params"] <= r["opt_state"] < 2 * r["params"] + 1024
  assert p["chunk"]["temporaries"] > 0 and p["evaluation"]["temporaries"] > 0
  assert p["chunk"]["outputs"] - p["chunk"]["aliased"] < 1024  # the state is donated
  assert p["estimate"] == r["total"] + max(p["chunk"]["extra"], p["evaluation"]["extra"])
  assert p["fits"] and p["probe_steps"] == 2 and p["model_steps_per_s"] > 0
  assert p["collectives"] == {"chunk": {}, "evaluate": {}}


@pytest.mark.slow
def test_a_layout_that_does_not_fit_is_refused_with_one_line(text_plan):
  result = run_plan("--device_memory=256KiB", "--probe_steps=0")
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert errors[0].startswith("jaxdiff: error: does not fit:")
  assert "256 KiB (--device_memory)" in errors[0]
  assert "fewer runs per device (now 3" in errors[0]
  assert "does not fit" in result.stdout and "probe:" not in result.stdout


@pytest.mark.slow
def test_refusal_proposes_a_models_group_that_fits(text_plan):
  # Resident ~420 KiB and ~130 KiB of temporaries per run (3 per device): 800 kB leave
  # room for the temporaries of 2 runs, not 3.
  result = run_plan("--device_memory=800000", "--probe_steps=0", "--json")
  assert result.returncode == 2, result.stderr[-3000:]
  p = json.loads(result.stdout)
  room = 0.9 * 800000 - p["resident"]["total"]
  per_run = max(p["chunk"]["extra"], p["evaluation"]["extra"]) / 3
  (error,) = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert f"train.models_group={int(room // per_run)} (computes" in error, error
  assert 1 <= int(room // per_run) < 3


@pytest.mark.slow
def test_huge_sample_batch_is_refused_naming_it(text_plan):
  result = run_plan("--config.eval.num_samples=200000", "--config.eval.sample_batch=200000",
                    "--device_memory=256MiB", "--probe_steps=0", "--json")
  assert result.returncode == 2, result.stderr[-3000:]
  p = json.loads(result.stdout)
  # The samples generated together, their distances to the training set and their
  # quality features: the evaluation, not the train step, is what does not fit.
  assert not p["fits"] and p["evaluation"]["extra"] > 0.9 * 256 * 2**20
  assert p["evaluation"]["extra"] > 100 * p["chunk"]["extra"]
  (error,) = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert "the evaluation" in error and "eval.sample_batch (now 200000" in error


def test_parse_bytes():
  assert plan.parse_bytes("16GiB") == 16 * 2**30
  assert plan.parse_bytes("512MB") == 512 * 10**6
  assert plan.parse_bytes("1e9") == 10**9
  assert plan.parse_bytes("2048") == 2048
  for bad in ("lots", "-1GiB", "0", "12XB"):
    with pytest.raises(JaxdiffError, match="--device_memory"):
      plan.parse_bytes(bad)


# ------------------------------------------------------------------------ roofline


def test_accelerator_table_names_the_chips_and_their_sources():
  names = {a.name for a in plan.ACCELERATORS}
  assert {"H100 SXM", "H200 SXM", "A100 SXM 80GB", "TPU v4", "TPU v5e", "TPU v5p"} <= names
  for a in plan.ACCELERATORS:
    assert a.bf16_tflops > 0 and a.f32_tflops > 0 and a.hbm_tbps > 0 and a.memory_gb > 0
    assert a.source
  kinds = {"NVIDIA H100 80GB HBM3": "H100 SXM", "NVIDIA H200": "H200 SXM",
           "NVIDIA A100-SXM4-80GB": "A100 SXM 80GB", "TPU v4": "TPU v4",
           "TPU v5 lite": "TPU v5e", "TPU v5": "TPU v5p", "TPU v5p": "TPU v5p"}
  for kind, name in kinds.items():
    assert plan.accelerator_named(kind).name == name, kind
  assert plan.accelerator_named("cpu") is None


def test_step_bound_is_the_larger_of_compute_and_memory_time():
  h100 = plan.accelerator_named("NVIDIA H100 80GB HBM3")
  compute_bound = plan.StepCost(flops=1.74e12, bytes_accessed=1e9, temporaries=0,
                                dtype="bfloat16", platform="gpu")
  seconds, which = compute_bound.bound_s(h100)
  assert which == "compute" and seconds == pytest.approx(1.74e12 / 989e12)
  # float32 inputs run at the TF32 peak, half the bf16 one on an H100.
  f32 = dataclasses.replace(compute_bound, dtype="float32")
  assert f32.bound_s(h100)[0] == pytest.approx(2 * seconds, rel=0.01)
  memory_bound = dataclasses.replace(compute_bound, bytes_accessed=1e13)
  seconds, which = memory_bound.bound_s(h100)
  assert which == "memory" and seconds == pytest.approx(1e13 / 3.35e12)


def test_fit_choice_prefers_float32_and_the_least_recomputation():
  gb = 1e9
  opts = [plan.MemoryOption(r, d, 0, 0, int(total * gb)) for r, d, total in [
      ("none", "float32", 200), ("none", "bfloat16", 140), ("convs", "float32", 60),
      ("convs", "bfloat16", 40), ("full", "float32", 30), ("full", "bfloat16", 20)]]
  assert plan._fit_choice(opts, 80 * gb).remat == "convs"       # 60 <= 0.9 * 80
  assert plan._fit_choice(opts, 80 * gb).dtype == "float32"
  assert plan._fit_choice(opts, 250 * gb).remat == "none"
  assert (plan._fit_choice(opts, 30 * gb).remat, plan._fit_choice(opts, 30 * gb).dtype) == (
      "full", "bfloat16")                                       # only 20 <= 27
  assert plan._fit_choice(opts, 10 * gb) is None


@pytest.mark.slow
def test_refusal_is_consistent_with_the_machine_and_says_when_nothing_fits():
  """One device, one run computed at a time, and not even that fits: no data_parallel
  beyond the device count, no 'fewer runs per device' when models_group is already set,
  a verdict that one run at a time does not fit, and --device_memory named."""
  result = run_plan("--device_memory=1200000", "--probe_steps=0",
                    "--config.train.models_group=1", devices=1)
  assert result.returncode == 2, result.stderr[-3000:]
  (error,) = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert "one run at a time does not fit either" in error, error
  assert "train.data_parallel" not in error and "fewer runs per device" not in error, error
  assert "train.models_group=" not in error, error
  # Progress lines while compiling, before the verdict.
  assert "jaxdiff: plan: compiling the train chunk" in result.stderr
  result = run_plan("--device_memory=800000", "--probe_steps=0", "--roofline=false")
  (error,) = [l for l in result.stderr.splitlines() if l.startswith("jaxdiff: error:")]
  assert "rehearse" not in error  # already given
