"""Training K U-Nets at once: how convolutions should meet the models axis.

Claim (issue 3, item 6): `jax.vmap` over the models axis turns every convolution into a
grouped convolution, which XLA's CPU backend runs several times slower than K separate
convolutions. jaxdiff's `model.conv_batching="unroll"` (a custom_vmap rule that loops
over the models) brings vmap back to the speed of K separate calls; "im2col" (patches +
a batched matmul over the models) is meant for accelerators and loses on CPU; and on CPU
one jit that unrolls the K whole model-steps (the trainer's "unroll" strategy) is faster
still, because independent models then run on both cores at once.

Measures model-steps/s of one full training step (forward, backward, SGD update) of a
small paper-style U-Net (levels (1, 2, 4), attention (F, T, T), dropout on) for:

  separate      K separate calls of one jitted one-model step (the baseline, 1.0x)
  vmap:native   jit(vmap(step)) with vmap's own batching of convolutions
  vmap:unroll   jit(vmap(step)) with conv_batching="unroll"
  vmap:im2col   jit(vmap(step)) with conv_batching="im2col"
  unrolled      one jit holding K one-model steps (params stacked, sliced statically)

all in one run, with each mode's ratio to `separate`. Gradients of the modes are equal
(tests/layers_test.py, tests/unet_test.py); this script only times them.

  python benchmarks/conv_models_axis.py          # W=8: ~3 minutes on a 2-core CPU
  python benchmarks/conv_models_axis.py --widths 8,16,32                   # ~12 minutes
  python benchmarks/conv_models_axis.py --widths 32 --image_size 32 --batch 128  # GPU

XLA:CPU compile time dominates the run (the K-fold programs take 1.5-2.5 minutes to
compile on 2 cores), hence one width by default.

Measured on the 2-core development CPU (jax 0.10.2, K=8, 16x16x1, batch 64, other jobs
sharing the machine; model-steps/s and ratio to K separate calls):

  W   separate   vmap:native   vmap:unroll   vmap:im2col   unrolled
  8   5.2 (1x)   1.9 (0.38x)   5.2 (1.00x)   2.3 (0.45x)   6.8 (1.32x)
  16  3.1 (1x)   0.9 (0.28x)   3.1 (0.98x)   1.4 (0.45x)   4.0 (1.27x)
  32  1.4 (1x)   0.4 (0.28x)   1.2 (0.91x)   0.7 (0.49x)   1.5 (1.13x)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.unet import UNet

MODES = ("separate", "vmap:native", "vmap:unroll", "vmap:im2col", "unrolled")


def make_step(model: UNet, lr: float = 1e-2):
  """One model's SGD step on the epsilon-prediction MSE (forward + backward + update)."""

  def loss_fn(params, x, t, eps, key):
    pred = model.apply({"params": params}, x, t, train=True, rngs={"dropout": key})
    return jnp.mean((pred - eps) ** 2)

  def step(params, x, t, eps, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, t, eps, key)
    params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return params, loss

  return step


def _block(tree):
  jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)


def compile_mode(mode: str, model: UNet, k: int, params, batch):
  """Compiles one mode ahead of time.

  Returns:
    (run, state): run(state) -> state performs one step of all K models; `state` holds
    the parameters and the mode's own view of the data (per-model slices for
    `separate`, made once here so that slicing is not timed).
  """
  batching = mode.split(":")[1] if mode.startswith("vmap:") else "native"
  step = make_step(model.clone(conv_batching=batching))
  if mode == "separate":
    per_model = [(jax.tree.map(lambda a, i=i: a[i], params),
                  tuple(b[i] for b in batch)) for i in range(k)]
    one = jax.jit(step).lower(per_model[0][0], *per_model[0][1]).compile()

    def run(state):
      return [(one(p, *data)[0], data) for p, data in state]

    return run, per_model
  if mode.startswith("vmap:"):
    fused = jax.jit(jax.vmap(step)).lower(params, *batch).compile()
    return lambda state: (fused(state[0], *state[1])[0], state[1]), (params, batch)
  if mode == "unrolled":

    def unrolled(params, x, t, eps, keys):
      outs = [step(jax.tree.map(lambda a: a[i], params), x[i], t[i], eps[i], keys[i])
              for i in range(k)]
      return jax.tree.map(lambda *a: jnp.stack(a), *[p for p, _ in outs])

    fused = jax.jit(unrolled).lower(params, *batch).compile()
    return lambda state: (fused(state[0], *state[1]), state[1]), (params, batch)
  raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")


def time_modes(modes, model, k, params, batch, reps):
  """{mode: (compile seconds, median seconds per K-model step)}.

  The modes compile concurrently (XLA releases the GIL), which shortens the run on a
  multi-core host; their compile seconds then overlap. The timed K-steps go round-robin
  over the modes, so a change of machine load during the run hits all modes alike (the
  ratios are what this script claims); with ahead-of-time compilation no warm-up call
  is needed, and the median discards a slow first call.
  """

  def timed_compile(mode):
    t0 = time.perf_counter()
    out = compile_mode(mode, model, k, params, batch)
    return out, time.perf_counter() - t0

  with concurrent.futures.ThreadPoolExecutor(max_workers=len(modes)) as pool:
    compiled = dict(zip(modes, pool.map(timed_compile, modes)))
  runs = {m: compiled[m][0][0] for m in modes}
  states = {m: compiled[m][0][1] for m in modes}
  times = {m: [] for m in modes}
  for _ in range(reps):
    for mode in modes:
      t0 = time.perf_counter()
      states[mode] = runs[mode](states[mode])
      _block(states[mode])
      times[mode].append(time.perf_counter() - t0)
  return {m: (compiled[m][1], statistics.median(times[m])) for m in modes}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--k", type=int, default=8, help="models K")
  parser.add_argument("--widths", default="8", help="comma-separated base widths W")
  parser.add_argument("--image_size", type=int, default=16)
  parser.add_argument("--batch", type=int, default=64, help="images per model per step")
  parser.add_argument("--channels", type=int, default=1)
  parser.add_argument("--reps", type=int, default=3, help="timed K-steps per mode")
  parser.add_argument("--modes", default=",".join(MODES))
  parser.add_argument("--channel_mult", default="1,2,4",
                      help="U-Net channel multipliers per level (the paper: 1,2,4)")
  parser.add_argument("--attention", default="0,1,1",
                      help="self-attention per level, 0/1 (the paper: 0,1,1)")
  parser.add_argument("--num_res_blocks", type=int, default=2)
  args = parser.parse_args()
  modes = args.modes.split(",")
  for mode in modes:
    if mode not in MODES:
      parser.error(f"--modes: {mode!r} not in {MODES}")
  if "separate" not in modes:
    modes.insert(0, "separate")
  k, b, s, c = args.k, args.batch, args.image_size, args.channels
  start = time.perf_counter()

  dev = jax.devices()[0]
  print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}), "
        f"{jax.device_count()} device(s); K={k}, {s}x{s}x{c}, batch {b}, "
        f"median of {args.reps} timed K-steps per mode (round-robin, after AOT compilation)")
  print(f"{'W':>3} {'mode':<12} {'compile s':>12} {'ms / K-step':>12} "
        f"{'model-steps/s':>14} {'vs separate':>12}")
  rng = np.random.default_rng(0)
  for width in (int(w) for w in args.widths.split(",")):
    model = UNet(width=width, num_res_blocks=args.num_res_blocks,
                 channel_mult=tuple(int(m) for m in args.channel_mult.split(",")),
                 attention=tuple(a == "1" for a in args.attention.split(",")))
    x1 = jnp.zeros((1, s, s, c))
    t1 = jnp.zeros((1,), jnp.int32)
    keys = jax.random.split(jax.random.key(0), k)
    # Non-partitionable threefry only here: the same init distribution, but XLA:CPU
    # compiles it several times faster (the init is not what is timed).
    with jax.threefry_partitionable(False):
      params = jax.jit(jax.vmap(lambda key: model.init(key, x1, t1)["params"]))(keys)
    batch = (jnp.asarray(rng.standard_normal((k, b, s, s, c)), jnp.float32),
             jnp.asarray(rng.integers(0, 1000, (k, b)), jnp.int32),
             jnp.asarray(rng.standard_normal((k, b, s, s, c)), jnp.float32),
             jax.random.split(jax.random.key(1), k))
    results = time_modes(modes, model, k, params, batch, args.reps)
    base = results["separate"][1]
    for mode in modes:
      first, sec = results[mode]
      print(f"{width:>3} {mode:<12} {first:>12.1f} {1e3 * sec:>12.1f} "
            f"{k / sec:>14.1f} {base / sec:>11.2f}x", flush=True)
  print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  main()
