"""Orbax checkpoints of one training stage: the state pytree plus a small JSON record.

Each trainer (mask U-Net, SA-GAN, IDE) keeps its own `StageCheckpoints` directory. A state is
saved with every array it holds (parameters, optimiser states, step counters, the PRNG key); the
data position needs no extra field because every pipeline here derives batch ``k`` from
``(seed, k)`` (see `sagan_jax.data.pipeline`), so the step counter *is* the iterator position.
Restoring places each array with the sharding of the template it is given, so a state saved on
one mesh is restored onto the mesh of the resumed run.

What can go wrong on disk is one `CheckpointError` line: a full or read-only disk while saving
(the half-written step removed), or a checkpoint that cannot be read back (which folder to remove).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import glob
import logging as std_logging
import os
import re
import shutil
import sys
import threading
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from sagan_jax.errors import CheckpointError, MissingInputError

_TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Storage failures a user fixes, as Python reports them and as tensorstore words them inside Orbax's errors.
_STORAGE_ERRORS = {
  errno.ENOSPC: ("no space left on the device", "No space left on device"),
  errno.EROFS: ("read-only file system", "Read-only file system"),
  errno.EDQUOT: ("disk quota exceeded", "Disk quota exceeded"),
  errno.EACCES: ("permission denied", "Permission denied"),
}


def _storage_reason(error: BaseException | None) -> str | None:
  """The user-facing reason when ``error`` is a storage failure (also wrapped by Orbax/tensorstore), else None."""
  while error is not None:
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRORS:
      return _STORAGE_ERRORS[error.errno][0]
    text = str(error)
    for code, (reason, words) in _STORAGE_ERRORS.items():
      if words in text or re.search(rf"os_error_code='?{code}\b", text):
        return reason
    error = error.__cause__ or error.__context__
  return None


class _QuietStorageFailures(std_logging.Filter):
  """Drops Orbax's background-thread tracebacks of a storage failure: `StageCheckpoints` reports it once."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno < std_logging.ERROR:
      return True
    error = record.exc_info[1] if record.exc_info else None
    return _storage_reason(error) is None and _storage_reason(Exception(record.getMessage())) is None


_QUIET = _QuietStorageFailures()


class _DropOrphanedWriteTracebacks:
  """``sys.stderr`` while checkpoints are open, without one kind of traceback.

  When a save fails (a full disk), Orbax closes its event loop while tensorstore's other writes of
  that step are still in flight; each one's completion then prints "RuntimeError: Event loop is
  closed" from its own thread (one per array: dozens). `StageCheckpoints` reports the failure in one
  line, so those are dropped; every other write passes through unchanged.
  """

  _DROPPED = "RuntimeError: Event loop is closed"

  def __init__(self, stream):
    self.stream = stream
    self._held: dict[int, str] = {}  # per thread: a traceback being written, piece by piece
    self._lock = threading.Lock()

  def write(self, text: str) -> int:
    thread = threading.get_ident()
    with self._lock:
      held = self._held.get(thread, "")
      if not held and not text.startswith("Traceback (most recent call last):"):
        return self.stream.write(text)
      held += text
      lines = held.splitlines(keepends=True)
      last = next((ln for ln in lines[1:] if ln.endswith("\n") and not ln.startswith((" ", "Traceback"))), None)
      if last is None:
        self._held[thread] = held
      else:  # the exception line: the traceback is complete
        self._held.pop(thread, None)
        if last.strip() != self._DROPPED:
          self.stream.write(held)
      return len(text)

  def flush(self) -> None:
    self.stream.flush()

  def __getattr__(self, name):  # encoding, isatty, fileno, ...: the stream's own (progress bars read them)
    return getattr(self.stream, name)


_open_managers = 0
_storage_failed = False  # after a failed save, late completions print until the process ends: stay quiet
_failed_directories: set[str] = set()  # checkpoint folders whose partial steps are removed again at exit


def _remove_partials(directory: str) -> bool:
  """Removes Orbax's temporary folders (half-written steps) in ``directory``; True when there were any."""
  partials = glob.glob(os.path.join(glob.escape(directory), f"*{_TMP_SUFFIX}"))
  for partial in partials:
    shutil.rmtree(partial, ignore_errors=True)
  return bool(partials)


def _remove_partials_last(settle_s: float = 1.0, limit_s: float = 10.0) -> None:
  # Registered at import, so atexit runs it last (LIFO), after each manager's own wait. Tensorstore's
  # C++ writers are not Python threads and can still recreate a temporary folder after that, so the
  # folders are removed until none has reappeared for ``settle_s`` (at most ``limit_s``).
  if jax.process_index() != 0 or not _failed_directories:
    return
  deadline = time.monotonic() + limit_s
  quiet_since = time.monotonic()
  while time.monotonic() < deadline:
    removed = [_remove_partials(d) for d in _failed_directories]  # every folder, not just the first
    if any(removed):
      quiet_since = time.monotonic()
    elif time.monotonic() - quiet_since >= settle_s:
      return
    time.sleep(0.05)


atexit.register(_remove_partials_last)


def _quiet_stderr(opening: bool) -> None:
  """Installs `_DropOrphanedWriteTracebacks` while any `StageCheckpoints` is open (or a save has failed)."""
  global _open_managers  # noqa: PLW0603  (one sys.stderr per process)
  _open_managers += 1 if opening else -1
  if opening and not isinstance(sys.stderr, _DropOrphanedWriteTracebacks):
    sys.stderr = _DropOrphanedWriteTracebacks(sys.stderr)
  elif _open_managers == 0 and not _storage_failed and isinstance(sys.stderr, _DropOrphanedWriteTracebacks):
    sys.stderr = sys.stderr.stream


def _abstract(tree):
  return jax.tree_util.tree_map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
  )


# Orbax's replica-parallel save compiles an XLA slice per new array shape: the synthetic SA-GAN state took
# 5.2 s against 1.0 s to first save on 4 devices (bench/bench_checkpoint.py); big arrays still spread.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """Orbax's standard pytree handler, with arrays under `MIN_REPLICA_SLICE_BYTES` per slice written whole.

  Without Orbax's array-metadata store, which only typed PRNG-key arrays need: states keep raw uint32 keys.
  """
  h = ocp.type_handlers
  arrays = h.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES)
  scalars = h.ScalarHandler()
  types = ((int, scalars), (float, scalars), (bytes, scalars), (np.number, scalars), (np.ndarray, h.NumpyHandler()))
  registry = h.create_type_handler_registry(*types, (jax.Array, arrays), (str, h.StringHandler()))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


class StageCheckpoints:
  """``save(step, state, record)`` / ``restore(like)`` over an Orbax `CheckpointManager`.

  Saves are asynchronous (training continues while the arrays are written); `wait` blocks until
  they are on disk, and is called before a stage reports itself complete or the process exits.
  Orbax writes each step to a temporary directory and renames it when complete, so a process
  killed mid-write leaves the previous checkpoint as the latest one.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._writing = None
    logging.get_absl_logger().addFilter(_QUIET)
    std_logging.getLogger("asyncio").addFilter(_QUIET)  # "Future exception was never retrieved", at exit
    _quiet_stderr(opening=True)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
    try:
      self._manager = ocp.CheckpointManager(
        self.directory,
        options=options,
        item_handlers={"state": _state_handler(), "record": ocp.JsonCheckpointHandler()},
      )
    except OSError as e:
      self._raise_storage(e, "open")

  def _raise_storage(self, error: BaseException, doing: str, step: int | None = None):
    """Re-raises ``error`` as one `CheckpointError` line when the disk is at fault (removing half-written steps)."""
    global _storage_failed  # noqa: PLW0603
    reason = _storage_reason(error)
    if reason is None:
      raise error
    if not _storage_failed:  # writes in flight at the failure can land until the process ends
      atexit.register(self._remove_partial_at_exit)
    _storage_failed = True
    _failed_directories.add(self.directory)
    self._remove_partial()
    where = os.path.join(self.directory, str(step)) if step is not None else self.directory
    latest = self._latest_complete()
    resume = f"resume from step {latest}" if latest is not None else "start the stage afresh"
    raise CheckpointError(
      f"{reason} while {doing} checkpoint {where!r}: free space (or choose another --workdir) and rerun the "
      f"same command to {resume}"
    ) from None

  def _remove_partial(self) -> None:
    """Removes half-written steps (Orbax's temporary folders) of a failed save."""
    if jax.process_index() == 0:
      _remove_partials(self.directory)

  def _remove_partial_at_exit(self) -> None:
    # atexit runs this before Orbax's own handlers (registered earlier), so its writer threads may
    # still be creating the temporary folder: wait for them first.
    with contextlib.suppress(Exception):  # the failed write re-raises here; it was reported already
      self._manager.wait_until_finished()
    self._remove_partial()

  def _latest_complete(self) -> int | None:
    try:
      return self._manager.latest_step()
    except Exception:
      return None

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, record: dict | None = None, force: bool = False) -> None:
    args = ocp.args.Composite(state=ocp.args.PyTreeSave(state), record=ocp.args.JsonSave(record or {}))
    try:
      self._manager.save(int(step), args=args, force=force)
      self._writing = int(step)  # saves are asynchronous: a failure may surface at the next wait
    except Exception as e:
      self._raise_storage(e, "writing", step)

  def restore(self, like: Any) -> tuple[Any, dict]:
    """The newest restorable state, shaped, typed and sharded like ``like``, and its record.

    A checkpoint that cannot be read (an item missing or damaged) is skipped with a warning naming
    it, for the newest one that can; when none can, `CheckpointError` says which folders to remove.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise MissingInputError(f"no checkpoint in {self.directory!r}")
    abstract = _abstract(like)
    state = ocp.args.PyTreeRestore(abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))
    args = ocp.args.Composite(state=state, record=ocp.args.JsonRestore())
    damaged = []
    for i, step in enumerate(steps):
      try:
        restored = self._manager.restore(step, args=args)
        return restored["state"], restored["record"]
      except (KeyError, ValueError, FileNotFoundError, OSError, TypeError) as e:
        path = os.path.join(self.directory, str(step))
        damaged.append(path)
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        if i + 1 < len(steps):
          logging.warning(
            "checkpoint %s cannot be restored (%s); restoring step %d instead", path, reason, steps[i + 1]
          )
        else:
          removed = " ".join(repr(p) for p in damaged)
          raise CheckpointError(
            f"checkpoint {path!r} cannot be restored ({reason}) and no earlier one can: remove {removed} "
            "and rerun the same command to start the stage afresh"
          ) from None
    raise AssertionError("unreachable")

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
      raise MissingInputError(f"no checkpoint in {self.directory!r}")
    return self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]

  def wait(self) -> None:
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      self._raise_storage(e, "writing", self._writing)

  def close(self) -> None:
    try:
      self._manager.close()
    except Exception as e:
      self._raise_storage(e, "closing")
    finally:
      if _storage_failed:  # writes still in flight at the failure may have landed since
        self._remove_partial()
      _quiet_stderr(opening=False)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def restore_finished(directory: str, like: Any, missing: str) -> tuple[Any, dict]:
  """The state and record of a stage that finished training in ``directory``.

  ``missing``: what to say when it has not (which stage to run); raised as `MissingInputError`.
  """
  if not os.path.isdir(directory):
    raise MissingInputError(missing)
  with StageCheckpoints(directory) as ckpt:
    if ckpt.latest_step() is None:
      raise MissingInputError(missing)
    state, record = ckpt.restore(like)
  if not record.get("complete"):  # also when the finished checkpoint is damaged and an earlier one was read
    raise MissingInputError(missing)
  return state, record
