"""The device mesh: one ``("data",)`` axis, batches sharded along it, parameters replicated.

Every jit-compiled step uses these shardings; with a single device they are no-ops, so the same
code runs on one CPU, a GPU server or a TPU pod slice.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from sagan_jax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (all by default).

  Auto axis types: shardings are propagated by the compiler (GSPMD), as the steps expect.
  """
  devices = jax.devices()
  n = len(devices) if num_devices is None else num_devices
  if not 1 <= n <= len(devices):
    raise ValueError(f"asked for {n} devices, {len(devices)} available")
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def local_mesh() -> Mesh:
  """A 1-D mesh of this process's devices only, for work each process does on its own share of the data."""
  return Mesh(np.asarray(jax.local_devices()), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def local_copy(tree):
  """This process's copy of a replicated pytree, usable by jit over `local_mesh` even on several hosts."""
  return jax.tree_util.tree_map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh; the batch size must be a multiple of its size."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ValueError(
      f"batch size {batch_size} is not a multiple of the {n} devices of the mesh; change the config's batch_size"
    )


_distributed_initialized = False


def initialize_distributed(
  enabled: bool, coordinator_address: str = "", num_processes: int = 0, process_id: int = -1
) -> None:
  """Joins this process to a multi-host run (`jax.distributed.initialize`); a no-op unless ``enabled``.

  Must run before the first computation. With ``coordinator_address``, ``num_processes`` and
  ``process_id`` all unset (``""``, 0, -1) JAX detects the cluster (TPU pods, SLURM, Open MPI,
  Kubernetes, or its ``JAX_*`` environment variables); otherwise all three must be given, as in
  the config's ``distributed`` fields whose names the errors use. On CPU the processes exchange
  collectives through gloo.
  """
  global _distributed_initialized  # noqa: PLW0603  (jax.distributed.initialize is once per process too)
  if not enabled or _distributed_initialized:
    return
  given = {
    "coordinator_address": bool(coordinator_address),
    "num_processes": num_processes > 0,
    "process_id": process_id >= 0,
  }
  if any(given.values()) and not all(given.values()):
    missing = [f"config.distributed.{k}" for k, v in given.items() if not v]
    raise ConfigError(
      f"{', '.join(missing)} unset while other distributed fields are set: give "
      "coordinator_address ('host:port' of process 0), num_processes and process_id together, "
      "or none of them to let JAX detect the cluster"
    )
  if all(given.values()):
    if not process_id < num_processes:
      raise ConfigError(
        f"config.distributed.process_id={process_id} is not below num_processes={num_processes}: "
        "processes are numbered 0 .. num_processes-1"
      )
    if ":" not in coordinator_address:
      raise ConfigError(f"config.distributed.coordinator_address={coordinator_address!r}: expected 'host:port'")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()
  _distributed_initialized = True


def barrier(name: str) -> None:
  """Waits for every process (a no-op in a single-process run)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def process_0_first(name: str, fn):
  """Runs ``fn`` on process 0, then on the others: shared-filesystem work (dataset preparation) done once.

  The other processes' call then finds the work done (or, without a shared filesystem, does its
  own copy); every process returns its own ``fn()``.
  """
  if jax.process_count() == 1:
    return fn()
  result = fn() if jax.process_index() == 0 else None
  barrier(f"{name} (process 0)")
  if jax.process_index() != 0:
    result = fn()
  barrier(f"{name} (all)")
  return result
