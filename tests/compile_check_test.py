"""The paper's CelebA sweep compiles for a 16-device mesh, before any pod is booted.

A subprocess with 16 fake CPU devices (this test process has 8, tests/conftest.py) builds
the real programs of configs/celeba.py (U-Net W=32, 32x32 grayscale, batch 512, FID with
pytorch-fid's Inception) from shapes alone (`plan.make_plan`: no dataset, no weights),
lowers and compiles the train chunk and the evaluation, and reports what XLA made of them.

The layout is the accelerator one: 16 runs (8 values of n x 2 seeds) on a mesh of 8
'models' x 2 'data' devices, 2 runs per device batched with vmap (train.models_axis=auto
picks vmap on GPU/TPU), each run's batch of 512 split over its 2 'data' devices. That
covers the three ways a sharding can go wrong: the models axis split over devices, several
runs per device, and the psum over 'data'. The chunk is compiled once (vmap), not the
CPU's unrolled variant (one copy of the step per run), which the other tests run.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import dataclasses, json
import jax
from configs import celeba
from jaxdiff import plan

c = celeba.get_config()
c.data.n_train = tuple(128 * 2**i for i in range(8))
c.data.seeds = (0, 1)
c.train.models_axis = "vmap"
c.train.data_parallel = 2
c.eval.quality = "fid"
c.eval.inception_weights = "never-read.npz"
# No roofline: its step compiled alone (10 s of this test's 32 here) is plan_test's.
p = plan.make_plan(c, probe_steps=0, device_memory=2**40, roofline=False)
print("RESULT " + json.dumps(dict(
    devices=jax.device_count(), mesh=p.mesh_shape, runs=p.num_runs, padded=p.num_padded,
    per_device=p.runs_per_device, strategy=p.strategy, batch=p.table.batch,
    num_params=p.num_params, resident=p.resident, chunk=dataclasses.asdict(p.chunk),
    evaluation=dataclasses.asdict(p.evaluation), collectives=p.collectives,
    compile_s=p.compile_s)))
"""


@pytest.mark.slow  # ~25 s on 2 idle cores: the paper U-Net and Inception for 16 devices
def test_celeba_sweep_compiles_for_16_devices():
  env = dict(os.environ)
  env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="16")
  result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
  r = json.loads(line[len("RESULT "):])

  assert r["devices"] == 16 and r["mesh"] == {"models": 8, "data": 2}
  assert (r["runs"], r["padded"], r["per_device"]) == (16, 16, 2)
  assert r["strategy"] == "vmap" and r["batch"] == 512
  # The paper's U-Net at W = 32: 4.023 M parameters (paper.md 1.2, mult (1, 2, 4)).
  assert abs(r["num_params"] - 4.023e6) < 0.0005e6, r["num_params"]
  # Each device holds its 2 runs' parameters (models-sharded, replicated over 'data').
  assert r["resident"]["params"] == 2 * r["num_params"] * 4
  # The train state is donated: the chunk updates it in place (no second copy).
  chunk = r["chunk"]
  assert chunk["outputs"] - chunk["aliased"] < 0.01 * r["resident"]["state"], chunk
  assert chunk["temporaries"] > 0
  # Runs never communicate: the step only sums gradients over each run's 2 'data'
  # devices; the evaluation has no cross-device operation at all.
  ops = r["collectives"]
  assert set(ops["chunk"]) == {"all-reduce"}, ops
  assert set(ops["chunk"]["all-reduce"]) == {2}, ops
  assert ops["evaluate"] == {}, ops
