"""The device mesh: one ``("data",)`` axis, batches sharded along it, parameters replicated.

Every jit-compiled step uses these shardings; with a single device they are no-ops, so the same
code runs on one CPU, a GPU server or a TPU pod slice.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

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


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh; the batch size must be a multiple of its size."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
  n = mesh.shape[DATA_AXIS]
  if batch_size % n:
    raise ValueError(f"batch size {batch_size} is not a multiple of the {n} devices of the mesh; change the config's batch_size")
