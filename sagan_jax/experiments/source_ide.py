"""IDEs trained once per source on its untranslated images, cached beside the prepared datasets.

Two such networks exist, kept apart on purpose:

* the translation report's *reference IDE* (`sagan_jax.experiments.report`), which measures the
  translations (``translation.identity_kept``, ``domain_gap``);
* the *re-ID teacher* of ``sagan.lambda_reid`` (`teacher_features`), whose features G1 is trained
  to keep. A translation trained in the measuring network's own features would flatter
  ``identity_kept``, so the teacher must differ from the reference in seed or architecture
  (`sagan_jax.experiments.config.teacher_config` refuses one that does not).

Each lives in ``DATA_DIR/<kind>/<source>-<key>/``, the key made of the source's image files, the
network's settings and its seed, so every variant and seed of an experiment shares one. Both are
trained with camera augmentation (`sagan_jax.reid.augment`): a translation should make camera-like
changes of colour and view, which such a network does not count as a lost identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import ml_collections

from sagan_jax import workdir as workdir_lib
from sagan_jax.data import builders
from sagan_jax.experiments.config import teacher_config
from sagan_jax.experiments.run import Run
from sagan_jax.loop import Stopped
from sagan_jax.preemption import Preempted
from sagan_jax.reid import train as ide_train
from sagan_jax.reid.resnet import IDE, imagenet_normalize

_NOT_TRAINING = ("log_every", "checkpoint_every")


def training_settings(config: ml_collections.ConfigDict) -> dict:
  """The fields of an ``ide`` section that change what it trains: its folder's key."""
  settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_TRAINING}
  if settings.get("augment") != "view":  # read by that augmentation only: no other IDE is trained again for it
    settings.pop("view_range", None)
  return settings


def folder(run: Run, kind: str, config: ml_collections.ConfigDict, seed: int) -> str:
  """Where the IDE of ``config`` and ``seed`` on the run's source is kept (``kind``: its family's folder)."""
  d = run.datasets
  # The images only: the IDE reads no mask, and rows with and without masks (CycleGAN's) must share it.
  source = builders.source_fingerprint(d.names["source"], d.manual_dirs["source"], with_masks=False)
  key = json.dumps({"source": source, "ide": training_settings(config), "seed": seed}, sort_keys=True, default=list)
  return os.path.join(d.data_dir, kind, f"{d.names['source']}-{hashlib.sha256(key.encode()).hexdigest()[:16]}")


def trained(run: Run, kind: str, config: ml_collections.ConfigDict, seed: int, name: str):
  """``(model, state)`` of that IDE, trained here the first time it is asked for."""
  where = folder(run, kind, config, seed)
  source = run.datasets.source_train()
  pids = builders.read_labels(run.datasets.builder("source"), "train")["person_id"]
  # Runs started together (the runner's --jobs) share this folder: the first trains, the others wait.
  with workdir_lib.WorkdirLock(where, wait=True):
    try:
      ide_train.train(
        config,
        source,
        pids,
        where,
        run.mesh,
        steps_per_epoch=run.plan.ide_steps_per_epoch(run.config.ide.batch_size),
        seed=seed,
        layers=run.layers,
        num_threads=run.config.data.num_threads,
        name=name,
        stop=run.stop,
        log_dir=None,
      )
    except Stopped as e:
      raise Preempted(name, e.step) from None
  return ide_train.load(config, where, run.mesh, run.layers)


@dataclasses.dataclass(frozen=True)
class Features:
  """A frozen IDE's pool5 features (unnormalised, eval-mode batch norm) of RGB in [-1, 1] at its input size:
  ``features(variables, images [B, H, W, 3]) → [B, D]`` (hashable: compiled steps key on it)."""

  model: IDE
  image_size: tuple[int, int]

  def __call__(self, variables, images: jax.Array) -> jax.Array:
    if tuple(images.shape[1:3]) != self.image_size:
      images = jax.image.resize(images, (images.shape[0], *self.image_size, images.shape[-1]), "bilinear")
    _, pool5 = self.model.apply(variables, imagenet_normalize(images), train=False)
    return pool5


def teacher_features(run: Run):
  """``(Features, variables)`` of the source's re-ID teacher, trained here the first time."""
  config = teacher_config(run.config)
  model, state = trained(run, "reid_teacher", config, run.config.reid_teacher.seed, "re-id teacher")
  return Features(model, tuple(config.image_size)), {"params": state.params, "batch_stats": state.batch_stats}
