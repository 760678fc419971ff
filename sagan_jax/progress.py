"""What a user watches while a stage trains: a progress bar, TensorBoard scalars, a log line.

Only process 0 shows or writes anything (every process calls the same methods), as big_vision
does. Images per second count the *global* batch, measured between updates, so the first
(compiling) step is excluded from the rate once later steps exist.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import jax
import numpy as np
from absl import logging


class Progress:
  """A tqdm bar for steps ``[start, total)`` plus TensorBoard scalars under ``log_dir`` (if given)."""

  def __init__(self, name: str, total: int, start: int = 0, images_per_step: int = 0, log_dir: str | None = None):
    self.name, self.total, self.images_per_step = name, total, images_per_step
    self._main = jax.process_index() == 0
    self._bar = None
    self._writer = None
    self._last_time, self._last_step = None, start
    self.images_per_second = float("nan")
    if not self._main:
      return
    from tqdm.auto import tqdm  # noqa: PLC0415  (only process 0 needs it)

    self._bar = tqdm(total=total, initial=start, desc=name, unit="step", dynamic_ncols=True, mininterval=1.0)
    if log_dir:
      from tensorboardX import SummaryWriter  # noqa: PLC0415

      self._writer = SummaryWriter(os.path.join(log_dir, name))

  def update(self, step: int, metrics: Mapping[str, float] | None = None) -> None:
    """Called after step ``step`` (1-based count of steps done) with that step's scalar metrics."""
    now = time.perf_counter()
    if self._last_time is not None and step > self._last_step:
      rate = (step - self._last_step) * self.images_per_step / (now - self._last_time)
      self.images_per_second = rate if np.isnan(self.images_per_second) else 0.8 * self.images_per_second + 0.2 * rate
    self._last_time, self._last_step = now, step
    if not self._main:
      return
    metrics = {k: float(v) for k, v in (metrics or {}).items()}
    # The bar shows the losses when there are many metrics; TensorBoard and the logs get them all.
    keys = [k for k in metrics if k.endswith("loss")] if len(metrics) > 4 else list(metrics)
    shown = {k: f"{metrics[k]:.3g}" for k in keys}
    if self.images_per_step and not np.isnan(self.images_per_second):
      shown["img/s"] = f"{self.images_per_second:.1f}"
    self._bar.set_postfix(shown, refresh=False)
    self._bar.n = step
    self._bar.refresh()
    if self._writer is not None:
      for k, v in metrics.items():
        self._writer.add_scalar(k, v, step)
      if self.images_per_step and not np.isnan(self.images_per_second):
        self._writer.add_scalar("images_per_second", self.images_per_second, step)

  def log(self, message: str) -> None:
    if self._main:
      logging.info("[%s] %s", self.name, message)
      self._bar.write(f"[{self.name}] {message}")

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
