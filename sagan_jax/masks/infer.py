"""Writing masks for a dataset: one single-channel PNG per image (255 = person), same relative path
and stem under the output tree, which is where the dataset builders read them (``MANUAL_DIR/masks``).

Masks already written are skipped, so an interrupted run resumes and a second run writes nothing.
Each PNG is written to a temporary name and renamed, so a killed run never leaves a truncated
mask that a later run would take as done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from sagan_jax.data import layouts
from sagan_jax.errors import ConfigError
from sagan_jax.masks import sources


def write_mask(path: str, mask: np.ndarray) -> None:
  """Writes a boolean ``[H, W]`` mask as a 0/255 PNG, atomically."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(tmp, format="PNG")
  os.replace(tmp, path)


def pending(data_dir: str, out_dir: str) -> tuple[list[str], int]:
  """(images under ``data_dir`` without a mask under ``out_dir``, number already done).

  Mask trees are not images to mask: ``out_dir`` and ``data_dir/masks`` are left out of the walk.
  """
  images = sources.walk_images(data_dir, exclude=[out_dir, default_out_dir(data_dir)])
  todo = [r for r in images if not os.path.isfile(sources.mask_path_for(out_dir, r))]
  return todo, len(images) - len(todo)


def _batches(paths: Sequence[str], batch_size: int) -> Iterator[list[str]]:
  for start in range(0, len(paths), batch_size):
    yield list(paths[start : start + batch_size])


PROVENANCE = ".sagan_jax_masks.json"  # in a mask tree: what wrote its masks
_NOT_PRODUCING = ("log_every", "checkpoint_every")  # U-Net settings that change no weight


def unet_producer(unet_config) -> dict:
  """A U-Net's identity as a mask producer: its training settings (training is deterministic, so
  two runs with equal settings write equal masks and may share a tree)."""
  settings = dict(unet_config)
  return {
    "unet": {
      k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(settings.items()) if k not in _NOT_PRODUCING
    }
  }


def check_provenance(out_dir: str, producer: dict, write: bool = True) -> None:
  """A mask tree belongs to what wrote it: masks from another producer (another U-Net, or the
  user's own) are never mixed with new ones; the error says how to go on."""
  path = os.path.join(out_dir, PROVENANCE)
  if os.path.isfile(path):
    with open(path) as f:
      previous = json.load(f)
    if previous != producer:
      raise ConfigError(
        f"the masks under {out_dir!r} were written by {previous}, not by {producer}: remove that "
        "folder to write new ones, or use them as they are with config.data.masks='data'"
      )
    return
  has_masks = os.path.isdir(out_dir) and any(f.endswith(".png") for _, _, fs in os.walk(out_dir) for f in fs)
  if has_masks:
    raise ConfigError(
      f"{out_dir!r} already holds masks this project did not write: use them with "
      "config.data.masks='data', or move them away to write U-Net masks"
    )
  if write:
    os.makedirs(out_dir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(producer, f)
    os.replace(path + ".tmp", path)


def infer(
  predict: Callable[[np.ndarray], np.ndarray],
  data_dir: str,
  out_dir: str,
  image_size: tuple[int, int],
  batch_size: int,
  on_batch: Callable[[int], None] | None = None,
  shard: tuple[int, int] = (0, 1),
  producer: dict | None = None,
) -> dict[str, int]:
  """Masks every image under ``data_dir`` that has none under ``out_dir`` yet.

  ``predict(rgb[B, H, W, 3] in [-1, 1]) → probability [B, H, W]`` runs at ``image_size``; each
  probability map is resized back to its image's own size and thresholded at 0.5. The last batch
  is padded to ``batch_size`` so a compiled function sees one shape. ``shard=(i, n)`` masks only
  every n-th pending image from the i-th (process i of n); the counts are this shard's.
  ``producer`` (what predicts, e.g. the U-Net's folder) is recorded in the tree and checked
  (`check_provenance`).
  """
  if producer is not None:
    check_provenance(out_dir, producer, write=shard[0] == 0)
  todo, done = pending(data_dir, out_dir)
  todo = todo[shard[0] :: shard[1]]
  height, width = image_size
  for names in _batches(todo, batch_size):
    originals = [sources.decode_image(os.path.join(data_dir, n), "RGB") for n in names]
    rgb = np.stack(
      [
        np.asarray(Image.fromarray(o).resize((width, height), Image.BILINEAR), np.float32) / 127.5 - 1
        for o in originals
      ]
    )
    rgb = np.concatenate([rgb, np.repeat(rgb[-1:], batch_size - len(names), axis=0)])
    prob = np.asarray(predict(rgb), np.float32)[: len(names)]
    for name, original, p in zip(names, originals, prob):
      full = np.asarray(Image.fromarray(p, mode="F").resize((original.shape[1], original.shape[0]), Image.BILINEAR))
      write_mask(sources.mask_path_for(out_dir, name), full > 0.5)
    if on_batch is not None:
      on_batch(len(names))
  return {"written": len(todo), "skipped": done}


def default_out_dir(data_dir: str) -> str:
  return layouts.default_masks_dir(data_dir)
