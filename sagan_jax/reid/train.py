"""The IDE trainer: ``ide`` config section + labelled images → a finished checkpoint.

Training follows the paper (Section IV-B): SGD with momentum 0.9, learning rate 0.01 divided by 10
after epoch 25 of 50, batch 128, random horizontal flips (the pipeline's), softmax cross-entropy
over the training identities. Weight decay 5e-4 is our choice (the usual IDE value; the paper does
not give one). The budget is counted in updates, ``epochs × steps_per_epoch``, with the epoch
given by the caller: an experiment counts it over the *source* images, so an IDE trained on M
translations of each source image takes the same number of updates whatever M is.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
import optax

from sagan_jax import checkpoint, loop, parallel
from sagan_jax.data import pipeline
from sagan_jax.errors import MissingInputError
from sagan_jax.models.layers import Layers
from sagan_jax.reid import convert_torchvision, ide

PRETRAINED_NONE = "none"  # ide.pretrained: train from scratch on purpose (reported as such)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum, the learning rate divided by 10 after each of ``lr_decay_epochs``."""
  schedule = optax.piecewise_constant_schedule(
    config.learning_rate, {int(e * steps_per_epoch): 0.1 for e in config.lr_decay_epochs}
  )
  # Decay on conv/dense kernels only (not batch-norm scales or biases), as torch's usual IDE recipes do.
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)
  return optax.chain(
    optax.add_decayed_weights(config.weight_decay, mask=decay_mask), optax.sgd(schedule, momentum=config.momentum)
  )


def pretrained_backbone(config) -> dict | None:
  """The converted ImageNet backbone ``config.pretrained`` names, or None to train from scratch."""
  return None if config.pretrained in ("", PRETRAINED_NONE) else convert_torchvision.load(config.pretrained)


def train(
  config: ml_collections.ConfigDict,
  source,
  person_ids: np.ndarray,
  workdir: str,
  mesh,
  *,
  steps_per_epoch: int,
  seed: int,
  layers: Layers = Layers(),
  num_threads: int = 2,
  name: str = "ide",
  hooks: loop.Hooks = loop.Hooks(),
  stop=None,
  log_dir: str | None = None,
) -> ide.IDEState:
  """Trains (or resumes, or skips when finished) an IDE on ``source`` in ``workdir``.

  Args:
    config: the ``ide`` section.
    source: random-access examples (``image``, ``person_id``, ...), e.g. a translated set.
    person_ids: ``person_id`` of every example of ``source`` (its classes, without decoding).
    workdir: the trainer's folder: ``checkpoints/`` and ``metrics.jsonl``.
    mesh: the data mesh the batch is sharded over.
    steps_per_epoch: updates per epoch; ``config.epochs`` of them are taken.
    seed: the batches' order, flips and augmentation, and the head's initialisation.
  """
  classes = np.unique(person_ids)
  parallel.check_batch_divisible(config.batch_size, mesh)
  image_size = tuple(config.image_size)
  batches = pipeline.TrainBatches(
    source,
    global_batch_size=config.batch_size,
    image_size=image_size,
    seed=seed,
    masks="unused",
    flip=config.flip,
    num_threads=num_threads,
  )
  total = config.epochs * steps_per_epoch
  model = ide.make_model(config, len(classes), layers)
  optimizer = make_optimizer(config, steps_per_epoch)
  state = ide.create_state(model, optimizer, image_size, seed, mesh, pretrained_backbone=pretrained_backbone(config))
  label = name.replace("ide", "IDE", 1)
  with checkpoint.StageCheckpoints(os.path.join(workdir, "checkpoints")) as ckpt:
    state, record = ckpt.resume(state)
    if record.get("complete"):
      return state
    train_step = ide.make_train_step(model, optimizer, mesh, config.augment, seed, config.view_range)
    start = int(state.step)
    local_batches = batches.iterate(start)

    def step_fn(state, step):
      del step
      local = next(local_batches)
      labels = np.searchsorted(classes, local["person_id"]).astype(np.int32)
      batch = pipeline.to_global_batch({"image": local["image"], "label": labels}, mesh)
      return train_step(state, batch["image"], batch["label"])

    training = loop.Loop(
      name,
      label,
      total,
      config.log_every,
      config.checkpoint_every,
      config.batch_size,
      record=lambda step, complete: {"complete": complete, "num_classes": len(classes), "steps": total},
      log_dir=log_dir,
      should_stop=stop,
      metrics_log=loop.MetricsLog(os.path.join(workdir, "metrics.jsonl")),
      hooks=hooks,
      done_message=lambda: f"done: {total} steps, {len(classes)} identities, {batches.num_examples} images",
      learning_rate_flag="the learning rate (--config.ide.learning_rate)",
    )
    return training.run(state, start, step_fn, ckpt)


def load(config: ml_collections.ConfigDict, workdir: str, mesh, layers: Layers = Layers(), missing: str = ""):
  """``(model, state)`` of the finished IDE in ``workdir``; ``missing`` says how to train it when there is none."""
  directory = os.path.join(workdir, "checkpoints")
  missing = missing or f"no finished IDE in {workdir!r}: train it first"
  if not os.path.isdir(directory):
    raise MissingInputError(missing)
  with checkpoint.StageCheckpoints(directory) as ckpt:
    if ckpt.latest_step() is None:
      raise MissingInputError(missing)
    num_classes = ckpt.read_record().get("num_classes")
  if num_classes is None:
    raise MissingInputError(missing)
  model = ide.make_model(config, num_classes, layers)
  optimizer = make_optimizer(config, 1)
  like = jax.eval_shape(lambda: ide.create_state(model, optimizer, tuple(config.image_size), 0))
  like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(mesh)), like)
  state, _ = checkpoint.restore_finished(directory, like, missing)
  return model, state
