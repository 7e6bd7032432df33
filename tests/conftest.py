"""Test set-up shared by every test file.

Eight fake CPU devices are created before JAX starts, so sharding tests can compare
1 device against 8 in one process (optax's sharding tests do the same). Plots use the
non-interactive Agg backend.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# XLA:CPU compiles at LLVM's optimisation level 0 in the tests, not the default 2: most
# test programs are small and run a few steps, so compiling dominates. Measured on the
# 2-core machine: an MLP sweep's init, chunk and evaluation compile in 4.7 s at level 0,
# 6.1 s at 1, 7.5-9.5 s at 2; train_test and sharding_test together take 113-125 s at
# level 0 against 136-157 s at level 1. Level-0 code runs long loops slower (a 300-step
# classifier training: 114 s against 14 s at level 1), so the few tests whose steps
# dominate keep their loops short. HLO passes, fusion and buffer assignment are the same
# at every level (memory and collective checks do not change). The value replaces any
# XLA_FLAGS of the caller's shell (a forced device count would change the tests' meshes)
# and is inherited by the tests' subprocesses; JAXDIFF_TEST_XLA_FLAGS overrides it.
# Two more XLA:CPU flags cut compile time: the legacy elemental loop emitters instead of
# the newer fusion emitters (--xla_cpu_use_fusion_emitters=false: train_test's compiles
# 31 s -> 19 s, the whole suite 6 min 55 s -> 5 min 54 s, one run each), and one LLVM
# module per program instead of parallel codegen splits
# (--xla_cpu_parallel_codegen_split_count=1: 19 s -> 17 s; two xdist workers on two
# cores leave no core for the splits). The fusions differ (configs/test.py's chunk: 226
# against 262) and so can temporaries: configs/test.py's chunk and evaluation and the
# device check's U-Net chunks keep theirs, that U-Net's evaluation has 409,496 B against
# 553,368. The memory tests compare programs compiled under the same flags.
# On a machine with an NVIDIA GPU (the `gpu` tests of benchmarks/device_check.sh) XLA's
# defaults stay: the level applies to GPU kernels too.
import shutil  # noqa: E402

TEST_XLA_FLAGS = os.environ.get(
    "JAXDIFF_TEST_XLA_FLAGS",
    "" if shutil.which("nvidia-smi") else
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    " --xla_cpu_parallel_codegen_split_count=1")
os.environ["XLA_FLAGS"] = TEST_XLA_FLAGS

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import importlib.util  # noqa: E402

import pytest  # noqa: E402


# The longest test files, longest first (by their durations on the 2-core development
# machine). `--dist loadfile` hands files to the workers in collection order once
# xdist's own reordering (by number of tests) is off (pytest_configure), so starting the
# long ones first keeps one worker from running a 2-minute file alone at the end (the
# longest-processing-time-first rule). Files not listed follow in pytest's order. A
# stale list costs only balance, never a result.
LONGEST_FIRST = (
    "device_check_test.py", "faults_test.py", "train_test.py", "mixed_precision_test.py",
    "plan_test.py", "compile_check_test.py", "multiprocess_test.py", "theory_study_test.py",
    "advise_test.py", "sharding_test.py", "main_test.py", "gmm_metrics_test.py",
    "conditional_test.py", "quality_test.py", "unet_test.py", "remat_test.py",
    "diffusion_test.py", "report_test.py", "inception_test.py", "summary_test.py",
)


def _file_rank(item) -> int:
  name = os.path.basename(str(item.fspath))
  return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
  items.sort(key=_file_rank)  # stable: the order inside a file is kept
  on_accelerator = jax.default_backend() != "cpu"
  has_torch = importlib.util.find_spec("torch") is not None
  skip_gpu = pytest.mark.skip(reason="needs an accelerator")
  skip_torch = pytest.mark.skip(reason="needs torch (pip install -e '.[torch]')")
  for item in items:
    if "gpu" in item.keywords and not on_accelerator:
      item.add_marker(skip_gpu)
    if "torch" in item.keywords and not has_torch:
      item.add_marker(skip_torch)

# Sweeps with identical programs (a reference run and its resumed twin, configs/test.py in
# several files) compile once per test session: JAX's persistent compilation cache, in a
# directory of this session. Under pytest-xdist the workers of one run share it (their
# run id names it), so a program compiled by one worker is loaded by the other; a size
# limit turns on the cache's file lock, so that two workers never read a half-written entry.
import tempfile  # noqa: E402

_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN_ID:
  _CACHE = os.path.join(tempfile.gettempdir(), f"jaxdiff-xla-cache-{_RUN_ID}")
  os.makedirs(_CACHE, exist_ok=True)
else:
  _CACHE = tempfile.mkdtemp(prefix="jaxdiff-xla-cache-")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_compilation_cache_max_size", 16 * 2**30)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_configure(config):
  if hasattr(config.option, "loadscopereorder"):  # xdist: keep LONGEST_FIRST's order
    config.option.loadscopereorder = False
  # The controller of an xdist run fixes the run id its workers name the cache by, so
  # that it can remove the cache when the run ends.
  if not hasattr(config, "workerinput") and config.pluginmanager.hasplugin("xdist"):
    if getattr(config.option, "testrunuid", "") is None:
      import uuid
      config.option.testrunuid = uuid.uuid4().hex


def pytest_unconfigure(config):
  # One test run's cache is of no use to the next (new code, new programs): removed by
  # the process that owns it (the xdist controller, or a run without workers).
  if hasattr(config, "workerinput"):
    return
  import shutil
  run_id = getattr(config.option, "testrunuid", None)
  for path in {_CACHE if not _RUN_ID else None,
               os.path.join(tempfile.gettempdir(), f"jaxdiff-xla-cache-{run_id}")
               if run_id else None} - {None}:
    shutil.rmtree(path, ignore_errors=True)
