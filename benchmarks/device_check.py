"""Every GPU figure jaxdiff claims, in one process: `benchmarks/device_check.sh` runs it.

  python benchmarks/device_check.py --out DIR            # the full check (an H100/H200)
  python benchmarks/device_check.py --out DIR --smoke    # same code paths, tiny, any CPU

Sections (each records its compile times apart from its run times, and stops when its
share of the time budget is spent, saying what it skipped):

  throughput  the sweep program (`programs.Programs.chunk`, the trainer's own) for M runs of
              the paper's U-Net at W = 32, 32x32x1, batch 512 and 128, M = 1, 2, 4, 8, 9,
              models axis vmap and unroll, float32 and bfloat16 compute: model-steps/s,
              achieved FLOP/s (XLA's cost analysis of one model-step on this device) against
              the card's bf16 peak (jaxdiff.plan.ACCELERATORS), and the measured step as a
              fraction of the roofline bound (plan.StepCost.bound_s).
  memory      the celeba config (configs/celeba.py) at train.models_group 2, 4 and 9, and at
              9 with the remat / dtype options plan recommends: plan's estimate for the
              train chunk (resident + XLA's temporaries) against the device's measured peak
              (`memory_stats()['peak_bytes_in_use']`), each in a fresh subprocess so that
              the peak is its own; layouts plan says do not fit are recorded, not run.
  metrics     f_mem of 10,000 samples against 32,768 images (memorization_metrics, three
              thresholds, 1,000 bootstrap resamples) and Inception pool3 features/s (the
              FID network at 299x299, batch 250; random weights: the cost is the same).

Results: DIR/device_check.json (everything) and DIR/device_check.md (tables). The pytest
and conv_models_axis sections are run by device_check.sh around this script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

FULL = dict(width=32, image_size=32, batches=(512, 128), runs=(1, 2, 4, 8, 9),
            axes=("vmap", "unroll"), dtypes=("bfloat16", "float32"), steps=10, repeats=2,
            groups=(2, 4, 9), num_samples=10_000, n_train=32_768, inception_batch=250,
            inception_images=1000, budget={"throughput": 270, "memory": 150,
                                           "metrics": 50})
# The smoke run: every code path, tiny, float32 only (XLA:CPU compiles bfloat16 U-Nets
# 3-7x slower than float32 ones: 200 s for a W = 8 step on the shared 2-core machine).
# Its U-Net keeps one of each block (a ResBlock, attention, a down- and an upsampling)
# at two levels of width 8: the paper's three levels of two ResBlocks compile 4-5x longer.
SMOKE = dict(width=8, image_size=8, batches=(8,), runs=(2,), axes=("vmap", "unroll"),
             model=dict(channel_mult=(1, 1), attention=(False, True), num_res_blocks=1),
             dtypes=("float32",), steps=2, repeats=1, groups=(1,),
             num_samples=64, n_train=256, inception_batch=2, inception_images=2,
             budget={"throughput": 1e9, "memory": 1e9, "metrics": 1e9})  # every path runs


class Budget:
  """Seconds a section may use; `left()` is checked before each new measurement."""

  def __init__(self, seconds: float):
    self.end = time.perf_counter() + seconds

  def left(self) -> float:
    return self.end - time.perf_counter()

  def timeout(self) -> float:
    """left(), capped at a day: an unlimited smoke budget (1e9 s) overflows poll()."""
    return min(self.left(), 86400.0)


def device_info() -> dict:
  from jaxdiff import plan
  dev = jax.devices()[0]
  acc = plan.accelerator_named(dev.device_kind) if dev.platform != "cpu" else None
  stats = {}
  try:
    stats = dev.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  (CPU: no statistics)
    stats = {}
  return dict(platform=dev.platform, device_kind=dev.device_kind, jax=jax.__version__,
              devices=jax.device_count(), bytes_limit=stats.get("bytes_limit"),
              accelerator=acc.name if acc else None,
              bf16_peak_tflops=acc.bf16_tflops if acc else None,
              f32_peak_tflops=acc.f32_tflops if acc else None,
              hbm_tbps=acc.hbm_tbps if acc else None)


# --------------------------------------------------------------------------- throughput


def _throughput_config(size: dict, batch: int, dtype: str):
  from configs import base
  c = base.get_config()
  c.model.width = size["width"]
  c.model.update(size.get("model", {}))
  c.model.dtype = dtype
  c.train.batch_size = batch
  return c


def _step_cost(config, image_size: int):
  """XLA's FLOPs and bytes of one model-step on this device (plan.StepCost)."""
  from jaxdiff import diffusion, plan
  from jaxdiff import programs as programs_lib
  from jaxdiff import runs as runs_lib
  from jaxdiff import train_state as ts
  from jaxdiff.models.unet import make_unet
  model = make_unet(config.model, config.diffusion.num_steps)
  tx = ts.make_optimizer(config.optim)
  schedule = diffusion.schedule_from_config(config.diffusion)
  b = config.train.batch_size
  shape = (image_size, image_size, 1)
  spec = programs_lib.StepSpec(batch=b, batch_size=b, policy="min", min_index=1, data_parallel=1,
                               ema_decay=0.0)
  inputs = dict(n=jnp.int32(b), offset=jnp.int32(0), mean=jnp.zeros((1,)),
                lr=jnp.float32(0.01), key=runs_lib.run_key(0, 0))
  state = jax.eval_shape(lambda: ts.create_train_state(model, tx, inputs["key"], 0.01, b,
                                                        jnp.zeros((1,) + shape), b, False))
  pool = jax.ShapeDtypeStruct((2 * b,) + shape, jnp.float32)
  fn = jax.jit(lambda s, p: programs_lib.train_step(s, inputs, p, model=model, tx=tx,
                                                    schedule=schedule, spec=spec))
  t0 = time.perf_counter()
  compiled = fn.lower(state, pool).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  return plan.StepCost(float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0)),
                       plan.ProgramMemory.of(compiled).temporaries, config.model.dtype,
                       jax.devices()[0].platform), compile_s


def throughput(size: dict, budget: Budget, log) -> list[dict]:
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  import train_throughput as tt  # the benchmark's own sweep builder
  from jaxdiff import plan, sharding
  info = device_info()
  acc = plan.accelerator_named(info["device_kind"]) if info["platform"] != "cpu" else None
  mesh = sharding.make_mesh(1, jax.devices()[:1])
  rows = []
  for dtype in size["dtypes"]:
    for batch in size["batches"]:
      config = _throughput_config(size, batch, dtype)
      if budget.left() <= 0:
        rows.append(dict(dtype=dtype, batch=batch, skipped="time budget"))
        continue
      cost, cost_compile = _step_cost(config, size["image_size"])
      for axis in size["axes"]:
        for m in size["runs"]:
          if m == 1 and axis != size["axes"][0]:
            continue  # one run: the models axis has nothing to lay out
          row = dict(dtype=dtype, batch=batch, models_axis=axis, runs=m,
                     flops_per_model_step=cost.flops, bytes_per_model_step=cost.bytes_accessed,
                     step_compile_s=cost_compile)
          if budget.left() <= 0:
            row["skipped"] = "time budget"
            rows.append(row)
            log(f"throughput {row}")
            continue
          try:
            programs, inputs, pool, *_ = tt.build(config, m, size["image_size"], mesh, axis)
            state = programs.init(inputs)
            t0 = time.perf_counter()
            state, _ = tt.timed(programs, state, inputs, pool, 1)  # compile + 1 step
            row["compile_s"] = time.perf_counter() - t0
            times = []
            for _ in range(size["repeats"]):
              state, dt = tt.timed(programs, state, inputs, pool, size["steps"])
              times.append(dt)
            step_s = float(np.median(times)) / size["steps"]
            row.update(step_s=step_s, model_steps_per_s=m / step_s,
                       achieved_tflops=cost.flops * m / step_s / 1e12)
            if acc is not None:
              bound, which = cost.bound_s(acc)
              row.update(fraction_of_bf16_peak=row["achieved_tflops"] / acc.bf16_tflops,
                         roofline_bound_s=bound, bound_by=which,
                         fraction_of_roofline=bound * m / step_s)
            del state, programs
          except Exception as e:  # pylint: disable=broad-except  (OOM: record it)
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
          rows.append(row)
          log(f"throughput {row}")
  return rows


# --------------------------------------------------------------------------- memory


def _celeba(size: dict, group: int, remat: str = "none", dtype: str = "float32"):
  from configs import celeba
  c = celeba.get_config()
  c.train.models_group = group
  c.model.remat = remat
  c.model.dtype = dtype
  if size is SMOKE:  # tiny: same programs, two small runs
    c.model.width = 8
    c.model.update(size["model"])
    c.data.image_size = 8
    c.data.n_train = (8, 16)
    c.data.num_test = 8
    c.train.batch_size = 8
    c.eval.update(num_samples=4, sample_batch=4, sampler_steps=2, n_bootstrap=10,
                  quality="pixel_fd", loss_noise_draws=1, grid_samples=2)
  return c


def memory_one(size_name: str, group: int, remat: str, dtype: str) -> dict:
  """In a fresh process: plan's train-chunk estimate and the measured peak of 1 step."""
  from jaxdiff import plan
  size = SMOKE if size_name == "smoke" else FULL
  config = _celeba(size, group, remat, dtype)
  sweep = plan.AbstractSweep(config)
  t0 = time.perf_counter()
  chunk = sweep.lower_chunk().compile()
  compile_s = time.perf_counter() - t0
  mem = plan.ProgramMemory.of(chunk)
  resident = sweep.resident_bytes()
  estimate = resident["total"] + mem.extra
  out = dict(models_group=group, remat=remat, dtype=dtype, runs=sweep.table.num_runs,
             resident=resident["total"], chunk_temporaries=mem.temporaries,
             estimate=estimate, compile_s=compile_s)
  capacity, _ = plan.device_capacity(sweep.mesh.devices.flat[0])
  out["capacity"] = capacity
  if estimate > capacity:
    out["skipped"] = "plan's estimate exceeds the device's memory"
    return out
  state, inputs, pool, steps = sweep.concrete(1)
  t0 = time.perf_counter()
  state = chunk(state, inputs, pool, steps)
  jax.block_until_ready(state)
  out["step_s"] = time.perf_counter() - t0
  stats = {}
  try:
    stats = jax.devices()[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    stats = {}
  peak = stats.get("peak_bytes_in_use")
  out["measured_peak"] = peak
  out["measured_over_estimate"] = (peak / estimate) if peak else None
  return out


def memory(size: dict, budget: Budget, log) -> list[dict]:
  size_name = "smoke" if size is SMOKE else "full"
  # Most informative first (the budget may stop the list): the default layout, the
  # remat layout plan recommends for all runs at once, then the other groups.
  groups = size["groups"]
  group_all = groups[-1]
  layouts = [(groups[0], "none", "float32"), (group_all, "convs", "float32")]
  if "bfloat16" in size["dtypes"]:
    layouts.append((group_all, "full", "bfloat16"))
  layouts += [(g, "none", "float32") for g in groups[1:]]
  rows = []
  for group, remat, dtype in layouts:
    if budget.left() <= 5:
      rows.append(dict(models_group=group, remat=remat, dtype=dtype, skipped="time budget"))
      continue
    cmd = [sys.executable, os.path.abspath(__file__), "--memory_one",
           f"{size_name},{group},{remat},{dtype}"]
    try:
      res = subprocess.run(cmd, capture_output=True, text=True, timeout=budget.timeout(),
                           cwd=ROOT)
      lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
      row = json.loads(lines[-1]) if lines else dict(
          models_group=group, remat=remat, dtype=dtype,
          error=(res.stderr.strip().splitlines() or ["no output"])[-1][:300])
    except subprocess.TimeoutExpired:
      row = dict(models_group=group, remat=remat, dtype=dtype, skipped="time budget")
    rows.append(row)
    log(f"memory {row}")
  return rows


# --------------------------------------------------------------------------- metrics


def metrics(size: dict, budget: Budget, log) -> dict:
  from jaxdiff.metrics import inception, memorization
  out = {}
  rng = np.random.default_rng(0)
  side = 32 if size is FULL else 8
  train = jnp.asarray(rng.uniform(-0.5, 0.5, (size["n_train"], side, side, 1)), jnp.float32)
  samples = jnp.asarray(rng.uniform(-0.5, 0.5, (size["num_samples"], side, side, 1)),
                        jnp.float32)
  fn = jax.jit(lambda s, a, k: memorization.memorization_metrics(
      s, a, size["n_train"], k, ks=(1 / 3, 1 / 2, 1 / 4), n_bootstrap=1000)["f_mem"])
  t0 = time.perf_counter()
  compiled = fn.lower(samples, train, jax.random.PRNGKey(0)).compile()
  out["fmem_compile_s"] = time.perf_counter() - t0
  jax.block_until_ready(compiled(samples, train, jax.random.PRNGKey(0)))
  t0 = time.perf_counter()
  jax.block_until_ready(compiled(samples, train, jax.random.PRNGKey(1)))
  out.update(fmem_s=time.perf_counter() - t0, fmem_samples=size["num_samples"],
             fmem_train=size["n_train"],
             fmem_temporaries=plan_memory(compiled).temporaries)
  log(f"metrics {out}")
  if budget.left() <= 0:
    out["inception"] = "skipped: time budget"
    return out
  model = inception.InceptionV3FID()
  # Stand-in weights of the real shapes (pytorch-fid's are the user's file): He-scaled
  # normal kernels and zero biases, drawn by numpy. Their pool3 features are O(1) (mean
  # |f| 0.26 on the smoke images) like the real network's, where flax's default init
  # shrinks them to 1.7e-4 (small values can run slower on a CPU); and drawing them
  # skips compiling flax's init of 94 convolutions (6.7 s of the CPU smoke run).
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, 75, 75, 3)))["params"])

  def draw(s):
    if len(s.shape) < 2:
      return jnp.zeros(s.shape, s.dtype)
    std = math.sqrt(2.0 / math.prod(s.shape[:-1]))
    return jnp.asarray(rng.normal(0.0, std, s.shape), s.dtype)

  params = jax.tree.map(draw, shapes)
  b = size["inception_batch"]
  images = jnp.asarray(rng.uniform(0, 1, (b, side, side, 1)), jnp.float32)
  feats = jax.jit(lambda p, x: inception.inception_features(p, x))
  t0 = time.perf_counter()
  compiled = feats.lower(params, images).compile()
  out["inception_compile_s"] = time.perf_counter() - t0
  jax.block_until_ready(compiled(params, images))
  reps = max(1, size["inception_images"] // b)
  t0 = time.perf_counter()
  for _ in range(reps):
    jax.block_until_ready(compiled(params, images))
  out["inception_features_per_s"] = reps * b / (time.perf_counter() - t0)
  log(f"metrics {out}")
  return out


def plan_memory(compiled):
  from jaxdiff import plan
  return plan.ProgramMemory.of(compiled)


# --------------------------------------------------------------------------- report


def _gib(b):
  return "-" if b is None else f"{b / 2**30:.2f} GiB"


def markdown(result: dict) -> str:
  info = result["device"]
  lines = [f"# device_check: {info['device_kind']} ({info['platform']}, jax {info['jax']}"
           f"{', smoke' if result['smoke'] else ''})", "",
           f"Total wall time {result['wall_s']:.0f} s. Peaks from jaxdiff.plan.ACCELERATORS:"
           f" {info['accelerator'] or 'not in the table'}"
           + (f" (bf16 {info['bf16_peak_tflops']:.0f} TFLOP/s, {info['hbm_tbps']} TB/s)"
              if info["accelerator"] else ""), ""]
  if result.get("pytest"):
    lines += [f"Tests marked gpu: {result['pytest']}", ""]
  lines += ["## Training throughput (programs.Programs.chunk)", "",
            "| dtype | batch | models axis | M | compile s | ms/step | model-steps/s | "
            "TFLOP/s | % bf16 peak | % of roofline (bound by) |", "|---" * 10 + "|"]
  for r in result["throughput"]:
    if "step_s" not in r:
      lines.append(f"| {r['dtype']} | {r['batch']} | {r.get('models_axis', '-')} | "
                   f"{r.get('runs', '-')} | {r.get('skipped') or r.get('error')} |||||")
      continue
    frac = r.get("fraction_of_bf16_peak")
    roof = r.get("fraction_of_roofline")
    lines.append(
        f"| {r['dtype']} | {r['batch']} | {r['models_axis']} | {r['runs']} | "
        f"{r['compile_s']:.1f} | {1e3 * r['step_s']:.2f} | {r['model_steps_per_s']:.1f} | "
        f"{r['achieved_tflops']:.2f} | {'-' if frac is None else f'{100 * frac:.1f}%'} | "
        + ("- |" if roof is None else f"{100 * roof:.1f}% ({r['bound_by']}) |"))
  lines += ["", "## Memory: celeba config, plan's estimate against the measured peak", "",
            "| models_group | remat | dtype | plan estimate | measured peak | ratio | "
            "chunk compile s |", "|---" * 7 + "|"]
  for r in result["memory"]:
    head = f"| {r['models_group']} | {r['remat']} | {r['dtype']} | "
    if "estimate" not in r:
      lines.append(head + f"{r.get('skipped') or r.get('error')} ||||")
      continue
    ratio = r.get("measured_over_estimate")
    measured = (_gib(r["measured_peak"]) if r.get("measured_peak")
                else r.get("skipped") or r.get("error") or "-")
    lines.append(head + f"{_gib(r['estimate'])} | {measured} | "
                 f"{'-' if not ratio else f'{ratio:.2f}'} | {r['compile_s']:.1f} |")
  m = result["metrics"]
  lines += ["", "## Metrics", ""]
  if "fmem_s" in m:
    lines.append(f"- f_mem of {m['fmem_samples']:,} samples against {m['fmem_train']:,} "
                 f"images: {m['fmem_s']:.2f} s (+{m['fmem_compile_s']:.1f} s compile, "
                 f"{_gib(m['fmem_temporaries'])} temporaries)")
  if "inception_features_per_s" in m:
    lines.append(f"- Inception pool3 features: {m['inception_features_per_s']:.0f} images/s "
                 f"(+{m['inception_compile_s']:.1f} s compile)")
  if result.get("conv_models_axis"):
    lines += ["", "## conv_models_axis.py", "", "```", result["conv_models_axis"].rstrip(),
              "```"]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", help="folder for device_check.json / .md")
  parser.add_argument("--smoke", action="store_true", help="tiny sizes (any CPU)")
  parser.add_argument("--memory_one", help=argparse.SUPPRESS)  # size,group,remat,dtype
  parser.add_argument("--pytest", default="", help="summary line of the gpu tests")
  parser.add_argument("--conv_log", default="", help="file with conv_models_axis output")
  args = parser.parse_args()
  if args.memory_one:
    size_name, group, remat, dtype = args.memory_one.split(",")
    print(json.dumps(memory_one(size_name, int(group), remat, dtype)), flush=True)
    return
  if not args.out:
    parser.error("--out is required")
  os.makedirs(args.out, exist_ok=True)
  size = SMOKE if args.smoke else FULL
  scale = float(os.environ.get("DEVICE_CHECK_BUDGET_SCALE", "1"))
  start = time.perf_counter()

  def log(text):
    print(f"[{time.perf_counter() - start:6.1f} s] {text}", flush=True)

  result = dict(smoke=args.smoke, device=device_info(), pytest=args.pytest)
  log(f"device {result['device']}")
  result["throughput"] = throughput(size, Budget(scale * size["budget"]["throughput"]), log)
  result["memory"] = memory(size, Budget(scale * size["budget"]["memory"]), log)
  result["metrics"] = metrics(size, Budget(scale * size["budget"]["metrics"]), log)
  if args.conv_log and os.path.exists(args.conv_log):
    with open(args.conv_log) as f:
      result["conv_models_axis"] = f.read()
  result["wall_s"] = time.perf_counter() - start
  with open(os.path.join(args.out, "device_check.json"), "w") as f:
    json.dump(result, f, indent=1, default=str)
  with open(os.path.join(args.out, "device_check.md"), "w") as f:
    f.write(markdown(result))
  log(f"wrote {args.out}/device_check.json and device_check.md")


if __name__ == "__main__":
  main()
