"""Training throughput of a sweep: M runs in one program against M separate loops.

Claim (issue 4, item 9): jaxdiff trains the M runs of a sweep in one compiled program
(`programs.Programs.chunk`: a fori_loop of steps, the runs laid out by train.models_axis)
at a higher total rate than M separate single-model loops, and it reports how far a step
is from the machine's matmul peak.

For each M it prints
  - model-steps/s of the sweep program (M runs, `steps` steps per dispatch),
  - model-steps/s of M separate one-run programs run one after the other (the
    one-job-per-n way of the authors), measured in the same process, interleaved,
  - their ratio,
  - achieved FLOP/s (XLA's cost analysis of one model-step x model-steps/s) against the
    measured float32 matmul peak of this machine (a large jnp.dot).

  python benchmarks/train_throughput.py                         # CPU default: W=8, 16x16, batch 32
  python benchmarks/train_throughput.py --width 32 --image_size 32 --batch 512 --runs 1,2,4,8 \
      --models_axis vmap --steps 50                            # the paper's U-Net on a GPU

The U-Net is the paper's (levels (1, 2, 4), attention (F, T, T), dropout 0.1), trained with
SGD + momentum on synthetic images (the data do not change the cost).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import base  # noqa: E402
from jaxdiff import diffusion
from jaxdiff import evaluate
from jaxdiff import models_axis
from jaxdiff import programs as programs_lib
from jaxdiff import runs as runs_lib
from jaxdiff import sharding
from jaxdiff import train_state as ts
from jaxdiff.models.unet import make_unet


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
  """Measured float32 FLOP/s of a large matmul (the machine's practical peak)."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best


def build(config, num_runs: int, image_size: int, mesh, strategy: str):
  """Programs and inputs of a sweep of `num_runs` runs (n = batch each) on synthetic data."""
  model = make_unet(config.model, config.diffusion.num_steps)
  tx = ts.make_optimizer(config.optim)
  schedule = diffusion.schedule_from_config(config.diffusion)
  batch = config.train.batch_size
  shape = (image_size, image_size, 1)
  step_spec = programs_lib.StepSpec(batch=batch, batch_size=batch, policy="min", min_index=1,
                                    data_parallel=1, ema_decay=0.0)
  eval_spec = evaluate.EvalSpec(
      sampler="ddim", sampler_steps=10, ddim_eta=0.0, num_samples=2, sample_batch=2,
      ks=(1 / 3,), n_bootstrap=10, loss_index=40, loss_draws=1, loss_batch=batch,
      grid_samples=0, data_shape=shape, capacity=batch, image_data=True)
  example = jnp.zeros((1,) + shape, jnp.float32)
  programs = programs_lib.Programs(mesh, strategy, model, tx, schedule, step_spec, eval_spec, None,
                                   example, batch, ema=False)
  rng = np.random.default_rng(0)
  pool = rng.uniform(size=(2 * batch,) + shape).astype(np.float32)
  padded = models_axis.padded_num_runs(num_runs, mesh)
  inputs = dict(n=np.full(padded, batch, np.int32), offset=np.zeros(padded, np.int32),
                mean=np.full((padded, 1), 0.5, np.float32),
                lr=np.full(padded, 0.01, np.float32),
                key=np.stack([np.asarray(runs_lib.run_key(0, s)) for s in range(padded)]))
  inputs = sharding.global_tree(inputs, sharding.models_sharding(mesh))
  pool = sharding.global_array(pool, sharding.replicated(mesh))
  return programs, inputs, pool, model, tx, schedule, step_spec


def step_flops(model, tx, schedule, step_spec, image_size, batch) -> float:
  """XLA's FLOP count of one model-step (forward, backward, update)."""
  shape = (image_size, image_size, 1)
  inputs = dict(n=jnp.int32(batch), offset=jnp.int32(0), mean=jnp.full((1,), 0.5),
                lr=jnp.float32(0.01), key=runs_lib.run_key(0, 0))
  state = ts.create_train_state(model, tx, inputs["key"], 0.01, batch,
                                jnp.zeros((1,) + shape), batch, False)
  pool = jnp.zeros((2 * batch,) + shape)
  fn = jax.jit(lambda s: programs_lib.train_step(s, inputs, pool, model=model, tx=tx,
                                                 schedule=schedule, spec=step_spec))
  cost = fn.lower(state).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def timed(programs, state, inputs, pool, steps: int):
  num = jnp.asarray(steps, jnp.int32)
  t0 = time.perf_counter()
  state = programs.chunk(state, inputs, pool, num)
  jax.block_until_ready(state)
  return state, time.perf_counter() - t0


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--width", type=int, default=8)
  parser.add_argument("--image_size", type=int, default=16)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--runs", default="1,4")
  parser.add_argument("--steps", type=int, default=20, help="steps per timed dispatch")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--models_axis", default="auto")
  args = parser.parse_args()

  config = base.get_config()
  config.model.width = args.width
  config.train.batch_size = args.batch
  mesh = sharding.make_mesh(1, jax.devices()[:1])
  strategy = models_axis.resolve_strategy(args.models_axis)
  peak = matmul_peak()
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"models axis: {strategy}, matmul peak {peak / 1e9:.1f} GFLOP/s")
  _, _, _, model, tx, schedule, spec = build(config, 1, args.image_size, mesh, strategy)
  flops = step_flops(model, tx, schedule, spec, args.image_size, args.batch)
  print(f"U-Net W={args.width}, {args.image_size}x{args.image_size}, batch {args.batch}: "
        f"{flops / 1e9:.3f} GFLOP per model-step")
  print(f"{'M':>3} {'sweep model-steps/s':>20} {'separate model-steps/s':>23} {'ratio':>6} "
        f"{'sweep FLOP/s (% peak)':>24}")
  for m in (int(v) for v in args.runs.split(",")):
    sweep = build(config, m, args.image_size, mesh, strategy)
    single = build(config, 1, args.image_size, mesh, strategy)
    s_state = sweep[0].init(sweep[1])
    o_states = [single[0].init(single[1]) for _ in range(m)]
    s_state, _ = timed(sweep[0], s_state, sweep[1], sweep[2], 1)  # compile
    o_states[0], _ = timed(single[0], o_states[0], single[1], single[2], 1)
    t_sweep, t_sep = [], []
    for _ in range(args.repeats):  # interleaved, so drifts of the machine hit both
      s_state, dt = timed(sweep[0], s_state, sweep[1], sweep[2], args.steps)
      t_sweep.append(dt)
      total = 0.0
      for i in range(m):
        o_states[i], dt = timed(single[0], o_states[i], single[1], single[2], args.steps)
        total += dt
      t_sep.append(total)
    rate_sweep = m * args.steps / np.median(t_sweep)
    rate_sep = m * args.steps / np.median(t_sep)
    achieved = flops * rate_sweep
    print(f"{m:>3} {rate_sweep:>20.2f} {rate_sep:>23.2f} {rate_sweep / rate_sep:>5.2f}x "
          f"{achieved / 1e9:>13.2f} GFLOP/s ({100 * achieved / peak:.1f}%)")


if __name__ == "__main__":
  main()
