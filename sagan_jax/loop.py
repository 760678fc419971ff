"""The one training loop of the SA-GAN, IDE and U-Net stages.

A stage supplies what differs (how one step updates the state, what its checkpoint record says,
optional hooks for scores and pictures); the loop does what is shared: steps ``start + 1 … total``,
fetching metrics only on log steps, the non-finite check before anything of a bad step is kept,
progress bars and TensorBoard, checkpoints, and stopping cleanly when ``should_stop`` says so
(SIGTERM): the step just done is checkpointed and `Stopped` raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

from sagan_jax import checkpoint, progress


class Stopped(Exception):
  """The loop stopped at ``step`` because ``should_stop`` asked it to; that step is checkpointed."""

  def __init__(self, name: str, step: int):
    super().__init__(f"{name} stopped at step {step}")
    self.name, self.step = name, step


@dataclasses.dataclass
class Loop:
  """What one stage's training needs from the loop.

  Attributes:
    name: the progress bar's name (also the TensorBoard subfolder).
    label: how errors name the stage ("SA-GAN", "IDE split3").
    total: the step the stage ends at.
    log_every: metrics are fetched, checked, shown and logged every this many steps (and at the end).
    checkpoint_every: a checkpoint every this many steps (and at the end, marked complete).
    images_per_step: for the bar's images per second.
    record: ``record(step, complete)`` → the JSON saved with a checkpoint.
    log_dir: TensorBoard root, or None.
    should_stop: polled after every step (SIGTERM); None never stops.
    log_metrics: ``log_metrics(step, metrics)`` after the check (e.g. a metrics.jsonl writer).
    extra_metrics: ``extra_metrics(step, state)`` → more scalars for a log step (fidelity scores).
    after_step: ``after_step(step, state)`` on every step (pictures).
    extra_log_steps: ``extra_log_steps(step)`` → whether a non-multiple of log_every is logged too.
    final_checkpoint: whether the loop saves the last step (marked complete); False when the stage
      saves it itself after further work (the U-Net's held-out score).
    done_message: ``done_message()`` → the line shown when the stage finishes.
  """

  name: str
  label: str
  total: int
  log_every: int
  checkpoint_every: int
  images_per_step: int = 0
  record: Callable[[int, bool], dict] = lambda step, complete: {"complete": complete}
  log_dir: str | None = None
  should_stop: Callable[[], bool] | None = None
  log_metrics: Callable[[int, Mapping[str, float]], None] | None = None
  extra_metrics: Callable[[int, Any], Mapping[str, float]] | None = None
  after_step: Callable[[int, Any], None] | None = None
  extra_log_steps: Callable[[int], bool] | None = None
  final_checkpoint: bool = True
  done_message: Callable[[], str] | None = None

  def run(
    self, state: Any, start: int, step_fn: Callable[[Any, int], tuple[Any, Mapping]], ckpt: checkpoint.StageCheckpoints
  ) -> Any:
    """Steps ``start + 1 … total`` with ``step_fn(state, step) → (state, metrics)``; returns the final state."""
    with progress.Progress(self.name, self.total, start, self.images_per_step, self.log_dir) as bar:
      if start == 0 and self.extra_metrics is not None:  # the untrained model's scores, for comparison
        scores = dict(self.extra_metrics(0, state))
        if scores:
          bar.update(0, scores)
          if self.log_metrics is not None:
            self.log_metrics(0, scores)
      for step in range(start + 1, self.total + 1):
        state, metrics = step_fn(state, step)
        last = step == self.total
        checkpointing = (step % self.checkpoint_every == 0 and not last) or (last and self.final_checkpoint)
        logged = (
          step % self.log_every == 0
          or checkpointing
          or last
          or (self.extra_log_steps is not None and self.extra_log_steps(step))
        )
        if logged:
          self._report(bar, step, {**metrics, **(self.extra_metrics(step, state) if self.extra_metrics else {})})
        if self.after_step is not None:
          self.after_step(step, state)
        if self.should_stop is not None and not last and self.should_stop():  # polled last: a SIGTERM now counts
          if not logged:
            self._report(bar, step, metrics)
          ckpt.save(step, state, self.record(step, False), force=True)
          ckpt.wait()
          raise Stopped(self.name, step)
        if checkpointing:
          ckpt.save(step, state, self.record(step, last), force=last)
      bar.log(self.done_message() if self.done_message else f"done: {self.total} steps")
    ckpt.wait()
    return state

  def _report(self, bar: progress.Progress, step: int, metrics: Mapping) -> None:
    metrics = jax.device_get(dict(metrics))
    progress.check_finite(self.label, step, metrics)
    bar.update(step, metrics)
    if self.log_metrics is not None:
      self.log_metrics(step, metrics)
