"""The translate stage and the set it writes: M adapted images per source training image, with the source labels.

One RGBA PNG per (image, code) under ``WORKDIR/translated[/<adaptation>]/`` (RGB: the adapted image;
alpha: its warped human mask). ``inputs.json``, written first, keys the set to what it translates:
the source images (names, in order), the translator's parameters and M; a rerun whose inputs
differ starts the set afresh instead of reusing images of other inputs. ``labels.json``, written
last, marks it complete. `TranslatedSource` reads it back in the form the input pipeline expects.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from PIL import Image

from sagan_jax import fileio, parallel, progress
from sagan_jax.data import builders, pipeline
from sagan_jax.errors import MissingInputError
from sagan_jax.experiments import plan as plan_lib
from sagan_jax.experiments.run import Run
from sagan_jax.preemption import Preempted
from sagan_jax.sagan import steps as sagan_steps

LABELS = "labels.json"
INPUTS = "inputs.json"


def image_name(index: int, code: int) -> str:
  return f"{index // 1000:04d}/{index:07d}_{code:02d}.png"


def write_image(root: str, name: str, rgb: np.ndarray, mask: np.ndarray) -> None:
  """``rgb`` [H, W, 3] in [-1, 1], ``mask`` [H, W, 1] in [0, 1] → RGBA PNG, written atomically."""
  path = os.path.join(root, name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rgba = np.concatenate([(np.clip(rgb, -1, 1) + 1) * 127.5, np.clip(mask, 0, 1) * 255], -1)
  tmp = f"{path}.tmp-{os.getpid()}"
  Image.fromarray(np.round(rgba).astype(np.uint8), mode="RGBA").save(tmp, format="PNG")
  os.replace(tmp, path)


def write_labels(root: str, names: Sequence[str], person_ids, camera_ids, meta: dict) -> None:
  labels = {
    "names": list(names),
    "person_id": [int(p) for p in person_ids],
    "camera_id": [int(c) for c in camera_ids],
    "meta": meta,
  }
  fileio.write_text_atomic(os.path.join(root, LABELS), json.dumps(labels))


def fingerprint(
  source_names: Sequence[str], params, num_codes: int, seed: int, region: str = "frame", strength: float = 1.0
) -> dict:
  """What a translated set is made from: the source images in order, the translator's parameters, M,
  the codes' seed and (when not the whole frame, or not the whole change) where G1's pixels are kept
  and how much of its change."""
  names = hashlib.sha256("\n".join(source_names).encode()).hexdigest()
  weights = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(params), key=lambda kv: jax.tree_util.keystr(kv[0])):
    weights.update(jax.tree_util.keystr(path).encode())
    weights.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return {
    "source_images": len(source_names),
    "source_names_sha256": names,
    "translator_sha256": weights.hexdigest(),
    "num_codes": num_codes,
    "seed": seed,
    **({} if region == "frame" else {"region": region}),  # sets made before the option stay valid
    **({} if strength == 1.0 else {"strength": strength}),
  }


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def is_complete(root: str, inputs: dict | None = None) -> bool:
  """Whether ``root`` holds a finished set (made from ``inputs``, when given)."""
  if not os.path.isfile(os.path.join(root, LABELS)):
    return False
  return inputs is None or _read_json(os.path.join(root, INPUTS)) == inputs


def _start(root: str, inputs: dict, name: str) -> None:
  """Keys ``root`` to ``inputs``; a set made from other inputs (or unkeyed) is removed first."""
  previous = _read_json(os.path.join(root, INPUTS))
  if os.path.isdir(root) and os.listdir(root) and previous != inputs:
    changed = sorted(k for k in inputs if (previous or {}).get(k) != inputs[k]) if previous else ["no record"]
    logging.warning(
      "%s: the translated images in %s were made from other inputs (%s): translating afresh",
      name,
      root,
      ", ".join(changed),
    )
    shutil.rmtree(root)
  os.makedirs(root, exist_ok=True)
  if previous != inputs:
    fileio.write_text_atomic(os.path.join(root, INPUTS), json.dumps(inputs, indent=1))


class TranslatedSource(Sequence):
  """Random access to a complete translated set: ``image`` uint8 [H, W, 3], ``mask`` [H, W, 1], labels."""

  def __init__(self, root: str):
    if not is_complete(root):
      raise MissingInputError(f"no complete translated set in {root!r} ({LABELS} missing): run the translate stage")
    with open(os.path.join(root, LABELS)) as f:
      labels = json.load(f)
    self.root = root
    self.names = labels["names"]
    self.person_ids = np.asarray(labels["person_id"], np.int32)
    self.camera_ids = np.asarray(labels["camera_id"], np.int32)
    self.meta = labels["meta"]

  def __len__(self) -> int:
    return len(self.names)

  def __getitem__(self, i: int) -> dict:
    i = int(i)
    rgba = np.asarray(Image.open(os.path.join(self.root, self.names[i])).convert("RGBA"))
    return {
      "image": rgba[..., :3],
      "mask": rgba[..., 3:],
      "person_id": self.person_ids[i],
      "camera_id": self.camera_ids[i],
    }


def translate(run: Run, a: plan_lib.Adaptation, model, params) -> None:
  """Writes ``a``'s translated set: every source image of the adaptation under M spatial codes.

  Each process translates its share of the batches; SIGTERM stops after the current batch, keeping
  the images written, which a rerun with the same inputs does not translate again.
  """
  c = run.config
  root = run.path(a.subdir("translated"))
  name = f"translate {a.name}" if a.name else "translate"
  labels = builders.read_labels(run.datasets.builder("source"), "train")  # no image is decoded
  indices = np.asarray(a.source_indices)
  num_codes, batch = c.sagan.num_codes, c.translate.batch_size
  seed = run.seed("translate")
  params = parallel.local_copy(params)
  region, strength = c.translate.region, float(c.translate.strength)
  inputs = fingerprint([str(n) for n in labels["filename"][indices]], params, num_codes, seed, region, strength)
  if is_complete(root, inputs):
    logging.info("%s: complete, skipped", name)
    return
  if run.is_main:
    _start(root, inputs, name)
  parallel.barrier("translation keyed")
  count = len(indices)
  names = [image_name(i, m) for i in range(count) for m in range(num_codes)]
  starts = list(range(0, count, batch))
  source = run.datasets.source_train()
  base_key = jax.random.key(seed)
  with progress.Progress(name, len(starts), 0, batch * num_codes) as bar:
    for k, begin in enumerate(starts):
      batch_names = names[begin * num_codes : (begin + batch) * num_codes]
      done = all(os.path.isfile(os.path.join(root, n)) for n in batch_names)
      if k % jax.process_count() == jax.process_index() and not done:
        images, valid = next(
          pipeline.eval_batches(
            source,
            batch_size=batch,
            image_size=run.image_size,
            indices=indices[begin : begin + batch],
            masks=run.datasets.mask_mode,
          )
        )
        adapted, masks, _ = sagan_steps.translate(
          model,
          params,
          jnp.asarray(images["image"][..., :3]),
          jnp.asarray(images["image"][..., 3:]),
          num_codes,
          jax.random.fold_in(base_key, k),
          region,
          strength,
        )
        adapted, masks = np.asarray(adapted), np.asarray(masks)
        for i in range(valid):
          for m in range(num_codes):
            write_image(root, image_name(begin + i, m), adapted[i, m], masks[i, m])
      bar.update(k + 1)
      if run.stop():
        raise Preempted(name, k + 1, f"stopped after batch {k + 1} of {len(starts)} (its images are kept)")
  parallel.barrier("translation written")
  if run.is_main:
    meta = {
      "num_codes": num_codes,
      "region": region,
      "strength": strength,
      "source_images": count,
      "variant": c.variant,
      "adaptation": a.name,
      "source_cameras": list(a.source_cameras),
    }
    pids, cams = (np.repeat(labels[k][indices], num_codes) for k in ("person_id", "camera_id"))
    write_labels(root, names, pids, cams, meta)
  parallel.barrier("translation labels written")  # the IDE stage of every process reads them next
