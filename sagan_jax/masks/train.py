"""The mask U-Net's trainer: ``masks`` config section + (image, mask) pairs → a finished checkpoint.

BCE (+ Dice) with optax, jit-compiled over the data mesh; `train` resumes or skips a finished run,
`load` restores one. The record keeps the settings and seed, so `load` needs only the folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from sagan_jax import checkpoint, loop, parallel, runtime
from sagan_jax.data import pipeline
from sagan_jax.errors import ConfigError, MissingInputError
from sagan_jax.masks.unet import UNet


@flax.struct.dataclass
class MaskState:
  step: jax.Array
  params: Any
  opt_state: Any


def mask_loss(logits: jax.Array, target: jax.Array, dice_weight: float = 1.0) -> jax.Array:
  """Mean binary cross-entropy of ``logits`` against ``target`` in {0, 1}, plus ``dice_weight``·(1 − soft Dice).

  Dice is per image, then averaged; an image with no foreground in either has Dice 1.
  """
  bce = optax.sigmoid_binary_cross_entropy(logits, target).mean()
  p = jax.nn.sigmoid(logits)
  axes = tuple(range(1, logits.ndim))
  overlap = jnp.sum(p * target, axes)
  total = jnp.sum(p, axes) + jnp.sum(target, axes)
  dice = (2 * overlap + 1.0) / (total + 1.0)
  return bce + dice_weight * (1.0 - dice.mean())


def iou(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Per-image intersection over union of binary masks ``[B, H, W(, 1)]``; 1 where both are empty."""
  prediction, target = np.asarray(prediction, bool), np.asarray(target, bool)
  axes = tuple(range(1, prediction.ndim))
  inter = np.sum(prediction & target, axes)
  union = np.sum(prediction | target, axes)
  return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def make_model(config) -> UNet:
  return UNet(features=tuple(config.features), dtype=jnp.dtype(config.dtype))


def make_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps))


def create_state(model: UNet, optimizer, config, seed: int, mesh=None) -> MaskState:
  params = runtime.jit_init(model.init)(jax.random.key(seed), jnp.zeros((1, *config.image_size, 3)))["params"]
  state = MaskState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))
  return state if mesh is None else jax.device_put(state, parallel.replicated(mesh))


def make_train_step(model: UNet, optimizer, mesh, dice_weight: float):
  """``step(state, images[B, H, W, 4]) → (state, metrics)``: channels 0–2 RGB, channel 3 the target mask."""

  def step(state: MaskState, images):
    def loss_fn(params):
      return mask_loss(model.apply({"params": params}, images[..., :3]), images[..., 3:], dice_weight)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return MaskState(state.step + 1, optax.apply_updates(state.params, updates), opt_state), {"loss": loss}

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)


def make_predict_fn(model: UNet, mesh):
  """``predict(params, rgb[B, H, W, 3]) → foreground probability [B, H, W]``, jit over the mesh."""
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  jitted = jax.jit(
    lambda params, rgb: jax.nn.sigmoid(model.apply({"params": params}, rgb))[..., 0],
    in_shardings=(rep, data),
    out_shardings=data,
  )
  # Host images are placed explicitly: jit refuses numpy inputs with a sharding in multi-process runs.
  return lambda params, rgb: jitted(params, jax.device_put(rgb, data))


def split_holdout(num_examples: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, held-out) indices: a seeded permutation, at least one example in each part."""
  if num_examples < 2:
    raise ConfigError(f"mask training needs at least 2 (image, mask) pairs to hold one out, got {num_examples}")
  order = np.random.default_rng(seed).permutation(num_examples)
  held = min(num_examples - 1, max(1, round(fraction * num_examples)))
  return np.sort(order[held:]), np.sort(order[:held])


def evaluate_iou(predict, params, source, indices: Sequence[int], image_size, batch_size: int) -> float:
  """Mean per-image IoU of thresholded (p > 0.5) predictions against the masks of ``indices``."""
  scores = []
  for batch, valid in pipeline.eval_batches(source, batch_size=batch_size, image_size=image_size, indices=indices):
    prob = np.asarray(predict(params, batch["image"][..., :3]))[:valid]
    scores.append(iou(prob > 0.5, batch["image"][:valid, ..., 3] > 0.5))
  return float(np.mean(np.concatenate(scores)))


def train(
  config, source, workdir: str, mesh=None, *, seed: int, hooks: loop.Hooks = loop.Hooks(), stop=None, log_dir=None
) -> tuple[Any, dict]:
  """Trains (or resumes, or just loads when finished) the U-Net in ``workdir``; returns (params, record).

  The record holds the held-out IoU, the settings and the seed; the final checkpoint is marked
  complete. ``stop`` is polled after every step: when it returns True the step is checkpointed and
  `sagan_jax.loop.Stopped` raised.
  """
  mesh = mesh or parallel.make_mesh()
  parallel.check_batch_divisible(config.batch_size, mesh)
  train_idx, held_idx = split_holdout(len(source), config.holdout_fraction, seed)
  model, optimizer = make_model(config), make_optimizer(config)
  state = create_state(model, optimizer, config, seed, mesh)
  with checkpoint.StageCheckpoints(os.path.join(workdir, "checkpoints")) as ckpt:
    state, record = ckpt.resume(state)
    if record.get("complete"):
      return state.params, record
    batches = pipeline.TrainBatches(
      source,
      global_batch_size=config.batch_size,
      image_size=tuple(config.image_size),
      seed=seed,
      indices=train_idx,
      masks="data",
    )
    step_fn = make_train_step(model, optimizer, mesh, config.dice_weight)
    start = int(state.step)
    local_batches = batches.iterate(start)
    training = loop.Loop(
      "masks",
      "masks",
      config.steps,
      config.log_every,
      config.checkpoint_every,
      config.batch_size,
      log_dir=log_dir,
      should_stop=stop,
      metrics_log=loop.MetricsLog(os.path.join(workdir, "metrics.jsonl")),
      hooks=hooks,
      final_checkpoint=False,
      learning_rate_flag="the learning rate (--config.masks.learning_rate)",
    )
    state = training.run(
      state,
      start,
      lambda state, step: step_fn(state, pipeline.to_global_batch(next(local_batches), mesh)["image"]),
      ckpt,
    )
    # Every process scores all held-out masks on its own devices (the same number on each).
    predict = make_predict_fn(model, parallel.local_mesh())
    held_iou = evaluate_iou(
      predict, parallel.local_copy(state.params), source, held_idx, tuple(config.image_size), config.batch_size
    )
    if jax.process_index() == 0:
      print(f"[masks] held-out IoU {held_iou:.3f} on {len(held_idx)} masks", flush=True)
    record = {
      "complete": True,
      "heldout_iou": held_iou,
      "num_heldout": len(held_idx),
      "num_train": len(train_idx),
      "config": config.to_dict(),
      "seed": seed,
    }
    ckpt.save(config.steps, state, record, force=True)
    ckpt.wait()
  return state.params, record


def load(workdir: str, mesh=None) -> tuple[Any, Any, dict]:
  """(model, params, record) of a finished U-Net training in ``workdir``."""
  mesh = mesh or parallel.make_mesh()
  directory = os.path.join(workdir, "checkpoints")
  missing = (
    f"no finished U-Net in {directory!r}: train one with `python -m sagan_jax.masks train --workdir={workdir}` "
    "(or rerun its command to resume it)"
  )
  if not os.path.isdir(directory):
    raise MissingInputError(missing)
  with checkpoint.StageCheckpoints(directory) as ckpt:
    if ckpt.latest_step() is None:
      raise MissingInputError(missing)
    record = ckpt.read_record()
  if "config" not in record:
    raise MissingInputError(missing)
  config = ml_collections.ConfigDict(record["config"])
  model, optimizer = make_model(config), make_optimizer(config)
  like = jax.eval_shape(lambda: create_state(model, optimizer, config, 0))
  like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(mesh)), like)
  state, record = checkpoint.restore_finished(directory, like, missing)
  return model, state.params, record
