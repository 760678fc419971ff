"""The one training loop of the SA-GAN, IDE and U-Net trainers.

A trainer supplies what differs (how one step updates the state, what its checkpoint record says);
the caller may add `Hooks` (scores and pictures); the loop does what is shared: steps
``start + 1 … total``, fetching metrics only on log steps, the non-finite check before anything of a
bad step is kept, progress bars, TensorBoard and ``metrics.jsonl``, checkpoints, and stopping
cleanly when ``should_stop`` says so (SIGTERM): the step just done is checkpointed and `Stopped`
raised.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sagan_jax import checkpoint, fileio, progress
from sagan_jax.errors import NonFiniteLossError


class Stopped(Exception):
  """The loop stopped at ``step`` because ``should_stop`` asked it to; that step is checkpointed."""

  def __init__(self, name: str, step: int):
    super().__init__(f"{name} stopped at step {step}")
    self.name, self.step = name, step


@dataclasses.dataclass(frozen=True)
class Hooks:
  """What the caller adds to a trainer's loop.

  Attributes:
    extra_metrics: ``extra_metrics(step, state)`` → more scalars for a log step (and step 0 of a fresh run).
    after_step: ``after_step(step, state)`` on every step, after its metrics passed their check (pictures).
    extra_log_steps: ``extra_log_steps(step)`` → whether a non-multiple of log_every is logged too.
  """

  extra_metrics: Callable[[int, Any], Mapping[str, float]] | None = None
  after_step: Callable[[int, Any], None] | None = None
  extra_log_steps: Callable[[int], bool] | None = None


class MetricsLog:
  """``metrics.jsonl``: one JSON row per logged step, written by process 0."""

  def __init__(self, path: str):
    self.path = path
    self._main = jax.process_index() == 0

  def trim(self, step: int) -> None:
    """Drops the rows past ``step`` (a resumed stage logs them again from its checkpoint)."""
    if not self._main or not os.path.isfile(self.path):
      return
    with open(self.path) as f:
      rows = f.readlines()
    kept = [r for r in rows if r.strip() and json.loads(r)["step"] <= step]
    if len(kept) != len(rows):
      fileio.write_text_atomic(self.path, "".join(kept))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if self._main:
      os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")


@jax.jit
def _first_non_finite(first: jax.Array, step: jax.Array, metrics: dict) -> jax.Array:
  """``first`` unless it is 0 and some metric of ``step`` is not finite; then ``step``. On device: no host sync."""
  finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(jnp.asarray(v, jnp.float32))) for v in metrics.values()]))
  return jnp.where((first == 0) & ~finite, step, first)


@dataclasses.dataclass
class Loop:
  """What one trainer's loop needs.

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
    metrics_log: where logged metrics are appended (`MetricsLog`), or None.
    hooks: the caller's scores and pictures.
    final_checkpoint: whether the loop saves the last step (marked complete); False when the trainer
      saves it itself after further work (the U-Net's held-out score).
    done_message: ``done_message()`` → the line shown when the stage finishes.
    learning_rate_flag: the flag that lowers this stage's learning rate, for the non-finite advice.
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
  metrics_log: MetricsLog | None = None
  hooks: Hooks = Hooks()
  final_checkpoint: bool = True
  done_message: Callable[[], str] | None = None
  learning_rate_flag: str = "the learning rate"

  def run(
    self, state: Any, start: int, step_fn: Callable[[Any, int], tuple[Any, Mapping]], ckpt: checkpoint.StageCheckpoints
  ) -> Any:
    """Steps ``start + 1 … total`` with ``step_fn(state, step) → (state, metrics)``; returns the final state."""
    hooks = self.hooks
    if self.metrics_log is not None:
      self.metrics_log.trim(start)
    first_bad = jnp.zeros((), jnp.int32)
    with progress.Progress(self.name, self.total, start, self.images_per_step, self.log_dir) as bar:
      if start == 0 and hooks.extra_metrics is not None:  # the untrained model's scores, for comparison
        scores = dict(hooks.extra_metrics(0, state))
        if scores:
          bar.update(0, scores)
          if self.metrics_log is not None:
            self.metrics_log.write(0, scores)
      for step in range(start + 1, self.total + 1):
        state, metrics = step_fn(state, step)
        first_bad = _first_non_finite(first_bad, jnp.int32(step), dict(metrics))
        last = step == self.total
        checkpointing = (step % self.checkpoint_every == 0 and not last) or (last and self.final_checkpoint)
        logged = (
          step % self.log_every == 0
          or checkpointing
          or last
          or (hooks.extra_log_steps is not None and hooks.extra_log_steps(step))
        )
        if logged:
          self._log(bar, step, state, metrics, int(first_bad), ckpt)
        if hooks.after_step is not None:
          hooks.after_step(step, state)
        if self.should_stop is not None and not last and self.should_stop():  # polled last: a SIGTERM now counts
          if not logged:
            self._log(bar, step, state, metrics, int(first_bad), ckpt)
          ckpt.save(step, state, self.record(step, False), force=True)
          ckpt.wait()
          raise Stopped(self.name, step)
        if checkpointing:
          ckpt.save(step, state, self.record(step, last), force=last)
      bar.log(self.done_message() if self.done_message else f"done: {self.total} steps")
    ckpt.wait()
    return state

  def _check(self, first_bad: int, step: int, metrics: Mapping, ckpt: checkpoint.StageCheckpoints) -> None:
    """Raises `NonFiniteLossError` when a step up to ``step`` had a non-finite metric: none of it is saved."""
    if not first_bad:
      return
    values = {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}
    bad = ", ".join(f"{k}={v}" for k, v in sorted(values.items()) if not np.isfinite(v)) or "all finite again"
    ckpt.wait()
    kept = ckpt.latest_step()
    if kept is None:
      truth, then = "no checkpoint of this stage was written", "starts the stage afresh"
    else:
      truth, then = f"its checkpoint of step {kept} is kept (nothing later was saved)", f"resumes from step {kept}"
    raise NonFiniteLossError(
      f"{self.label}: non-finite loss first at step {first_bad} (found when logging step {step}: {bad}); {truth}. "
      f"Lower {self.learning_rate_flag} (or check the input data, or compute in float32) and rerun the same "
      f"command with the new value and --allow_config_change, which {then}; or use a new --workdir"
    )

  def _log(self, bar, step: int, state: Any, metrics: Mapping, first_bad: int, ckpt) -> None:
    """Checks the steps so far for non-finite metrics, then shows and records ``step``'s (and the hooks')."""
    self._check(first_bad, step, metrics, ckpt)
    extra = self.hooks.extra_metrics(step, state) if self.hooks.extra_metrics is not None else {}
    metrics = jax.device_get({**metrics, **extra})
    bar.update(step, metrics)
    if self.metrics_log is not None:
      self.metrics_log.write(step, metrics)
