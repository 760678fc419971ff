"""Orbax checkpoints of one training stage: the state pytree plus a small JSON record.

Each stage of `train.py` (mask U-Net, SA-GAN, IDE) keeps its own `StageCheckpoints` directory.
A state is saved with every array it holds (parameters, optimiser states, step counters, the PRNG
key); the data position needs no extra field because every pipeline here derives batch ``k``
from ``(seed, k)`` (see `sagan_jax.data.pipeline`), so the step counter *is* the iterator position.
Restoring places each array with the sharding of the template it is given, so a state saved on
one mesh is restored onto the mesh of the resumed run.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


def _abstract(tree):
  return jax.tree_util.tree_map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
  )


class StageCheckpoints:
  """``save(step, state, record)`` / ``restore(like)`` over an Orbax `CheckpointManager`.

  Saves are asynchronous (training continues while the arrays are written); `wait` blocks until
  they are on disk, and is called before a stage reports itself complete or the process exits.
  Orbax writes each step to a temporary directory and renames it when complete, so a process
  killed mid-write leaves the previous checkpoint as the latest one.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, record: dict | None = None, force: bool = False) -> None:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record or {}))
    self._manager.save(int(step), args=args, force=force)

  def restore(self, like: Any) -> tuple[Any, dict]:
    """The newest restorable state, shaped, typed and sharded like ``like``, and its record.

    A checkpoint that cannot be read (an item missing or damaged) is skipped with a warning naming
    it, for the newest one that can.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory!r}")
    args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like)), record=ocp.args.JsonRestore())
    first_error = None
    for step in steps:
      try:
        restored = self._manager.restore(step, args=args)
        return restored["state"], restored["record"]
      except (KeyError, ValueError, FileNotFoundError, OSError) as e:
        first_error = first_error or e
        logging.warning(
          "checkpoint %s cannot be restored (%s: %s); trying the one before it",
          os.path.join(self.directory, str(step)),
          type(e).__name__,
          str(e)[:200],
        )
    raise first_error

  def resume(self, fresh: Any) -> tuple[Any, dict]:
    """``(state, record)``: the latest checkpoint shaped like ``fresh``, or ``(fresh, {})`` when there is none.

    A stage skips itself when ``record.get("complete")``; otherwise it continues from ``state.step``.
    """
    if self.latest_step() is None:
      return fresh, {}
    return self.restore(fresh)

  def read_record(self, step: int | None = None) -> dict:
    """The JSON record saved with ``step`` (the latest by default), without reading the arrays."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory!r}")
    return self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
