"""The models axis: how the runs that share one device are laid out, in one place.

A sweep stacks its M runs along a leading "models" axis; the mesh (jaxdiff.sharding)
splits that axis over devices, and each device computes its local slice of runs. Three
config keys shape that local computation; they act in two layers, and this module is the
home of all three (their checks are `validate`, their resolved form is `Layout`):

  train.models_axis  ("auto" | "unroll" | "vmap") - the PROGRAM layer: how a per-run
      function (the train step, the evaluation) is lifted over the local runs (`lift`):
        "unroll"  per-run copies: the program holds one copy of the per-run computation
                  per local run, each on a static slice of the stacked state (no batching
                  transform at all). Measured fastest on CPU (design.md: 1.2-1.6x faster
                  than separate jitted calls, where vmap's grouped convolutions are 3-5x
                  slower).
        "vmap"    `jax.vmap` over the local runs (batched matmuls and convolutions: the
                  choice for accelerators with large models axes).
        "auto"    "unroll" on CPU, "vmap" elsewhere (`resolve_strategy`).
  train.models_group (G >= 0) - also the program layer: G > 0 computes G runs at a time,
      the groups one after another inside the same program (`map_groups`: the memory of G
      runs, for models axes larger than a device holds); 0 computes all local runs at once.
  model.conv_batching ("native" | "unroll" | "im2col") - the LAYER layer, and only under
      "vmap": what a vmapped convolution with per-run kernels becomes (jaxdiff.models.layers):
        "native"  XLA's grouped convolution;
        "unroll"  the convolution loop: a `custom_vmap` rule that issues one plain
                  convolution per run (inside the vmapped program, for convolutions only);
        "im2col"  patches and one batched matmul.
      Under train.models_axis = "unroll" nothing is vmapped and this key has no effect.

So "unroll" names two different mechanisms: train.models_axis="unroll" copies the whole
per-run step once per run (`lift`'s per-run copies); model.conv_batching="unroll" loops
only the convolutions inside a vmapped step (layers' convolution loop). The config values
stay as users type them; the code calls the first "per-run copies" and the second "the
convolution loop". All combinations give the same numbers (tests/sharding_test.py,
tests/layers_test.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff.errors import ConfigError
from jaxdiff.models.layers import CONV_BATCHING
from jaxdiff.sharding import MODELS

STRATEGIES = ("auto", "unroll", "vmap")  # train.models_axis
PER_RUN_COPIES = "unroll"  # the train.models_axis value of `lift`'s per-run copies


@dataclasses.dataclass(frozen=True)
class Layout:
  """The resolved layout of a device's runs (what the programs are built with).

  Attributes:
    strategy: "unroll" (per-run copies) or "vmap", `train.models_axis` resolved for the
      platform.
    group: runs computed at a time (`train.models_group`; 0: all of them).
    conv_batching: `model.conv_batching`, what a vmapped convolution becomes (it only
      matters under strategy "vmap"; the U-Net reads it from the model config).
  """
  strategy: str
  group: int
  conv_batching: str

  def at_once(self, runs_per_device: int) -> int:
    """Runs whose activations are alive at once on a device."""
    return min(runs_per_device, self.group or runs_per_device)


def validate(config) -> None:
  """Checks the three keys of the models axis (one ConfigError naming the key)."""
  t = config.train
  if t.models_axis not in STRATEGIES:
    raise ConfigError("train.models_axis", t.models_axis, f"one of {STRATEGIES}")
  group = t.models_group
  if not (isinstance(group, int) and not isinstance(group, bool) and group >= 0):
    raise ConfigError("train.models_group", group,
                      "an integer >= 0 (0: all of a device's runs at once)")
  if config.model.name == "unet":  # the only model with convolutions
    batching = config.model.get("conv_batching", "native")
    if batching not in CONV_BATCHING:
      raise ConfigError("model.conv_batching", batching, f"one of {CONV_BATCHING}")


def layout_of(config, platform: str | None = None) -> Layout:
  """The models-axis layout of a (validated) config on `platform` (default: JAX's)."""
  return Layout(strategy=resolve_strategy(config.train.models_axis, platform),
                group=int(config.train.models_group),
                conv_batching=str(config.model.get("conv_batching", "native")))


def resolve_strategy(strategy: str, backend: str | None = None) -> str:
  """'auto' -> 'unroll' (per-run copies) on CPU, 'vmap' on GPU/TPU."""
  if strategy not in STRATEGIES:
    raise ConfigError("train.models_axis", strategy, f"one of {STRATEGIES}")
  if strategy != "auto":
    return strategy
  return PER_RUN_COPIES if (backend or jax.default_backend()) == "cpu" else "vmap"


def padded_num_runs(num_runs: int, mesh) -> int:
  """The models axis is padded to a multiple of the mesh's 'models' size (the padding
  slots repeat the last run: jaxdiff.setup.run_inputs)."""
  k = mesh.shape[MODELS]
  return int(math.ceil(num_runs / k) * k)


def _per_run_copies(fn: Callable) -> Callable:
  """fn(per_model, shared) once per run of the stacked per_model tree, side by side in
  one program (static slices; the strategy "unroll")."""
  def together(per_model, shared):
    num = jax.tree.leaves(per_model)[0].shape[0]
    outs = [fn(jax.tree.map(lambda x, m=m: x[m], per_model), shared) for m in range(num)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
  return together


def lift(fn: Callable, strategy: str, group: int = 0) -> Callable:
  """Lifts fn(per_model, shared) to stacked per_model trees with a leading models axis.

  Args:
    fn: a function of ONE run: fn(per_model_tree, shared_tree) -> output tree.
    strategy: "unroll" (per-run copies) or "vmap" (already resolved).
    group: runs computed together (0: all of them); see `map_groups`.

  Returns:
    lifted(per_model_stacked, shared) -> outputs stacked along a new leading axis.
  """
  if strategy == "vmap":
    together = jax.vmap(fn, in_axes=(0, None))
  elif strategy == PER_RUN_COPIES:
    together = _per_run_copies(fn)
  else:
    raise ValueError(f"unknown models-axis strategy {strategy!r}")
  if not group:
    return together
  return lambda per_model, shared: map_groups(lambda pm: together(pm, shared), per_model,
                                              group)


def map_groups(fn: Callable, stacked: Any, group: int) -> Any:
  """fn over consecutive groups of `group` runs, one group after another (`lax.map`).

  fn takes and returns trees with a leading axis of runs. The groups run in sequence inside
  one program, so the activations and temporaries alive at once are those of `group` runs,
  not of all of them (`train.models_group`: the models axis of a device is then no longer
  bounded by its memory). A last, smaller group takes the remainder.
  """
  num = jax.tree.leaves(stacked)[0].shape[0]
  if not group or group >= num:
    return fn(stacked)
  full = num // group * group
  head = jax.tree.map(lambda x: x[:full].reshape((num // group, group) + x.shape[1:]),
                      stacked)
  out = jax.tree.map(lambda y: y.reshape((full,) + y.shape[2:]), jax.lax.map(fn, head))
  if full == num:
    return out
  tail = fn(jax.tree.map(lambda x: x[full:], stacked))
  return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, tail)
