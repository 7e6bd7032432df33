"""bfloat16 compute (model.dtype) checked for science: float32 parameters and optimizer
state, a loss curve that follows float32's, and an evaluation that is float32 throughout.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from jaxdiff import diffusion
from jaxdiff import evaluate
from jaxdiff import programs as programs_lib
from jaxdiff import runs as runs_lib
from jaxdiff import sharding
from jaxdiff import train_state as ts
from jaxdiff.models import layers
from jaxdiff.models.unet import make_unet

BATCH = 16


def _config(dtype):
  # configs/digits.py:unet's model: two levels (8x8, 4x4), attention on the coarser one.
  c = base.get_config()
  c.model.update(width=16, channel_mult=(1, 2), attention=(False, True), dropout=0.1,
                 dtype=dtype)
  return c


def _digits():
  from sklearn.datasets import load_digits
  x = load_digits().images.astype(np.float32) / 16.0  # [1797, 8, 8] in [0, 1]
  return x[..., None]


def _one_run(dtype, n, abstract=False):
  """The pieces of one run's train_step; its state as ShapeDtypeStructs when `abstract`
  (tracing only: compiling a bfloat16 U-Net's initialisation takes minutes on XLA:CPU)."""
  c = _config(dtype)
  model = make_unet(c.model, c.diffusion.num_steps)
  tx = ts.make_optimizer(c.optim)
  schedule = diffusion.schedule_from_config(c.diffusion)
  spec = programs_lib.StepSpec(batch=BATCH, batch_size=BATCH, policy="min", min_index=1,
                               data_parallel=1, ema_decay=0.0)
  inputs = dict(n=jnp.int32(n), offset=jnp.int32(0), mean=jnp.full((1,), 0.3),
                lr=jnp.float32(0.01), key=runs_lib.run_key(0, 0))
  init = lambda: ts.create_train_state(model, tx, inputs["key"], 0.01, n,
                                       jnp.zeros((1, 8, 8, 1)), n, False)
  state = jax.eval_shape(init) if abstract else init()
  return model, tx, schedule, spec, inputs, state


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters_and_optimizer_state():
  model, tx, schedule, spec, inputs, state = _one_run("bfloat16", 128, abstract=True)
  pool = jnp.asarray(_digits()[:128])
  # The state after a step, as XLA would produce it (dtypes are decided at tracing; no
  # bfloat16 compile, which takes minutes on XLA:CPU).
  state = jax.eval_shape(lambda s: programs_lib.train_step(s, inputs, pool, model=model, tx=tx,
                                                    schedule=schedule, spec=spec), state)
  for leaf in jax.tree.leaves((state.params, state.opt_state)):
    assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
  # ...while the step's convolutions really run in bfloat16.
  jaxpr = str(jax.make_jaxpr(lambda s: programs_lib.train_step(
      s, inputs, pool, model=model, tx=tx, schedule=schedule, spec=spec))(state))
  assert "bf16" in jaxpr


@pytest.mark.slow
def test_evaluation_is_float32_whatever_the_training_dtype():
  """f_mem, the quality statistics and the fixed-t losses come from a float32 network
  (layers.float32_twin in programs.Programs): no bfloat16 anywhere in the evaluation."""
  c = _config("bfloat16")
  model = make_unet(c.model, c.diffusion.num_steps)
  assert layers.float32_twin(model).dtype == "float32"
  mesh = sharding.make_mesh(1, jax.devices()[:1])
  shape = (8, 8, 1)
  spec = programs_lib.StepSpec(batch=8, batch_size=8, policy="min", min_index=1, data_parallel=1,
                               ema_decay=0.0)
  eval_spec = evaluate.EvalSpec(
      sampler="ddim", sampler_steps=4, ddim_eta=0.0, num_samples=4, sample_batch=4,
      ks=(1 / 3,), n_bootstrap=10, loss_index=10, loss_draws=1, loss_batch=8,
      grid_samples=0, data_shape=shape, capacity=8, image_data=True)
  programs = programs_lib.Programs(mesh, "unroll", model, ts.make_optimizer(c.optim),
                                   diffusion.schedule_from_config(c.diffusion), spec, eval_spec,
                                   None, jnp.zeros((1,) + shape), 8, ema=False)
  inputs = dict(n=np.full(1, 8, np.int32), offset=np.zeros(1, np.int32),
                mean=np.zeros((1, 1), np.float32), lr=np.full(1, 0.01, np.float32),
                key=np.asarray(runs_lib.run_key(0, 0))[None])
  state = jax.eval_shape(programs.init, inputs)
  pool = jax.ShapeDtypeStruct((16,) + shape, jnp.float32)
  step = jax.ShapeDtypeStruct((), jnp.int32)
  evaluation = str(jax.make_jaxpr(programs.evaluate)(state, inputs, pool, pool, None, step))
  chunk = str(jax.make_jaxpr(programs.chunk)(state, inputs, pool, step))
  assert "bf16" in chunk          # training computes in bfloat16...
  assert "bf16" not in evaluation  # ...the evaluation never does


@pytest.mark.slow
def test_bfloat16_loss_curve_follows_float32_on_digits():
  """80 steps of a small U-Net (batch 16) on 1,024 digits, same keys (same batches, t and noise),
  float32 against bfloat16 compute. Tolerance: the mean training loss over each window of
  20 steps within 5% of float32's (bfloat16 has an 8-bit mantissa: a relative error of
  ~0.4% per rounding, averaged over the step's sums), and the curves must decrease alike
  (the last window below 80% of the first, for both). The loss falls fastest in these
  first steps (float32: 0.43, 0.22, 0.16, 0.12 over the four windows; bfloat16 within
  0.1% of each), so the comparison covers the curve's shape; later steps would repeat
  the plateau at most of the test's cost. Batch 16, not 32: on the 2-core machine a step
  at 32 took 0.3 s against 0.12 s at 16 (41 s for the test instead of 73 s)."""
  steps, window, n = 80, 20, 1024
  pool = jnp.asarray(_digits()[:n])
  curves = {}
  # One initial state for both (the parameters are float32 whatever model.dtype is).
  initial = _one_run("float32", n)[-1]
  for dtype in ("float32", "bfloat16"):
    model, tx, schedule, spec, inputs, _ = _one_run(dtype, n, abstract=True)
    state = initial

    def body(s, _):
      new = programs_lib.train_step(s, inputs, pool, model=model, tx=tx, schedule=schedule,
                                    spec=spec)
      return new, new.loss_sum - s.loss_sum

    # Compiled at XLA's default level 2, not the tests' level 0 (tests/conftest.py): the
    # steps dominate here, and level-0 code ran this test 5x longer (400 s against 80 s).
    # At level 2, 32 parallel codegen splits compile faster than the tests' one
    # (tests/conftest.py): 33 s against 39 s for this test.
    run = jax.jit(lambda s: jax.lax.scan(body, s, None, length=steps)).lower(state).compile(
        {"xla_backend_optimization_level": 2, "xla_cpu_parallel_codegen_split_count": 32})
    _, losses = run(state)
    curves[dtype] = np.asarray(losses).reshape(-1, window).mean(axis=1)
  f32, bf16 = curves["float32"], curves["bfloat16"]
  np.testing.assert_array_less(np.abs(bf16 - f32) / f32, 0.05)
  assert f32[-1] < 0.8 * f32[0] and bf16[-1] < 0.8 * bf16[0]
