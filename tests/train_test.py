"""Run-level correctness of the sweep trainer (issue 4 item 8).

(a) a run trained inside a sweep equals the same run trained alone;
(b) 1 device and 8 (fake CPU) devices give the same metrics;
(c) a sweep stopped between evaluations and resumed equals an uninterrupted one, exactly;
(d) the chunk program is compiled once for a sweep, for every chunk length and for a new
    n-grid of the same size;
plus the batch policies, divergence handling and workdir refusal.
"""

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from jaxdiff import checkpointing
from jaxdiff import fileio
from jaxdiff import programs as programs_lib
from jaxdiff import runs as runs_lib
from jaxdiff import train
from jaxdiff import train_state as ts
from jaxdiff.errors import ConfigError, WorkdirError

NUMERIC = ("loss", "train_loss", "test_loss", "f_mem", "ratio_median", "quality")


def tiny_config(**overrides):
  c = test_config.get_config()
  c.model.width = 16
  c.train.num_steps = 40
  c.train.batch_size = 8
  c.train.steps_per_dispatch = 40
  c.eval.times = (20, 40)
  c.eval.num_samples = 16
  c.eval.sample_batch = 16
  c.eval.sampler_steps = 5
  c.eval.n_bootstrap = 50
  c.eval.loss_noise_draws = 2
  c.eval.grid_runs = 0
  c.eval.quality = "none"
  c.report.auto = False
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


def rows_by(workdir):
  return {(r["step"], r["n"], r["seed"]): r
          for r in fileio.read_jsonl(os.path.join(workdir, "metrics.jsonl"))}


def final_params(workdir):
  return checkpointing.Checkpointer(workdir).restore_arrays()["params"]


def assert_rows_close(a, b, rtol, atol):
  for name in NUMERIC:
    if a.get(name) is None:
      assert b.get(name) is None, name
      continue
    np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


REF = {"data.n_train": (8, 16), "data.seeds": (0, 1), "train.steps_per_dispatch": 15}


# The per-device training function inside Programs.chunk (jit(shard_map(...))): its
# traces are what a new chunk length or n-grid would add.
CHUNK_FUNCTION = "chunk_local"


@contextlib.contextmanager
def count_traces(fun_name):
  """Counts the times JAX traces the jitted function named `fun_name` (jax.monitoring's
  trace events: one per cache miss of jit, whether or not the persistent compilation
  cache then has the executable), so `counts["traces"] == 1` says "compiled once"."""
  counts = {"traces": 0}

  def listener(event, duration, **kwargs):
    del duration
    if event == "/jax/core/compile/jaxpr_trace_duration" and kwargs.get("fun_name") == fun_name:
      counts["traces"] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One sweep (n = 8, 16 x seeds 0, 1 on one device) that the tests compare against."""
  workdir = str(tmp_path_factory.mktemp("ref"))
  with count_traces(CHUNK_FUNCTION) as counts:
    sweep = train.Sweep(tiny_config(**REF), workdir, devices=jax.devices()[:1])
    sweep.run()  # chunks of 15, 5, 15, 5 steps
  return workdir, sweep, counts["traces"]


@pytest.mark.slow
def test_run_alone_equals_run_in_sweep(reference, tmp_path):
  ref, _, _ = reference
  alone = tiny_config(**dict(REF, **{"data.n_train": (16,), "data.seeds": (1,)}))
  train.train_and_evaluate(alone, str(tmp_path / "alone"), devices=jax.devices()[:1])
  rs, ra = rows_by(ref), rows_by(tmp_path / "alone")
  assert len(rs) == 8 and len(ra) == 2
  for key, row in ra.items():
    assert_rows_close(row, rs[key], rtol=2e-4, atol=1e-5)
  run = 3  # n=16, seed=1 in n-major order
  jax.tree.map(lambda s, a: np.testing.assert_allclose(s[run], a[0], rtol=1e-4, atol=1e-6),
               final_params(ref), final_params(tmp_path / "alone"))


@pytest.mark.slow
def test_one_device_equals_eight(reference, tmp_path):
  ref, _, _ = reference
  # 4 runs on 8 devices: padded to 8, one run per device.
  train.train_and_evaluate(tiny_config(**REF), str(tmp_path / "eight"),
                           devices=jax.devices()[:8])
  r1, r8 = rows_by(ref), rows_by(tmp_path / "eight")
  assert r1.keys() == r8.keys() and len(r1) == 8
  for key in r1:
    assert_rows_close(r1[key], r8[key], rtol=2e-4, atol=1e-5)


@pytest.mark.slow
def test_runs_computed_in_groups_equal_all_at_once(reference, tmp_path):
  ref, _, _ = reference
  # 4 runs on one device, 3 at a time: a group of 3 then a remainder of 1.
  train.train_and_evaluate(tiny_config(**dict(REF, **{"train.models_group": 3})),
                           str(tmp_path / "grouped"), devices=jax.devices()[:1])
  r0, rg = rows_by(ref), rows_by(tmp_path / "grouped")
  assert r0.keys() == rg.keys() and len(r0) == 8
  for key in r0:
    assert_rows_close(r0[key], rg[key], rtol=2e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               final_params(ref), final_params(tmp_path / "grouped"))


@pytest.mark.slow
def test_resume_equals_uninterrupted(reference, tmp_path):
  ref, _, _ = reference
  config, wd = tiny_config(**REF), str(tmp_path / "resumed")
  # Stop between the two evaluation times (a checkpoint at step 30), then rerun.
  train.train_and_evaluate(config, wd, stop_at_step=30, devices=jax.devices()[:1])
  assert checkpointing.Checkpointer(wd).latest_step() == 30
  assert {r["step"] for r in fileio.read_jsonl(os.path.join(wd, "metrics.jsonl"))} == {20}
  train.train_and_evaluate(config, wd, devices=jax.devices()[:1])
  jax.tree.map(np.testing.assert_array_equal, final_params(ref), final_params(wd))
  rf, rr = rows_by(ref), rows_by(wd)
  assert rf.keys() == rr.keys()
  for key in rf:
    for name in NUMERIC:
      assert rf[key][name] == rr[key][name], (key, name)
  # Rerunning a finished workdir changes nothing.
  before = open(os.path.join(wd, "metrics.jsonl")).read()
  train.train_and_evaluate(config, wd, devices=jax.devices()[:1])
  assert open(os.path.join(wd, "metrics.jsonl")).read() == before


@pytest.mark.slow
def test_chunk_compiled_once_for_lengths_and_n_grids(reference):
  _, sweep, compiles = reference
  assert compiles == 1  # chunks of 15 and 5 steps: one program (the counter counts)
  # A different n-grid of the same size (capacity 16) runs on the same executable.
  other = runs_lib.build_run_table(tiny_config(**dict(REF, **{"data.n_train": (5, 13)})))
  assert other.capacity == sweep.table.capacity
  inputs = sweep.make_inputs(other)
  state = sweep.programs.init(inputs)
  with count_traces(CHUNK_FUNCTION) as counts:
    state = sweep.programs.chunk(state, inputs, sweep.pool, jnp.asarray(3, jnp.int32))
  assert counts["traces"] == 0
  assert int(state.step[0]) == 3



@pytest.mark.slow
def test_foreign_workdir_refused(reference, tmp_path):
  ref, _, _ = reference
  changed = tiny_config(**dict(REF, **{"model.width": 24, "train.num_steps": 80}))
  with pytest.raises(WorkdirError, match=r"model.width: 16 -> 24"):
    train.Sweep(changed, ref)
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  with pytest.raises(WorkdirError, match="not a jaxdiff workdir"):
    train.Sweep(tiny_config(**REF), str(other))
  with pytest.raises(ConfigError, match="eval.times"):
    train.Sweep(tiny_config(**{"eval.times": (20, 400)}), str(tmp_path / "x"))


@pytest.mark.parametrize("policy,n,expected", [("min", 5, 5), ("min", 20, 8),
                                               ("replacement", 5, 8), ("full", 20, 20)])
def test_batch_policies(policy, n, expected):
  capacity, batch = 32, (32 if policy == "full" else 8)
  order = ts.DataOrder(perm=jnp.arange(capacity, dtype=jnp.int32), pos=jnp.asarray(n))
  seen = []
  key = jax.random.PRNGKey(0)
  for step in range(6):
    idx, w, order = ts.next_batch(order, jnp.asarray(n), jax.random.fold_in(key, step),
                                  batch, policy, 8)
    used = np.asarray(idx)[np.asarray(w) > 0]
    assert len(used) in (expected, n % 8 if policy == "min" and n > 8 else expected)
    assert used.min() >= 0 and used.max() < n
    seen.append(used)
  if policy == "min":
    # Epochs without replacement: each run of ceil(n/8) batches covers [0, n) once.
    per_epoch = -(-n // min(8, n))
    epoch = np.concatenate(seen[:per_epoch])
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))


@pytest.mark.slow
def test_divergence_is_reported(tmp_path):
  config = tiny_config(**{"data.n_train": (8, 16), "data.seeds": (0,),
                          "optim.lr": (1e6,), "optim.name": "sgd"})
  with pytest.raises(train.TrainingDiverged, match=r"run 0 \(n=8"):
    train.train_and_evaluate(config, str(tmp_path / "wd"), devices=jax.devices()[:1])


@pytest.mark.slow
def test_data_axis_splits_the_batch(reference, tmp_path):
  """4 runs x 2 data shards on 8 devices: each run's batch is split and the gradients
  summed over 'data'; the numbers equal the one-device reference."""
  ref, _, _ = reference
  config = tiny_config(**dict(REF, **{"train.data_parallel": 2}))
  train.train_and_evaluate(config, str(tmp_path / "dp"), devices=jax.devices()[:8])
  r1, r2 = rows_by(ref), rows_by(tmp_path / "dp")
  assert r1.keys() == r2.keys()
  for key in r1:
    assert_rows_close(r1[key], r2[key], rtol=2e-4, atol=1e-5)


@pytest.mark.slow
def test_train_step_updates_ema():
  from jaxdiff import diffusion
  from jaxdiff.models.mlp import ResidualMLP
  model = ResidualMLP(width=8, num_blocks=1)
  c = tiny_config()
  tx = ts.make_optimizer(c.optim)
  key = runs_lib.run_key(0, 0)
  state = ts.create_train_state(model, tx, key, 0.01, 4, jnp.zeros((1, 2)), 4, ema=True)
  spec = programs_lib.StepSpec(batch=4, batch_size=4, policy="min", min_index=1, data_parallel=1,
                               ema_decay=0.9)
  inputs = dict(n=jnp.int32(4), offset=jnp.int32(0), mean=jnp.zeros((2,)), lr=0.01, key=key)
  pool = jax.random.normal(key, (8, 2))
  # One compiled step (op by op, each primitive would compile on its own: 10 s here).
  step = jax.jit(lambda s, i, p: programs_lib.train_step(
      s, i, p, model=model, tx=tx, schedule=diffusion.make_schedule(), spec=spec))
  new = step(state, inputs, pool)
  assert int(new.step) == 1 and float(new.loss_count) == 1.0
  jax.tree.map(lambda e, old, p: np.testing.assert_allclose(e, 0.9 * old + 0.1 * p, rtol=1e-6),
               new.ema_params, state.params, new.params)
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, new.params, state.params)))
