"""Capacity planning: what a sweep needs on each device, before anything is trained.

  python -m jaxdiff.plan --config=configs/celeba.py
  python -m jaxdiff.plan --config=configs/celeba.py --config.train.models_axis=vmap \
      --device_memory=16GiB --probe_steps=5

Takes the same flags as `python -m jaxdiff.main` (--workdir is accepted and ignored, so a
launch command can be checked by replacing `jaxdiff.main` with `jaxdiff.plan`). It builds
the sweep's real programs (`programs.Programs`: the chunk of optimizer steps and the
evaluation) through `jaxdiff.setup`, as the trainer builds them, from shapes alone (a
stand-in dataset, no Inception weights, nothing trained), compiles them for the devices
of this machine (of all processes on a pod) and prints:

  - the runs, the ('models', 'data') mesh, runs per device and the models-axis strategy;
  - parameters and optimizer state per run and per device;
  - what stays on each device for the whole sweep (its runs' train state and inputs, the
    replicated data and quality network), from the shapes and shardings;
  - XLA's memory analysis of the two compiled programs per device: temporaries (the
    activations of the step; the sampler, memorization and quality features of the
    evaluation) and new outputs (the chunk's state is donated, so it updates in place);
  - the estimated peak per device, resident + the larger program's temporaries and new
    outputs, against the device's capacity (`bytes_limit` of accelerators; on CPU the
    host's memory shared by its devices; or --device_memory);
  - the cross-device operations XLA put in each program (runs never communicate: only
    the chunk's all-reduce over 'data' belongs there);
  - model-steps/s from a timed probe of the compiled chunk program (a few steps on
    zero data with freshly initialised runs; --probe_steps=0 skips it);
  - a roofline (--roofline, on by default): XLA's FLOPs and bytes of one model-step
    (one run's step compiled alone), per run and per sweep, and the lower bounds
    max(FLOPs / peak, bytes / bandwidth) of a step and of the sweep on the accelerators of
    ACCELERATORS, which bound dominates, and, after a probe on one of them, the measured
    step as a fraction of its bound;
  - for a U-Net, the memory options: the saved activations per run of every model.remat x
    model.dtype combination and which one fits all of a device's runs at once on an
    80 GB and a 141 GB card (and on this device).

A layout whose estimate exceeds FIT_FRACTION of the capacity (XLA's analysis leaves out
allocator fragmentation and runtime buffers) is refused with one line and exit code 2
that says what to change. To rehearse a pod layout on a workstation, give the CPU as many
fake devices as the pod has chips and the chip's memory, e.g.
`JAX_NUM_CPU_DEVICES=16 python -m jaxdiff.plan --config=... --device_memory=32GiB`
(the CPU compiler's layouts differ from a TPU's: expect the right order of magnitude).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import cli
from jaxdiff import distributed
from jaxdiff import setup
from jaxdiff import programs as programs_lib
from jaxdiff import sharding
from jaxdiff import train_state
from jaxdiff.errors import ConfigError, JaxdiffError

FIT_FRACTION = 0.9
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "T": 1e12, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(text: str) -> int:
  """'16GiB', '512MB', '1e9', '1000000' -> bytes."""
  m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", str(text))
  unit = m.group(2).upper() if m else None
  if not m or unit not in _UNITS:
    raise JaxdiffError(f"--device_memory={text!r}: expected a size such as 16GiB, 512MB or "
                       "1e9 (bytes)")
  try:
    value = float(m.group(1)) * _UNITS[unit]
  except ValueError:
    raise JaxdiffError(f"--device_memory={text!r}: expected a size such as 16GiB") from None
  if not value > 0:
    raise JaxdiffError(f"--device_memory={text!r}: expected a positive size")
  return int(value)


def human(num_bytes: float) -> str:
  for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if abs(num_bytes) >= size:
      return f"{num_bytes / size:.3g} {unit}"
  return f"{int(num_bytes)} B"


def duration(seconds: float) -> str:
  for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
    if seconds >= size:
      return f"{seconds / size:.3g} {unit}"
  return f"{seconds:.3g} s"


def _sds(shape, dtype, sharding_):
  return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding_)


def _local_bytes(tree) -> int:
  """Bytes per device of a tree of sharded ShapeDtypeStructs (the largest shard)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


class AbstractSweep:
  """A sweep's mesh, run table and compiled programs, from the config's shapes alone.

  Built by `jaxdiff.setup.build` as `train.Sweep` is (the same run table, layout, model,
  specs and `Programs`), with a shape-only stand-in dataset and ShapeDtypeStructs in place
  of the data, so that the programs can be lowered and compiled for any mesh without a
  dataset.
  """

  def __init__(self, config, devices=None):
    self.config = config
    self.built = built = setup.build(config, devices, stand_in=True)
    self.table, self.mesh, self.layout = built.table, built.mesh, built.layout
    self.strategy, self.num_padded = built.strategy, built.num_padded
    self.runs_per_device = built.runs_per_device
    self.data_shape, self.dataset = built.data_shape, built.dataset
    self.schedule, self.model, self.num_params = built.schedule, built.model, built.num_params
    self.quality_kind, self.eval_spec = built.quality_kind, built.eval_spec
    self.programs = built.programs

    rep, per_model = sharding.replicated(self.mesh), sharding.models_sharding(self.mesh)
    self.host_inputs = built.host_inputs
    self.inputs = {k: _sds(v.shape, v.dtype, per_model) for k, v in self.host_inputs.items()}
    self.pool = _sds(built.dataset.pool.shape, jnp.float32, rep)
    self.test = _sds(built.dataset.test.shape, jnp.float32, rep)
    qparams = built.abstract_qparams
    self.qparams = (None if qparams is None else
                    jax.tree.map(lambda p: _sds(p.shape, p.dtype, rep), qparams))
    self.state = self.programs.abstract_state(self.inputs)
    self.scalar = _sds((), jnp.int32, rep)

  def lower_chunk(self):
    return self.programs.chunk.lower(self.state, self.inputs, self.pool, self.scalar)

  def lower_evaluate(self):
    return self.programs.evaluate.lower(self.state, self.inputs, self.pool, self.test,
                                        self.qparams, self.scalar)

  def resident_bytes(self) -> dict[str, int]:
    """Bytes per device of what stays on the devices for the whole sweep: the stacked
    state's parts, the per-run inputs, the replicated data and quality network."""
    s = self.state
    out = {"params": _local_bytes(s.params), "opt_state": _local_bytes(s.opt_state),
           "ema_params": _local_bytes(s.ema_params) if s.ema_params is not None else 0,
           "state": _local_bytes(s) + _local_bytes(self.inputs),
           "data": _local_bytes((self.pool, self.test)),
           "quality": _local_bytes(self.qparams) if self.qparams is not None else 0}
    out["total"] = out["state"] + out["data"] + out["quality"]
    return out

  def concrete(self, steps: int):
    """Real arguments of the chunk program: initialised runs, a zero pool, `steps`."""
    rep, per_model = sharding.replicated(self.mesh), sharding.models_sharding(self.mesh)
    inputs = sharding.global_tree(self.host_inputs, per_model)
    state = self.programs.init(inputs)
    pool = jax.jit(lambda: jnp.zeros(self.pool.shape, jnp.float32), out_shardings=rep)()
    return state, inputs, pool, sharding.global_array(np.asarray(steps, np.int32), rep)


@dataclasses.dataclass(frozen=True)
class ProgramMemory:
  """XLA's memory analysis of one compiled program, per device (bytes).

  `arguments` counts only the arguments the program reads (jit drops unused ones: the
  evaluation does not read the optimizer state); the plan counts the resident buffers
  separately and adds each program's `extra`.
  """
  arguments: int
  outputs: int
  aliased: int
  temporaries: int

  @property
  def extra(self) -> int:
    """What the program allocates beyond its (resident) arguments: new outputs (donated
    ones reuse their input) and temporaries."""
    return max(0, self.outputs - self.aliased) + self.temporaries

  @classmethod
  def of(cls, compiled) -> "ProgramMemory":
    m = compiled.memory_analysis()
    if m is None:  # a backend without the analysis
      return cls(0, 0, 0, 0)
    return cls(int(m.argument_size_in_bytes), int(m.output_size_in_bytes),
               int(m.alias_size_in_bytes), int(m.temp_size_in_bytes))


_COLLECTIVE = re.compile(
    r"\b(all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)(?:-start)?\(")


def collectives(compiled) -> dict[str, list[int]]:
  """Cross-device operations of a compiled program: {op: [group size of each occurrence]}.

  A sweep's runs never communicate: the chunk may only all-reduce over 'data' (groups of
  train.data_parallel devices), the evaluation not at all. Anything else is a resharding
  the partitioner inserted, i.e. a sharding bug.
  """
  found: dict[str, list[int]] = {}
  for line in compiled.as_text().splitlines():
    m = _COLLECTIVE.search(line)
    if not m:
      continue
    groups = re.search(r"replica_groups=\{\{([0-9,]*)\}", line)
    size = len(groups.group(1).split(",")) if groups else -1
    iota = re.search(r"replica_groups=\[\d+,(\d+)\]", line)  # iota form [groups,size]
    if iota:
      size = int(iota.group(1))
    found.setdefault(m.group(1), []).append(size)
  return found


def _describe_collectives(found: dict[str, list[int]]) -> str:
  if not found:
    return "none"
  return ", ".join(f"{op} x{len(sizes)} (groups of {sorted(set(sizes))})"
                   for op, sizes in sorted(found.items()))


def device_capacity(device) -> tuple[int, str]:
  """Usable memory of one device and where the number comes from."""
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  (backends without statistics)
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]), f"{device.platform} bytes_limit"
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  local = max(1, jax.local_device_count())
  return int(total // local), f"host memory / {local} local {device.platform} device(s)"


@dataclasses.dataclass
class Plan:
  """What a sweep needs per device (see the module docstring); `lines()` prints it."""
  config_name: str
  num_runs: int
  num_padded: int
  mesh_shape: dict
  platform: str
  strategy: str
  runs_per_device: int
  num_params: int
  resident: dict
  chunk: ProgramMemory
  evaluation: ProgramMemory
  capacity: int
  capacity_source: str
  compile_s: dict
  collectives: dict
  table: Any
  config: Any
  probe_steps: int = 0
  probe_s: float | None = None
  step: StepCost | None = None            # one model-step's cost (roofline)
  options: list | None = None             # MemoryOption per remat x dtype (U-Net sweeps)
  device_kind: str = ""

  @property
  def estimate(self) -> int:
    """Peak bytes per device: the resident buffers plus the larger program's extra."""
    return self.resident["total"] + max(self.chunk.extra, self.evaluation.extra)

  @property
  def fits(self) -> bool:
    return self.estimate <= FIT_FRACTION * self.capacity

  @property
  def model_steps_per_s(self) -> float | None:
    if not self.probe_s:
      return None
    return self.num_runs * self.probe_steps / self.probe_s

  def lines(self) -> list[str]:
    c, t, r = self.config, self.table, self.resident
    ns = sorted({run.n for run in t.runs})
    per_run = lambda b: b / max(1, self.runs_per_device)
    devices = self.mesh_shape[sharding.MODELS] * self.mesh_shape[sharding.DATA]
    out = [
        f"jaxdiff plan: {self.config_name}: {c.model.name} W={c.model.width} on "
        f"{c.data.dataset} {'x'.join(str(v) for v in setup.data_source(c).shape(c.data))}, "
        f"{c.optim.name}, batch <= {t.batch}, {c.train.num_steps} steps",
        f"  runs: {self.num_runs} (n = {ns[0]}..{ns[-1]}: {len(ns)} values x "
        f"{len(tuple(c.data.seeds))} seeds x {len(tuple(c.data.index))} data blocks x "
        f"{len(tuple(c.optim.lr))} lr)"
        + (f", padded to {self.num_padded} ({self.num_padded - self.num_runs} padding slots "
           "repeat the last run)" if self.num_padded > self.num_runs else ""),
        f"  mesh: {self.mesh_shape[sharding.MODELS]} models x {self.mesh_shape[sharding.DATA]}"
        f" data over {devices} {self.platform} device(s) in {jax.process_count()} "
        f"process(es); {self.runs_per_device} run(s) per device, strategy {self.strategy}"
        + (f", {c.train.models_group} at a time" if 0 < c.train.models_group
           < self.runs_per_device else ""),
        f"  parameters: {self.num_params:,} per run ({human(per_run(r['params']))}); "
        f"optimizer state {human(per_run(r['opt_state']))} per run"
        + (f"; EMA {human(per_run(r['ema_params']))} per run" if r["ema_params"] else ""),
        f"  resident per device: {human(r['total'])} = train state and run inputs "
        f"{human(r['state'])} + data {human(r['data'])} (pool and test, replicated)"
        + (f" + quality network {human(r['quality'])}" if r["quality"] else ""),
        f"  train chunk (XLA, per device): activations and temporaries "
        f"{human(self.chunk.temporaries)}, new outputs "
        f"{human(max(0, self.chunk.outputs - self.chunk.aliased))}",
        f"  evaluation (XLA, per device): temporaries {human(self.evaluation.temporaries)} "
        f"(eval.sample_batch={c.eval.sample_batch} of {c.eval.num_samples} samples), "
        f"outputs {human(self.evaluation.outputs)}",
        f"  estimated peak per device: {human(self.estimate)} of {human(self.capacity)} "
        f"({self.capacity_source}): {100 * self.estimate / self.capacity:.1f}%"
        + ("" if self.fits else f", above the {FIT_FRACTION:.0%} limit"),
        f"  compile: chunk {self.compile_s['chunk']:.1f} s, evaluation "
        f"{self.compile_s['evaluate']:.1f} s; cross-device operations: chunk "
        f"{_describe_collectives(self.collectives['chunk'])}, evaluation "
        f"{_describe_collectives(self.collectives['evaluate'])}",
    ]
    if self.model_steps_per_s is not None:
      rate = self.model_steps_per_s
      total = c.train.num_steps * self.num_runs / rate
      out.append(f"  probe: {self.probe_steps} step(s) of every run in {self.probe_s:.3g} s: "
                 f"{rate:.4g} model-steps/s ({rate / self.num_runs:.4g} steps/s per run); "
                 f"{c.train.num_steps} steps ~ {duration(total)} of training "
                 "(evaluations extra)")
    out.extend(self.roofline_lines())
    out.extend(self.option_lines())
    out.append("  fits" if self.fits else "  does not fit")
    return out

  def measured_fraction(self, acc: Accelerator) -> float | None:
    """Roofline bound / measured time of a model-step (1 = at the bound), from the probe."""
    if self.step is None or not self.probe_s:
      return None
    measured = self.probe_s / (self.num_runs * self.probe_steps)
    return self.step.bound_s(acc)[0] / measured

  def roofline_lines(self) -> list[str]:
    if self.step is None:
      return []
    st, c = self.step, self.config
    total_steps = c.train.num_steps * self.num_runs
    out = [f"  roofline: one model-step (one run, batch {self.table.batch}, "
           f"{st.dtype} compute) = {st.flops / 1e12:.3g} TFLOP and "
           f"{human(st.bytes_accessed)} accessed (XLA cost analysis on "
           f"{st.platform}: {st.flops / max(st.bytes_accessed, 1):.0f} FLOP/byte); per run "
           f"({c.train.num_steps} steps) {st.flops * c.train.num_steps:.3g} FLOP, per sweep "
           f"({self.num_runs} runs) {st.flops * total_steps:.3g} FLOP",
           f"    {'accelerator':15s} {'peak TFLOP/s':>12s} {'TB/s':>6s} "
           f"{'step bound':>11s} {'bound by':>8s} {'sweep on 1 chip':>16s}"]
    here = accelerator_named(self.device_kind) if self.platform != "cpu" else None
    for acc in ACCELERATORS:
      bound, which = st.bound_s(acc)
      peak = acc.bf16_tflops if st.dtype == "bfloat16" else acc.f32_tflops
      line = (f"    {acc.name:15s} {peak:12.0f} {acc.hbm_tbps:6.2f} "
              f"{1e3 * bound:9.3g} ms {which:>8s} {duration(bound * total_steps):>16s}")
      frac = self.measured_fraction(acc) if acc is here else None
      if frac is not None:
        line += f"   measured here: {100 * frac:.1f}% of the bound"
      out.append(line)
    out.append("    (lower bounds: max(FLOPs / peak, bytes / bandwidth) per model-step x "
               "model-steps; evaluations extra)")
    return out

  def option_lines(self) -> list[str]:
    if not self.options:
      return []
    n = self.runs_per_device
    cards = [a for a in ACCELERATORS if a.name in ("H100 SXM", "H200 SXM")]
    out = [f"  memory options (all {n} runs of a device at once, batch {self.table.batch}; "
           "saved activations from autodiff, + XLA's workspace; estimates):",
           f"    {'model.remat':11s} {'model.dtype':11s} {'saved/run':>10s} "
           f"{'est./run':>10s} {'all at once':>12s} "
           + " ".join(f"{a.name + ' ' + format(a.memory_gb, '.0f') + 'GB':>15s}"
                      for a in cards)]
    for o in self.options:
      fits = " ".join(f"{('fits' if o.all_at_once <= FIT_FRACTION * a.memory_gb * 1e9 else '-'):>15s}"
                      for a in cards)
      out.append(f"    {o.remat:11s} {o.dtype:11s} {human(o.saved_per_run):>10s} "
                 f"{human(o.per_run):>10s} {human(o.all_at_once):>12s} {fits}")
    targets = [(a.name, a.memory_gb * 1e9) for a in cards]
    if self.platform != "cpu":
      targets.append((f"this device ({human(self.capacity)})", self.capacity))
    else:
      out.append("    (this CPU: XLA:CPU realises neither remat's nor bfloat16's savings, "
                 "see memory_options; here train.models_group bounds the memory)")
    for name, cap in targets:
      o = _fit_choice(self.options, cap)
      if o is None:
        out.append(f"    {name}: no combination fits all {n} runs at once; keep "
                   "train.models_group > 0")
      else:
        out.append(f"    {name}: all {n} runs at once fit with --config.model.remat={o.remat}"
                   f" --config.model.dtype={o.dtype} --config.train.models_group=0 "
                   f"(~{human(o.all_at_once)})")
    return out

  def to_json(self) -> dict:
    """The plan's numbers (bytes, seconds) as a JSON-able dict."""
    return dict(
        config=self.config_name, num_runs=self.num_runs, num_padded=self.num_padded,
        mesh=dict(self.mesh_shape), platform=self.platform, strategy=self.strategy,
        runs_per_device=self.runs_per_device, num_params=self.num_params,
        resident=dict(self.resident),
        chunk=dict(dataclasses.asdict(self.chunk), extra=self.chunk.extra),
        evaluation=dict(dataclasses.asdict(self.evaluation), extra=self.evaluation.extra),
        estimate=self.estimate, capacity=self.capacity, capacity_source=self.capacity_source,
        fit_fraction=FIT_FRACTION, fits=self.fits, compile_s=dict(self.compile_s),
        collectives=self.collectives, probe_steps=self.probe_steps, probe_s=self.probe_s,
        model_steps_per_s=self.model_steps_per_s, device_kind=self.device_kind,
        step=self.step.to_json() if self.step else None,
        roofline={a.name: dict(zip(("bound_s", "bound_by"), self.step.bound_s(a)))
                  for a in ACCELERATORS} if self.step else None,
        options=[o.to_json() for o in self.options] if self.options else None)

  def refusal(self) -> str:
    """One line: which program does not fit, by how much, and what to change."""
    c = self.config
    # The peak is the resident buffers plus the larger program's temporaries.
    if self.evaluation.extra >= self.chunk.extra:
      which, extra = "the evaluation", self.evaluation.extra
    else:
      which, extra = "the train step", self.chunk.extra
    hints = []
    if which == "the evaluation" and c.eval.sample_batch > 1:
      hints.append(f"a smaller eval.sample_batch (now {c.eval.sample_batch}: samples "
                   "generated together)")
    at_once = min(self.runs_per_device, c.train.models_group or self.runs_per_device)
    room = FIT_FRACTION * self.capacity - self.resident["total"]
    verdict = ""
    if room > 0:
      # The programs' temporaries grow with the runs computed at once (activations: the
      # U-Net's at batch 512 are ~20 GiB a run); how many fit beside the resident state.
      per_run_extra = max(self.chunk.extra, self.evaluation.extra) / at_once
      fit = int(room // per_run_extra) if per_run_extra > 0 else 0
      if 1 <= fit < at_once:
        hints.append(f"train.models_group={fit} (computes {fit} of the device's "
                     f"{self.runs_per_device} runs at a time, ~{human(per_run_extra)} each)")
      elif fit == 0:
        verdict = (f"; one run at a time does not fit either (~{human(per_run_extra)} of "
                   f"temporaries per run, {human(room)} free beside the resident state)")
    # Fewer runs per device shrink the resident state; with models_group set, the
    # temporaries no longer grow with the runs of a device.
    if self.runs_per_device > 1 and (room <= 0 or not c.train.models_group):
      hints.append(f"fewer runs per device (now {self.runs_per_device}: {self.num_runs} runs "
                   f"on {self.mesh_shape[sharding.MODELS]} 'models' devices): more devices, "
                   "or fewer runs per job (split data.n_train or data.seeds over jobs)")
    num_devices = int(np.prod([int(v) for v in self.mesh_shape.values()]))
    if which == "the train step" and 2 * c.train.data_parallel <= num_devices:
      if self.table.batch % (2 * c.train.data_parallel) == 0:
        hints.append(f"train.data_parallel={2 * c.train.data_parallel} (splits each run's "
                     f"batch of {self.table.batch} over devices)")
    if self.options and self.platform != "cpu":
      o = _fit_choice(self.options, self.capacity)
      if o is not None and (o.remat, o.dtype) != (c.model.remat, c.model.dtype):
        hints.append(f"model.remat={o.remat} model.dtype={o.dtype} with "
                     "train.models_group=0 (all runs at once, ~"
                     f"{human(o.all_at_once)}: see the memory options)")
    if not hints:
      hints.append("devices with more memory")
    return (f"does not fit: the resident state and data ({human(self.resident['total'])}) "
            f"plus {which}'s temporaries ({human(extra)}) need ~{human(self.estimate)} per "
            f"device, more than {FIT_FRACTION:.0%} of {human(self.capacity)} "
            f"({self.capacity_source}){verdict}; "
            "change: " + "; or ".join(hints)
            + ("" if self.capacity_source == "--device_memory" else
               " (rehearse another card's memory with --device_memory=80GB)"))


# ------------------------------------------------------------------------ roofline


@dataclasses.dataclass(frozen=True)
class Accelerator:
  """Published per-chip peaks of an accelerator (dense, i.e. without 2:4 sparsity)."""
  name: str
  bf16_tflops: float   # bfloat16 inputs, float32 accumulation
  f32_tflops: float    # what float32 inputs reach at JAX's default matmul/conv precision
                       # (NVIDIA: TF32 tensor cores; TPU: bfloat16 passes, = bf16 peak)
  hbm_tbps: float      # memory bandwidth, 1e12 bytes/s
  memory_gb: float     # memory per chip, 1e9 bytes
  kinds: tuple[str, ...]  # lower-case substrings of jax's device_kind naming this chip
  source: str


# The one table of accelerator peaks (per chip). Sources: the vendors' datasheets and
# product pages, read 2025: NVIDIA "H100 Tensor Core GPU" datasheet (SXM5 column: BF16
# 1,979 and TF32 989 TFLOPS with sparsity, i.e. 989 / 495 dense; 3.35 TB/s; 80 GB);
# NVIDIA "H200 Tensor Core GPU" datasheet (SXM: same compute, 4.8 TB/s, 141 GB); NVIDIA
# "A100 Tensor Core GPU" datasheet (SXM 80GB: BF16 312, TF32 156 dense; 2,039 GB/s);
# NVIDIA "Tesla V100" datasheet (SXM2: no bfloat16, FP16 tensor 125, FP32 15.7; 900 GB/s;
# the GPU of the users' reports in the issue); Google Cloud TPU documentation, "TPU v4",
# "TPU v5e" and "TPU v5p" system-architecture pages (per chip: v4 275 TFLOPS bf16, 32 GiB,
# 1,200 GB/s; v5e 197 TFLOPS, 16 GiB, 819 GB/s; v5p 459 TFLOPS, 95 GiB, 2,765 GB/s).
ACCELERATORS: tuple[Accelerator, ...] = (
    Accelerator("H100 SXM", 989.0, 495.0, 3.35, 80.0, ("h100",),
                "NVIDIA H100 Tensor Core GPU datasheet, SXM5"),
    Accelerator("H200 SXM", 989.0, 495.0, 4.8, 141.0, ("h200",),
                "NVIDIA H200 Tensor Core GPU datasheet, SXM"),
    Accelerator("A100 SXM 80GB", 312.0, 156.0, 2.039, 80.0, ("a100",),
                "NVIDIA A100 Tensor Core GPU datasheet, SXM 80GB"),
    Accelerator("V100 SXM2 32GB", 125.0, 15.7, 0.9, 32.0, ("v100",),
                "NVIDIA Tesla V100 datasheet (no bfloat16: its FP16 tensor peak)"),
    Accelerator("TPU v4", 275.0, 275.0, 1.2, 34.4, ("tpu v4",),
                "Google Cloud TPU v4 documentation, per chip"),
    Accelerator("TPU v5e", 197.0, 197.0, 0.819, 17.2, ("tpu v5 lite", "tpu v5e"),
                "Google Cloud TPU v5e documentation, per chip"),
    Accelerator("TPU v5p", 459.0, 459.0, 2.765, 102.0, ("tpu v5p", "tpu v5"),
                "Google Cloud TPU v5p documentation, per chip"),
)


def accelerator_named(device_kind: str) -> Accelerator | None:
  """The table's row for a jax `device_kind` ('NVIDIA H100 80GB HBM3', 'TPU v4'), or None."""
  kind = device_kind.lower()
  for acc in ACCELERATORS:  # 'tpu v5' last among TPUs: 'tpu v5 lite' is a v5e
    if any(k in kind for k in acc.kinds):
      return acc
  return None


@dataclasses.dataclass(frozen=True)
class StepCost:
  """XLA's cost and memory analysis of ONE optimizer step of ONE run (a model-step).

  flops and bytes_accessed come from `compiled.cost_analysis()` of the jitted
  `programs.train_step` at the sweep's batch (the whole batch on one device); bytes are
  counted after XLA's fusion on the backend that compiled it (`platform`), so a GPU's
  figure differs from a CPU's (on CPU, the U-Net's bytes per FLOP are a little higher).
  """
  flops: float
  bytes_accessed: float
  temporaries: int
  dtype: str
  platform: str

  def bound_s(self, acc: Accelerator) -> tuple[float, str]:
    """Roofline lower bound of one model-step on `acc`: max(FLOPs / peak, bytes / BW).

    The peak is the bf16 one for bfloat16 compute, else the float32-input one. Returns
    (seconds, 'compute' | 'memory': the bound that dominates).
    """
    peak = (acc.bf16_tflops if self.dtype == "bfloat16" else acc.f32_tflops) * 1e12
    compute = self.flops / peak
    memory = self.bytes_accessed / (acc.hbm_tbps * 1e12)
    return max(compute, memory), ("compute" if compute >= memory else "memory")

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def one_run_step(sweep: AbstractSweep, model=None):
  """The jitted one-run train step of a sweep (its model unless `model` is given), lowered
  from shapes: one run's state, inputs and the pool, the whole batch on one device."""
  config = sweep.config
  model = sweep.model if model is None else model
  tx = train_state.make_optimizer(config.optim)
  step_spec = dataclasses.replace(sweep.built.step_spec, data_parallel=1)
  inputs = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype)
            for k, v in sweep.host_inputs.items()}
  example = jnp.zeros((1,) + sweep.data_shape, jnp.float32)
  capacity, ema = sweep.table.capacity, config.optim.ema_decay > 0
  state = jax.eval_shape(
      lambda inp: train_state.create_train_state(model, tx, inp["key"], inp["lr"], inp["n"],
                                        example, capacity, ema), inputs)
  pool = jax.ShapeDtypeStruct(sweep.pool.shape, jnp.float32)
  fn = jax.jit(lambda st, inp, p: programs_lib.train_step(st, inp, p, model=model, tx=tx,
                                                          schedule=sweep.schedule, spec=step_spec))
  return fn.lower(state, inputs, pool)


def step_cost(sweep: AbstractSweep) -> StepCost:
  """Compiles `one_run_step` and reads XLA's cost and memory analysis."""
  compiled = one_run_step(sweep).compile()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  mem = ProgramMemory.of(compiled)
  return StepCost(flops=float(cost.get("flops", 0.0)),
                  bytes_accessed=float(cost.get("bytes accessed", 0.0)),
                  temporaries=mem.temporaries,
                  dtype=str(sweep.config.model.get("dtype", "float32")),
                  platform=sweep.mesh.devices.flat[0].platform)


def saved_activation_bytes(model, data_shape, batch: int) -> int:
  """Bytes autodiff keeps from the forward pass for the backward pass (the residuals of
  `jax.vjp` of the loss w.r.t. the parameters, from shapes alone; backend-independent).

  What XLA must store between the passes unless it recomputes; `jax.checkpoint`
  (model.remat) and bfloat16 activations (model.dtype) shrink it. Counts, besides the
  activations, the few parameter-sized residuals (the convolution kernels the input
  gradients need; ~parameters' size, a few MiB for the paper's U-Net).
  """
  example = jax.ShapeDtypeStruct((batch,) + tuple(data_shape), jnp.float32)
  t = jax.ShapeDtypeStruct((batch,), jnp.int32)

  def residuals(x, t):
    params = train_state.init_params(model, jax.random.PRNGKey(0), x[:1])
    def loss(p):
      out = model.apply({"params": p}, x, t, train=True,
                        rngs={"dropout": jax.random.PRNGKey(1)})
      return jnp.sum(jnp.square(out))
    return jax.vjp(loss, params)[1]  # a Partial: its leaves are the residuals

  shapes = jax.eval_shape(residuals, example, t)
  return int(sum(np.prod(a.shape, dtype=np.int64) * np.dtype(a.dtype).itemsize
                 for a in jax.tree.leaves(shapes)))


REMAT_OPTIONS = ("none", "convs", "full")
DTYPE_OPTIONS = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class MemoryOption:
  """One (model.remat, model.dtype) combination: its saved activations per run and the
  estimated peak per device with all of the device's runs computed at once."""
  remat: str
  dtype: str
  saved_per_run: int
  per_run: int        # saved activations + XLA's workspace per run (see memory_options)
  all_at_once: int    # resident + runs_per_device x max(per_run, evaluation per run)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def memory_options(sweep: AbstractSweep, plan: "Plan") -> list[MemoryOption]:
  """The memory of every remat x dtype combination of a U-Net sweep, from shapes.

  Per run: autodiff's saved activations of the combination (`saved_activation_bytes`)
  plus XLA's workspace, the part of the compiled step's temporaries that is not saved
  activations (gradients being formed, fusion outputs), measured on the configured
  program: temporaries per run - saved activations. XLA:CPU removes jax.checkpoint's
  optimization barriers before its CSE pass (so the recomputation merges back into the
  forward pass) and runs bfloat16 convolutions in float32: its temporaries are those of
  remat=none, float32 whatever the setting, and the workspace is taken against that
  combination there. The evaluation's temporaries per run are added as measured.
  Estimates for accelerators; `benchmarks/device_check.sh` measures the peaks.
  """
  at_once = sweep.layout.at_once(sweep.runs_per_device)
  batch = sweep.table.batch
  saved = {}
  for remat in REMAT_OPTIONS:
    for dtype in DTYPE_OPTIONS:
      m = dataclasses.replace(sweep.model, remat=remat, dtype=dtype)
      saved[remat, dtype] = saved_activation_bytes(m, sweep.data_shape, batch)
  configured = (sweep.model.remat, sweep.model.dtype)
  honours = plan.platform != "cpu"
  baseline = saved[configured] if honours else saved["none", "float32"]
  workspace = max(0, plan.chunk.extra // at_once - baseline)
  eval_per_run = plan.evaluation.extra / at_once
  out = []
  for (remat, dtype), s in saved.items():
    per_run = s + workspace
    total = plan.resident["total"] + sweep.runs_per_device * max(per_run, eval_per_run)
    out.append(MemoryOption(remat, dtype, s, int(per_run), int(total)))
  return out


def _fit_choice(options: list[MemoryOption], capacity: float) -> MemoryOption | None:
  """The cheapest option that fits: least recomputation first, float32 before bfloat16."""
  order = {r: i for i, r in enumerate(REMAT_OPTIONS)}
  # float32 first (bfloat16 changes the numerics; recomputation only costs time).
  ranked = sorted(options, key=lambda o: (DTYPE_OPTIONS.index(o.dtype), order[o.remat]))
  for o in ranked:
    if o.all_at_once <= FIT_FRACTION * capacity:
      return o
  return None


def make_plan(config, devices=None, *, device_memory: int | None = None,
              probe_steps: int = 10, config_name: str = "", roofline: bool = True,
              progress=None) -> Plan:
  """Compiles the sweep's programs from shapes, measures them, and probes the chunk.

  Args:
    config: a diffusion-sweep config.
    devices: the devices of the mesh (default: all devices of all processes).
    device_memory: bytes per device to plan for (default: what the device reports).
    probe_steps: optimizer steps of the timed probe (0: no probe). The probe runs only
      when the layout fits.
    roofline: also compile one model-step alone (`step_cost`: the roofline) and, for a
      U-Net, count the saved activations of every model.remat x model.dtype combination
      (`memory_options`).
    progress: called with a line before each long step (compiles take minutes for a
      U-Net on a CPU), e.g. print.
  """
  say = progress or (lambda message: None)
  sweep = AbstractSweep(config, devices)
  say(f"compiling the train chunk ({sweep.table.num_runs} runs, {sweep.runs_per_device} per "
      "device) ...")
  t0 = time.time()
  chunk = sweep.lower_chunk().compile()
  t1 = time.time()
  say(f"compiled in {t1 - t0:.0f} s; compiling the evaluation ...")
  evaluation = sweep.lower_evaluate().compile()
  t2 = time.time()
  say(f"compiled in {t2 - t1:.0f} s")
  device = sweep.mesh.devices.flat[0]
  if device_memory is None:
    capacity, source = device_capacity(device)
  else:
    capacity, source = int(device_memory), "--device_memory"
  plan = Plan(
      config_name=config_name, num_runs=sweep.table.num_runs, num_padded=sweep.num_padded,
      mesh_shape=dict(sweep.mesh.shape), platform=device.platform, strategy=sweep.strategy,
      runs_per_device=sweep.runs_per_device, num_params=sweep.num_params,
      resident=sweep.resident_bytes(), chunk=ProgramMemory.of(chunk),
      evaluation=ProgramMemory.of(evaluation), capacity=capacity, capacity_source=source,
      compile_s={"chunk": t1 - t0, "evaluate": t2 - t1},
      collectives={"chunk": collectives(chunk), "evaluate": collectives(evaluation)},
      table=sweep.table, config=config, device_kind=getattr(device, "device_kind", ""))
  if roofline:
    say("compiling one model-step alone for the roofline ...")
    plan.step = step_cost(sweep)
    if hasattr(sweep.model, "remat"):
      plan.options = memory_options(sweep, plan)
  if probe_steps > 0 and plan.fits:
    say(f"probing {probe_steps} steps ...")
    state, inputs, pool, steps = sweep.concrete(probe_steps)
    state = chunk(state, inputs, pool, steps)  # warm-up: first-call costs
    jax.block_until_ready(state)
    start = time.perf_counter()
    state = chunk(state, inputs, pool, steps)
    jax.block_until_ready(state)
    plan.probe_s, plan.probe_steps = time.perf_counter() - start, probe_steps
  return plan


# ------------------------------------------------------------------------ command line


def _define_flags():
  from absl import flags
  flags.DEFINE_string("device_memory", None, "Memory per device to plan for (e.g. 16GiB); "
                      "default: what the device reports (host memory / devices on CPU).")
  flags.DEFINE_integer("probe_steps", 10, "Optimizer steps of the timed probe (0: none).",
                       lower_bound=0)
  flags.DEFINE_bool("json", False, "Print the plan as one JSON object instead of text.")
  flags.DEFINE_bool("roofline", True, "Also compile one model-step alone (FLOPs, bytes: "
                    "the roofline on the accelerators of plan.ACCELERATORS) and count the "
                    "saved activations of every model.remat x model.dtype option.")


def main(argv) -> None:
  from absl import flags
  from absl import logging
  from ml_collections import config_flags
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  config = cli.sweep_flags().config.value
  if config is None:
    cli.fail("--config is required, e.g. --config=configs/celeba.py")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  fv = flags.FLAGS
  try:
    capacity = parse_bytes(fv.device_memory) if fv.device_memory else None
    distributed.maybe_initialize_distributed()
    if config.get("experiment", "diffusion") != "diffusion":
      raise ConfigError("experiment", config.experiment, "'diffusion' (plans are for sweeps)")
    plan = make_plan(config, device_memory=capacity, probe_steps=fv.probe_steps,
                     config_name=config_flags.get_config_filename(fv["config"]),
                     roofline=fv.roofline,
                     progress=(lambda m: print(f"jaxdiff: plan: {m}", file=sys.stderr,
                                               flush=True))
                     if jax.process_index() == 0 else None)
  except JaxdiffError as e:
    cli.fail(str(e))
  if jax.process_index() == 0:
    text = json.dumps(plan.to_json()) if fv.json else "\n".join(plan.lines())
    print(text, flush=True)
  if not plan.fits:
    cli.fail(plan.refusal())


if __name__ == "__main__":
  from absl import app
  cli.sweep_flags()  # the flags of jaxdiff.main: a launch command plans as it is
  _define_flags()
  jax.config.config_with_absl()
  app.run(main, flags_parser=cli.parse_flags)
