"""The SA-GAN trainer: ``sagan`` and ``sagan_train`` config sections + source and target batches →
a finished checkpoint.

Each generator update follows ``n_critic`` critic updates, every update on a fresh pair of batches.
The optimisers and their schedule are built here (`optimizers`), not by the model. What an
experiment watches while it trains (fidelity scores, sample grids) comes in as `sagan_jax.loop.Hooks`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from sagan_jax import checkpoint, loop, losses, parallel
from sagan_jax.data import pipeline
from sagan_jax.errors import ConfigError
from sagan_jax.models.layers import Layers
from sagan_jax.sagan.model import SAGAN
from sagan_jax.sagan.steps import FeatureFn, Optimizers, SAGANState, create_state, make_steps

LR_SCHEDULES = ("constant", "linear_decay")


@functools.lru_cache(maxsize=32)
def _optimizers(config: ml_collections.FrozenConfigDict, train_steps: int) -> Optimizers:
  c = config
  if c.lr_schedule not in LR_SCHEDULES:
    raise ConfigError(f"config.sagan.lr_schedule={c.lr_schedule!r}: expected one of {LR_SCHEDULES}")

  def adam(lr, updates=train_steps):
    # ``updates``: how many times this optimiser steps in the run, which its schedule counts.
    if c.lr_schedule == "linear_decay":  # CycleGAN: constant for the first half, then linearly to zero
      half = max(updates // 2, 1)
      lr = optax.join_schedules([optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, half)], [half])
    return optax.adam(lr, b1=c.adam_b1, b2=c.adam_b2)

  if c.lipschitz == "weight_clipping":
    critic = optax.chain(optax.rmsprop(c.clipping_learning_rate), losses.clip_params(c.clip_value))
  else:
    # The critics step n_critic times per generator update: their decay spans as many updates.
    critic = adam(c.learning_rate, train_steps * c.n_critic)
  generator = adam(c.learning_rate)
  if c.stm_learning_rate and c.stm_learning_rate != c.learning_rate and c.spatial:
    labels = lambda params: {name: ("stm" if name in ("S1", "S2") else "generator") for name in params}
    generator = optax.multi_transform({"generator": generator, "stm": adam(c.stm_learning_rate)}, labels)
  return Optimizers(generator=generator, critic=critic, sianet=adam(c.sianet_learning_rate))


def optimizers(config: ml_collections.ConfigDict, train_steps: int) -> Optimizers:
  """The optimiser of each group of networks for a run of ``train_steps`` generator updates.

  Adam(1e-4, 0.5, 0.9) is WGAN-GP's; with weight clipping the critics take RMSProp(5e-5), as WGAN.
  ``lr_schedule="linear_decay"`` decays over ``train_steps`` generator updates (CycleGAN's), the
  critics' over their ``n_critic × train_steps`` updates, so every rate reaches zero at the last
  generator update; the state's layout does not depend on ``train_steps``, so a restore target may
  pass any.
  """
  return _optimizers(ml_collections.FrozenConfigDict(config), int(train_steps))


def camera_indices(camera_ids, cameras: Sequence[int]) -> np.ndarray:
  """``[B]`` int32: each of ``camera_ids``' place in ``cameras`` (the target's cameras, sorted)."""
  camera_ids, cameras = np.asarray(camera_ids), np.asarray(cameras)
  index = np.searchsorted(cameras, camera_ids)
  unknown = camera_ids[(index >= len(cameras)) | (cameras[np.minimum(index, len(cameras) - 1)] != camera_ids)]
  if unknown.size:
    raise ValueError(f"target camera {int(unknown[0])} is not one of the adaptation's cameras {cameras.tolist()}")
  return index.astype(np.int32)


def _gan_batch(x: dict, y: dict, mesh, cameras: Sequence[int] | None = None) -> dict[str, jax.Array]:
  """``cameras``: the target's camera ids, sorted; with them the batch also holds ``y_camera``."""
  x = pipeline.to_global_batch({"image": x["image"]}, mesh)["image"]
  local = {"image": y["image"]}
  if cameras is not None:
    local["camera"] = camera_indices(y["camera_id"], cameras)
  y = pipeline.to_global_batch(local, mesh)
  batch = {"x": x[..., :3], "x_mask": x[..., 3:], "y": y["image"][..., :3], "y_mask": y["image"][..., 3:]}
  if cameras is not None:
    batch["y_camera"] = y["camera"]
  return batch


def train(
  config: ml_collections.ConfigDict,
  train_config: ml_collections.ConfigDict,
  x_batches: pipeline.TrainBatches,
  y_batches: pipeline.TrainBatches,
  workdir: str,
  mesh,
  *,
  seed: int,
  layers: Layers = Layers(),
  name: str = "sagan",
  hooks: loop.Hooks = loop.Hooks(),
  stop=None,
  log_dir: str | None = None,
  identity_features: tuple[FeatureFn, Any] | None = None,
  target_cameras: Sequence[int] | None = None,
) -> SAGANState:
  """Trains (or resumes, or skips when finished) one SA-GAN in ``workdir`` (``checkpoints/``, ``metrics.jsonl``).

  ``x_batches``/``y_batches``: source and target batches of ``train_config.batch_size`` (batch k is a
  pure function of k, so the generator step alone says where a resumed run reads).
  ``identity_features``: ``(features, variables)`` of the frozen re-ID network ``lambda_reid`` needs.
  ``target_cameras``: the camera ids of the target images, which ``camera_critics`` conditions on.
  """
  model = SAGAN(config, layers=layers)
  cameras = None
  if config.camera_critics:
    cameras = sorted({int(c) for c in target_cameras or ()})
    if len(cameras) != config.z_dim:
      raise ConfigError(
        f"config.sagan.camera_critics=True gives each target camera one of the z_dim={config.z_dim} codes, "
        f"and this adaptation's target has {len(cameras)} cameras {cameras}: set --config.sagan.z_dim={len(cameras)}"
      )
  # Without the term the network is left out of the step; a missing one is the model's error at the first step.
  features, feature_variables = identity_features if model.uses_reid and identity_features else (None, None)
  extra = () if features is None else (jax.device_put(feature_variables, parallel.replicated(mesh)),)
  tx = optimizers(config, train_config.steps)
  parallel.check_batch_divisible(train_config.batch_size, mesh)
  state = create_state(model, tx, seed, mesh)
  label = name.replace("sagan", "SA-GAN", 1)
  with checkpoint.StageCheckpoints(os.path.join(workdir, "checkpoints")) as ckpt:
    state, record = ckpt.resume(state)
    if record.get("complete"):
      return state
    per_step = config.n_critic + 1  # batches drawn per generator update (a fresh batch per critic update)
    start = int(state.step)
    xs, ys = x_batches.iterate(start * per_step), y_batches.iterate(start * per_step)
    critic_step, generator_step = make_steps(model, tx, mesh, features)

    def step_fn(state, step):
      del step
      for _ in range(config.n_critic):
        state, critic_metrics = critic_step(state, _gan_batch(next(xs), next(ys), mesh, cameras))
      state, metrics = generator_step(state, _gan_batch(next(xs), next(ys), mesh, cameras), *extra)
      return state, {**critic_metrics, **metrics}

    training = loop.Loop(
      name,
      label,
      train_config.steps,
      train_config.log_every,
      train_config.checkpoint_every,
      train_config.batch_size * per_step,
      log_dir=log_dir,
      should_stop=stop,
      metrics_log=loop.MetricsLog(os.path.join(workdir, "metrics.jsonl")),
      hooks=hooks,
      learning_rate_flag="the learning rate (--config.sagan.learning_rate)",
    )
    return training.run(state, start, step_fn, ckpt)


def load(config: ml_collections.ConfigDict, workdir: str, mesh, layers: Layers = Layers(), missing: str = ""):
  """``(model, params)`` of the finished SA-GAN in ``workdir`` (its generators' moving average when it
  kept one); ``missing`` says how to train it when there is none."""
  model = SAGAN(config, layers=layers)
  tx = optimizers(config, 0)
  like = jax.eval_shape(lambda: create_state(model, tx, 0))
  like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(mesh)), like)
  missing = missing or f"no finished SA-GAN in {workdir!r}: train it first"
  state, _ = checkpoint.restore_finished(os.path.join(workdir, "checkpoints"), like, missing)
  return model, state.translation_params
