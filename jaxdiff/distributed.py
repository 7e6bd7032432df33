"""Joining the processes of a multi-host launch, and keeping them in step.

On several hosts every process runs the same command; `maybe_initialize_distributed()`
(called by jaxdiff.main before any other JAX call) joins them into one JAX system with
`jax.distributed`, from the launcher's or the cluster's environment:

  JAXDIFF_COORDINATOR_ADDRESS=host:port JAXDIFF_NUM_PROCESSES=N JAXDIFF_PROCESS_ID=i
      a plain launch (any machines that reach host:port; process 0 runs the coordinator);
  SLURM (srun with more than one task), Open MPI (mpirun -np N > 1), GKE TPU slices
      detected from their variables, the rest left to JAX's own auto-detection;
  JAXDIFF_DISTRIBUTED=on   always initialise with JAX's auto-detection (Cloud TPU VMs,
      whose worker list only their metadata server knows: launch/tpu_pod.sh sets it);
  JAXDIFF_DISTRIBUTED=off  never; JAXDIFF_INIT_TIMEOUT=seconds (default 300) bounds the
      wait for the other processes.

On one host (none of these set) it does nothing. With several processes the mesh
(jaxdiff.sharding) spans the devices of all of them; `any_process` and
`check_same_on_all_processes` keep their decisions and configs in step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import zlib
from typing import Any, Mapping

import jax
import numpy as np

from jaxdiff.errors import JaxdiffError

ENV_ADDRESS = "JAXDIFF_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAXDIFF_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXDIFF_PROCESS_ID"
ENV_INIT_TIMEOUT = "JAXDIFF_INIT_TIMEOUT"
ENV_MODE = "JAXDIFF_DISTRIBUTED"
DISTRIBUTED_MODES = ("auto", "on", "off")
DEFAULT_INIT_TIMEOUT = 300  # seconds, JAX's default


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
  """How this process joins a multi-process JAX system.

  Attributes:
    source: what asked for it: "explicit" (JAXDIFF_* variables), "slurm", "open_mpi",
      "tpu" (GKE / multislice variables) or "forced" (JAXDIFF_DISTRIBUTED=on).
    kwargs: the keyword arguments of `jax.distributed.initialize`; what is left out
      there is auto-detected by JAX from the same environment.
  """
  source: str
  kwargs: Mapping[str, Any]


def _env_int(environ, name: str, minimum: int) -> int:
  raw = environ.get(name, "")
  try:
    value = int(raw)
  except ValueError:
    value = None
  if value is None or value < minimum:
    raise JaxdiffError(f"environment variable {name}={raw!r}: expected an integer >= {minimum}")
  return value


def _slurm_local_devices(environ) -> list[int] | None:
  """All of the node's GPUs when SLURM runs one task per node, else None.

  JAX's SLURM detection gives each process the one GPU numbered by its local task id
  (one process per GPU); with one process per host that would leave every GPU but the
  first idle. SLURM exposes the node's allocated GPUs in CUDA_VISIBLE_DEVICES (renumbered
  0..k-1 inside the process) or SLURM_GPUS_ON_NODE.
  """
  if environ.get("JAX_LOCAL_DEVICE_IDS"):
    return None  # the user chose
  per_node = environ.get("SLURM_NTASKS_PER_NODE", "")
  if not per_node.isdigit():
    tasks, nodes = environ.get("SLURM_NTASKS", ""), environ.get("SLURM_STEP_NUM_NODES",
                                                                 environ.get("SLURM_NNODES", ""))
    per_node = str(int(tasks) // int(nodes)) if tasks.isdigit() and nodes.isdigit() and (
        int(nodes) and int(tasks) % int(nodes) == 0) else ""
  if per_node != "1":
    return None
  visible = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
  if visible and visible.upper() not in ("NODEVFILES", "NONE"):
    return list(range(len(visible.split(","))))
  gpus = environ.get("SLURM_GPUS_ON_NODE", "")
  if gpus.isdigit() and int(gpus) > 0:
    return list(range(int(gpus)))
  return None


def _count_list(value: str) -> int:
  return len([v for v in value.split(",") if v.strip()])


def distributed_settings(environ: Mapping[str, str] | None = None
                         ) -> DistributedSettings | None:
  """Whether and how to call `jax.distributed.initialize`, from environment variables.

  Returns:
    None on one host (nothing to initialise), else the settings (see the module docstring
    for the variables read).

  Raises:
    JaxdiffError: a JAXDIFF_* variable has a bad value or a companion variable is missing.
  """
  environ = os.environ if environ is None else environ
  mode = environ.get(ENV_MODE, "auto").strip().lower() or "auto"
  if mode not in DISTRIBUTED_MODES:
    raise JaxdiffError(f"environment variable {ENV_MODE}={mode!r}: expected one of "
                       f"{', '.join(DISTRIBUTED_MODES)}")
  if mode == "off":
    return None
  timeout = DEFAULT_INIT_TIMEOUT
  if environ.get(ENV_INIT_TIMEOUT):
    timeout = _env_int(environ, ENV_INIT_TIMEOUT, 1)

  address = environ.get(ENV_ADDRESS, "").strip()
  if address or environ.get(ENV_NUM_PROCESSES) or environ.get(ENV_PROCESS_ID):
    for name in (ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
      if not environ.get(name, "").strip():
        raise JaxdiffError(
            f"environment variable {name} is not set: a plain multi-process launch needs "
            f"all of {ENV_ADDRESS}=host:port, {ENV_NUM_PROCESSES}=N and {ENV_PROCESS_ID}=i")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
      raise JaxdiffError(f"environment variable {ENV_ADDRESS}={address!r}: expected host:port "
                         "of process 0, e.g. 10.0.0.1:8476")
    num = _env_int(environ, ENV_NUM_PROCESSES, 1)
    pid = _env_int(environ, ENV_PROCESS_ID, 0)
    if pid >= num:
      raise JaxdiffError(f"environment variable {ENV_PROCESS_ID}={pid}: expected an integer "
                         f"in [0, {num - 1}] ({ENV_NUM_PROCESSES}={num})")
    if num == 1:
      return None
    return DistributedSettings("explicit", dict(
        coordinator_address=address, num_processes=num, process_id=pid,
        initialization_timeout=timeout))

  if mode == "on":
    return DistributedSettings("forced", dict(initialization_timeout=timeout))
  slurm_vars = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                "SLURM_LOCALID")  # what JAX's SLURM detection reads
  if all(v in environ for v in slurm_vars) and environ["SLURM_NTASKS"].isdigit() and (
      int(environ["SLURM_NTASKS"]) > 1):
    kwargs = dict(initialization_timeout=timeout)
    local = _slurm_local_devices(environ)
    if local is not None:
      kwargs["local_device_ids"] = local
    return DistributedSettings("slurm", kwargs)
  size = environ.get("OMPI_COMM_WORLD_SIZE", "")
  if "OMPI_MCA_orte_hnp_uri" in environ and size.isdigit() and int(size) > 1:
    return DistributedSettings("open_mpi", dict(initialization_timeout=timeout))
  workers = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES") or ""
  slices = environ.get("MEGASCALE_NUM_SLICES", "")
  if _count_list(workers) > 1 or (slices.isdigit() and int(slices) > 1):
    return DistributedSettings("tpu", dict(initialization_timeout=timeout))
  return None


def maybe_initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
  """Joins the processes of a multi-host launch into one JAX system; nothing on one host.

  Must run before any other JAX call (jaxdiff.main calls it first). Every process must
  run the same command.

  Returns:
    True when `jax.distributed` is initialised (now or before), False on one host.

  Raises:
    JaxdiffError: bad JAXDIFF_* variables, or settings JAX cannot initialise from (the
      message names them). Processes that do not all connect within the timeout are
      aborted by JAX's runtime itself; one `jaxdiff: error:` line says why just before.
  """
  settings = distributed_settings(environ)
  if settings is None:
    return False
  if jax.distributed.is_initialized():
    return True
  described = ", ".join(f"{k}={v}" for k, v in settings.kwargs.items())
  hint = ("start every process with the same command, coordinator address and process "
          "count, and check that the coordinator's port is reachable from every host")
  # When a peer never connects, JAX's runtime aborts the process from C++ at the timeout
  # (no Python exception to catch): say why just before that happens.
  timeout = float(settings.kwargs["initialization_timeout"])
  watchdog = threading.Timer(max(0.5, timeout - 1.0), lambda: print(
      f"jaxdiff: error: the processes of this launch have not all connected after "
      f"{timeout - 1.0:.0f} of {timeout:.0f} s ({settings.source}: {described}); JAX aborts "
      f"at the timeout ({ENV_INIT_TIMEOUT}): {hint}", file=sys.stderr, flush=True))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(**settings.kwargs)
  except Exception as e:  # an unreachable or half-detected cluster, a bad address
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise JaxdiffError(f"jax.distributed.initialize ({settings.source}: {described}) "
                       f"failed: {first}; {hint}") from e
  finally:
    watchdog.cancel()
  return True


def any_process(*flags: bool) -> tuple[bool, ...]:
  """Each flag, True when it is True on any process (the flags themselves in one process).

  For decisions that every process must take together although they come from one
  process's view (a signal, a wall clock), e.g. whether to checkpoint now.
  """
  if jax.process_count() == 1 or not flags:
    return tuple(bool(f) for f in flags)
  from jax.experimental import multihost_utils
  mine = np.asarray([bool(f) for f in flags], np.int32)
  every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(flags))
  return tuple(bool(v) for v in every.any(axis=0))


def check_same_on_all_processes(value: str, what: str) -> None:
  """A barrier that also checks that every process holds the same `value`.

  On one process it returns at once. With several, a process whose value differs (a
  worker launched with other overrides, a different code version) is named in the error
  on every process, instead of training silently on mixed settings.

  Raises:
    JaxdiffError: the processes disagree about `what`.
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils
  mine = np.asarray([zlib.crc32(value.encode())], np.uint32)
  every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1)
  differ = [i for i, h in enumerate(every) if h != every[0]]
  if differ:
    raise JaxdiffError(
        f"the processes of this launch disagree about {what} (process 0 vs processes "
        f"{differ}): run exactly the same command, config and code on every host")
