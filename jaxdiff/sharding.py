"""The device mesh, its shardings and global arrays.

The mesh has two axes: 'models' (runs are spread over it first) and 'data' (splits one
run's batch when a run is too big for one device). Per-run functions are written for ONE
run; `jaxdiff.models_axis.lift` turns them into functions over the local slice of the
models axis (how the runs of one device are laid out), and the trainer wraps that in
`jax.shard_map` over the mesh, so each device runs its own runs with no communication (and
a psum over 'data' when the batch is split).

With several processes (jaxdiff.distributed joins them) the mesh spans the devices of all
of them; `global_array` lets each process fill its own devices' shards from the host data
it loaded, and `fetch` gathers results onto every process.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxdiff.errors import ConfigError

MODELS = "models"
DATA = "data"


def make_mesh(data_parallel: int = 1, devices=None) -> Mesh:
  """A ('models', 'data') mesh over all devices (of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  if data_parallel < 1 or len(devices) % data_parallel:
    raise ConfigError("train.data_parallel", data_parallel,
                      f"a positive divisor of the number of devices ({len(devices)})")
  shape = (len(devices) // data_parallel, data_parallel)
  return jax.make_mesh(shape, (MODELS, DATA), axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=devices)


def models_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over 'models', replicated over 'data'."""
  return NamedSharding(mesh, P(MODELS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global jax.Array from a host array that every process holds in full.

  Works with several processes (each one fills the shards of its own devices).
  """
  host = np.asarray(host)
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def global_tree(tree: Any, sharding: NamedSharding) -> Any:
  return jax.tree.map(lambda x: global_array(x, sharding), tree)


def fetch(tree: Any) -> Any:
  """Brings a (possibly multi-process) global tree to host numpy on every process."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree.map(one, tree)
