"""Evaluation throughput: DDIM samples/s and the cost of f_mem (issue 5, item 6).

Claim: the memorization fraction of 10,000 samples against n = 32,768 images of 32x32
(paper eq. 6, with its bootstrap interval) runs on device in bounded memory (the
authors' version needs about 13 GB there) at least as fast as a straightforward NumPy
version of the same computation on the same machine.

Measures, in one run:

  ddim     samples/s of deterministic DDIM generation (`jaxdiff.diffusion.sample`, one
           jitted lax.scan over the steps) with the paper's U-Net
           (jaxdiff.models.unet.UNet, width --width, eval mode) or, where that module
           cannot be imported or built, a small stand-in conv net (the output says which).
  fmem     seconds for f_mem at k = 1/3, 1/2, 1/4 with 1000-resample bootstrap intervals
           and the median ratio:
             jaxdiff  `memorization.memorization_metrics` under jit (blocked matmuls,
                      running top-2 in lax.scan, exact re-ranking, binomial bootstrap);
                      compile time reported separately;
             numpy    blocked over samples: |a|^2 - 2 x.a^T by BLAS matmul (float32),
                      np.argpartition for the two nearest, exact distances of the two,
                      bootstrap by resampling indices (numpy default_rng, the authors'
                      method);
           the ratio numpy / jaxdiff, and a check that both give the same nearest
           neighbours and fractions.

The data are synthetic: uniform centered images, 10% of the samples near-copies of
training images (so f_mem is about 0.1, not trivially 0).

  python benchmarks/metrics_throughput.py                 # CPU defaults (~1-2 minutes)
  python benchmarks/metrics_throughput.py --skip_ddim --num_samples 2000 --n_train 8192
  python benchmarks/metrics_throughput.py --width 32 --ddim_steps 200 --batch 1000  # GPU
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import diffusion
from jaxdiff.metrics import memorization

KS = (1 / 3, 1 / 2, 1 / 4)


# ------------------------------------------------------------------------------ DDIM


def _stand_in_model(width: int, num_steps: int):
  """A small conv net eps(x, t) used only when the U-Net cannot be built."""
  import flax.linen as nn

  class StandIn(nn.Module):
    @nn.compact
    def __call__(self, x, t, train=False):
      emb = nn.Embed(num_steps, width)(t)[:, None, None, :]
      h = nn.silu(nn.Conv(width, (3, 3))(x) + emb)
      h = nn.silu(nn.Conv(width, (3, 3))(h) + emb)
      return nn.Conv(x.shape[-1], (3, 3))(h)

  return StandIn()


def _make_model(width: int, num_steps: int, shape):
  try:
    from jaxdiff.models.unet import UNet
    model = UNet(width=width, num_steps=num_steps)
    params = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros(shape),
                        jnp.zeros(shape[:1], jnp.int32))["params"]
    name = f"jaxdiff.models.unet.UNet(width={width})"
  except Exception as e:  # noqa: BLE001 - any failure means: use the stand-in, and say why
    model = _stand_in_model(width, num_steps)
    params = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros(shape),
                        jnp.zeros(shape[:1], jnp.int32))["params"]
    name = f"STAND-IN conv net (width {width}); the U-Net failed: {type(e).__name__}: {e}"
  n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
  return model, params, name, n_params


def bench_ddim(args):
  shape = (args.batch, args.image_size, args.image_size, args.channels)
  schedule = diffusion.make_schedule(args.num_train_steps)
  model, params, name, n_params = _make_model(args.width, args.num_train_steps, shape)

  @jax.jit
  def generate(params, key):
    eps_fn = lambda x, i: model.apply({"params": params}, x, i, train=False)
    return diffusion.sample("ddim", eps_fn, schedule, key, shape, args.ddim_steps)

  t0 = time.perf_counter()
  jax.block_until_ready(generate(params, jax.random.PRNGKey(0)))
  compile_s = time.perf_counter() - t0
  times = []
  for r in range(args.repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(generate(params, jax.random.PRNGKey(r + 1)))
    times.append(time.perf_counter() - t0)
  best = min(times)
  rate = args.batch / best
  print(f"[ddim] model: {name}, {n_params:,} parameters")
  print(f"[ddim] {args.batch} samples of {shape[1:]} x {args.ddim_steps} DDIM steps: "
        f"{best:.3f} s (best of {args.repeats}; first call incl. compile {compile_s:.1f} s)")
  print(f"[ddim] {rate:.1f} samples/s = {rate * args.ddim_steps:.0f} network evaluations/s; "
        f"10,000 samples x 200 steps would take {10_000 * 200 / (rate * args.ddim_steps):.0f} s "
        f"at this rate")


# ------------------------------------------------------------------------------ f_mem


def numpy_fmem(samples, train, ks, n_bootstrap, seed, block):
  """The straightforward NumPy version of the same computation (see module docstring)."""
  a_sq = np.einsum("nd,nd->n", train, train)
  idx = np.empty((len(samples), 2), np.int64)
  dist = np.empty((len(samples), 2), np.float32)
  for start in range(0, len(samples), block):
    x = samples[start:start + block]
    score = a_sq[None, :] - 2.0 * (x @ train.T)  # |x|^2 dropped: same ranking
    two = np.argpartition(score, 1, axis=1)[:, :2]
    d = np.sqrt(((x[:, None, :] - train[two]) ** 2).sum(-1))
    order = np.argsort(d, axis=1)
    idx[start:start + block] = np.take_along_axis(two, order, axis=1)
    dist[start:start + block] = np.take_along_axis(d, order, axis=1)
  ratios = np.where(dist[:, 1] > 0, dist[:, 0] / np.where(dist[:, 1] > 0, dist[:, 1], 1), 1.0)
  search_done = time.perf_counter()
  rng = np.random.default_rng(seed)
  out = {"idx1": idx[:, 0], "ratio_median": float(np.median(ratios)), "f_mem": [],
         "lo": [], "hi": [], "search_done": search_done}
  for k in ks:
    ind = (ratios < k).astype(np.float32)
    boot = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
      boot[b] = ind[rng.integers(0, len(ind), len(ind))].mean()
    out["f_mem"].append(float(ind.mean()))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    out["lo"].append(float(lo))
    out["hi"].append(float(hi))
  return out


def bench_fmem(args):
  dim = args.fmem_side * args.fmem_side
  rng = np.random.default_rng(0)
  train = rng.uniform(-0.5, 0.5, (args.n_train, dim)).astype(np.float32)
  samples = rng.uniform(-0.5, 0.5, (args.num_samples, dim)).astype(np.float32)
  copies = args.num_samples // 10
  samples[:copies] = (train[rng.integers(0, args.n_train, copies)]
                      + 0.01 * rng.normal(size=(copies, dim)).astype(np.float32))
  print(f"[fmem] {args.num_samples} samples x n = {args.n_train} images of "
        f"{args.fmem_side}x{args.fmem_side}, k = {', '.join(f'{k:.3g}' for k in KS)}, "
        f"{args.n_bootstrap} bootstrap resamples")

  fn = jax.jit(lambda s, a, key: memorization.memorization_metrics(
      s, a, a.shape[0], key, ks=KS, n_bootstrap=args.n_bootstrap,
      sample_block=args.sample_block, train_block=args.train_block))
  s_dev, a_dev = jax.device_put(samples), jax.device_put(train)
  t0 = time.perf_counter()
  compiled = fn.lower(s_dev, a_dev, jax.random.PRNGKey(0)).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  t0 = time.perf_counter()
  out = jax.block_until_ready(compiled(s_dev, a_dev, jax.random.PRNGKey(0)))
  jax_s = time.perf_counter() - t0

  t0 = time.perf_counter()
  ref = numpy_fmem(samples, train, KS, args.n_bootstrap, 0, args.numpy_block)
  numpy_s = time.perf_counter() - t0
  numpy_search_s = ref["search_done"] - t0

  same_nn = float(np.mean(np.asarray(out["idx1"]) == ref["idx1"]))
  temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
  print(f"[fmem] jaxdiff (blocks {args.sample_block} x {args.train_block}): {jax_s:.2f} s "
        f"(+ {compile_s:.1f} s compile)"
        + (f", XLA temporary memory {temp / 2**20:.0f} MiB" if temp is not None else ""))
  print(f"[fmem] numpy   (blocks of {args.numpy_block} samples): {numpy_s:.2f} s "
        f"({numpy_search_s:.2f} s neighbour search, {numpy_s - numpy_search_s:.2f} s bootstrap)")
  print(f"[fmem] ratio numpy / jaxdiff = {numpy_s / jax_s:.2f}x")
  print(f"[fmem] same nearest neighbour for {100 * same_nn:.2f}% of samples; "
        f"f_mem jaxdiff {np.round(np.asarray(out['f_mem'], np.float64), 4).tolist()} "
        f"[{float(out['f_mem_lo'][0]):.4f}, {float(out['f_mem_hi'][0]):.4f}] vs numpy "
        f"{np.round(ref['f_mem'], 4).tolist()} [{ref['lo'][0]:.4f}, {ref['hi'][0]:.4f}]; "
        f"median ratio {float(out['ratio_median']):.4f} vs {ref['ratio_median']:.4f}")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--skip_ddim", action="store_true")
  p.add_argument("--skip_fmem", action="store_true")
  p.add_argument("--width", type=int, default=8, help="U-Net base width W (paper: 32)")
  p.add_argument("--image_size", type=int, default=32)
  p.add_argument("--channels", type=int, default=1)
  p.add_argument("--batch", type=int, default=32, help="samples generated together")
  p.add_argument("--ddim_steps", type=int, default=10, help="DDIM steps (paper: 200)")
  p.add_argument("--num_train_steps", type=int, default=1000, help="T")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--num_samples", type=int, default=10_000)
  p.add_argument("--n_train", type=int, default=32_768)
  p.add_argument("--fmem_side", type=int, default=32, help="image side (grayscale)")
  p.add_argument("--n_bootstrap", type=int, default=1000)
  p.add_argument("--sample_block", type=int, default=1024)
  p.add_argument("--train_block", type=int, default=4096)
  p.add_argument("--numpy_block", type=int, default=1000)
  args = p.parse_args()
  print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
  if not args.skip_ddim:
    bench_ddim(args)
  if not args.skip_fmem:
    bench_fmem(args)


if __name__ == "__main__":
  main()
