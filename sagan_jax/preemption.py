"""SIGTERM (preemption) as a flag the training loops poll: every trainer and command shares it.

One process: a Python handler sets the flag. Several processes: JAX's distributed runtime catches
SIGTERM for its preemption sync point, which a Python handler would shadow; every process polls it
in lockstep (what Orbax's ``reached_preemption`` reads), so a notice on any host stops all of them
at the same step, and they save the same checkpoint and exit together.
"""

from __future__ import annotations

import signal

import jax
from absl import logging
from jax.experimental import multihost_utils

PREEMPTED_EXIT = 143  # 128 + SIGTERM, as a shell reports a process ended by it


class Preempted(SystemExit):
  """A stage stopped on SIGTERM at ``step`` (its checkpoint saved); exits with `PREEMPTED_EXIT`."""

  def __init__(self, stage: str, step: int, where: str | None = None):
    super().__init__(PREEMPTED_EXIT)
    self.stage, self.step = stage, step
    self.where = where or f"saved at step {step}"


class SigtermFlag:
  """Turns SIGTERM into a flag (one-process runs); ``install=False`` leaves SIGTERM to JAX."""

  def __init__(self, install: bool = True):
    self.raised = False
    self._install = install
    self._previous = None

  def __enter__(self):
    def handler(signum, frame):
      del signum, frame
      self.raised = True
      logging.warning("SIGTERM received: saving a checkpoint after the current step, then exiting")

    if not self._install:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class StopPoll:
  """``poll()`` after every step: whether SIGTERM reached this process or, on several hosts, any process.

  Every process polls in lockstep, so the poll count is the sync point's step id.
  """

  def __init__(self, sigterm: SigtermFlag | None):
    self._sigterm = sigterm
    self._polls = 0

  def __call__(self) -> bool:
    if jax.process_count() == 1:
      return self._sigterm is not None and self._sigterm.raised
    self._polls += 1
    return multihost_utils.reached_preemption_sync_point(self._polls)
