"""Training data for the mask U-Net: (image, mask) pairs from a LIP tree or a mirrored mask tree.

Both readers return a `PairSource`, a random-access sequence of examples in the form the input
pipeline reads (``image`` uint8 [H, W, 3], ``mask`` uint8 [H, W, 1] with 255 = person), so
`sagan_jax.data.pipeline.TrainBatches`/`eval_batches` batch, resize and flip them unchanged.

* LIP (Look Into Person, Gong et al. 2017), as distributed: ``ROOT/TrainVal_images/{train,val}_images/*.jpg``
  and ``ROOT/TrainVal_parsing_annotations/{train,val}_segmentations/*.png``, parsing labels
  0 (background) to 19; foreground is any label > 0.
* A mirrored mask tree: every image under ``images_dir`` with a single-channel PNG of the same
  stem at the same relative path under ``masks_dir`` (255 = person, as the dataset builders read
  them). The synthetic benchmark's ground truth (``DIR/source`` with ``DIR/source/masks``) and the
  teacher's pseudo-labels (`sagan_jax.masks.teacher`) both have this layout.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from sagan_jax.data.builders import CorruptImageError
from sagan_jax.data.layouts import DatasetLayoutError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LIP_SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class Pair:
  image_path: str
  mask_path: str
  foreground_min: int  # mask values ≥ this are person (LIP labels: 1; binary PNG masks: 128)


def decode_image(path: str, mode: str) -> np.ndarray:
  try:
    with open(path, "rb") as f, Image.open(io.BytesIO(f.read())) as image:
      return np.asarray(image.convert(mode))
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise CorruptImageError(f"cannot decode {path!r} ({e}); replace or remove the file") from e


class PairSource(Sequence):
  """Random access to decoded pairs; ``person_id``/``camera_id`` are 0 (masks have no identities)."""

  def __init__(self, pairs: Sequence[Pair]):
    if not pairs:
      raise DatasetLayoutError("no (image, mask) pairs found: check the mask training directories")
    self.pairs = list(pairs)

  def __len__(self) -> int:
    return len(self.pairs)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    pair = self.pairs[int(i)]
    image = decode_image(pair.image_path, "RGB")
    labels = decode_image(pair.mask_path, "L")
    if labels.shape != image.shape[:2]:
      raise DatasetLayoutError(
        f"mask {pair.mask_path!r} is {labels.shape[0]}×{labels.shape[1]} but its image "
        f"{pair.image_path!r} is {image.shape[0]}×{image.shape[1]}"
      )
    mask = np.where(labels >= pair.foreground_min, 255, 0).astype(np.uint8)[..., None]
    return {"image": image, "mask": mask, "person_id": 0, "camera_id": 0}


def walk_images(images_dir: str, exclude: Sequence[str] = ()) -> list[str]:
  """Image paths under ``images_dir`` relative to it, sorted, skipping the ``exclude`` folders."""
  if not os.path.isdir(images_dir):
    raise DatasetLayoutError(f"missing folder {images_dir!r}: expected a directory of images")
  excluded = {os.path.abspath(e) for e in exclude}
  found = []
  for root, dirs, files in os.walk(images_dir):
    dirs[:] = sorted(
      d for d in dirs if not d.startswith(".") and os.path.abspath(os.path.join(root, d)) not in excluded
    )
    for name in sorted(files):
      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
        found.append(os.path.relpath(os.path.join(root, name), images_dir))
  if not found:
    raise DatasetLayoutError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {images_dir!r}")
  return found


def mask_path_for(masks_dir: str, relative_image: str) -> str:
  """Where the mask of an image lives: same relative path and stem, ``.png``."""
  return os.path.join(masks_dir, os.path.splitext(relative_image)[0] + ".png")


def mirrored_pairs(images_dir: str, masks_dir: str) -> PairSource:
  """Every image under ``images_dir`` (the mask tree excluded) paired with its mask under ``masks_dir``."""
  pairs = []
  for relative in walk_images(images_dir, exclude=[masks_dir]):
    mask = mask_path_for(masks_dir, relative)
    if not os.path.isfile(mask):
      raise DatasetLayoutError(
        f"missing mask {mask!r} for image {os.path.join(images_dir, relative)!r}: masks "
        f"mirror the image tree under {masks_dir!r} with the image's stem and .png"
      )
    pairs.append(Pair(os.path.join(images_dir, relative), mask, 128))
  return PairSource(pairs)


def lip_pairs(root: str, split: str = "train") -> PairSource:
  """The LIP human-parsing images of ``split`` ("train" or "val") with their parsing maps."""
  if split not in LIP_SPLITS:
    raise ValueError(f"LIP split {split!r}: expected one of {LIP_SPLITS}")
  images_dir = os.path.join(root, "TrainVal_images", f"{split}_images")
  labels_dir = os.path.join(root, "TrainVal_parsing_annotations", f"{split}_segmentations")
  for folder in (images_dir, labels_dir):
    if not os.path.isdir(folder):
      raise DatasetLayoutError(
        f"missing folder {folder!r}: a LIP directory holds TrainVal_images/{split}_images "
        f"and TrainVal_parsing_annotations/{split}_segmentations"
      )
  pairs = []
  for relative in walk_images(images_dir):
    labels = mask_path_for(labels_dir, relative)
    if not os.path.isfile(labels):
      raise DatasetLayoutError(f"missing parsing map {labels!r} for LIP image {os.path.join(images_dir, relative)!r}")
    pairs.append(Pair(os.path.join(images_dir, relative), labels, 1))
  return PairSource(pairs)


def training_source(config) -> PairSource:
  """The pairs a `mask_config` names: ``source`` "lip" (LIP root) or "pairs" (images + mask tree)."""
  if config.source == "lip":
    return lip_pairs(config.images_dir, "train")
  if config.source == "pairs":
    masks_dir = config.masks_dir or os.path.join(config.images_dir, "masks")
    return mirrored_pairs(config.images_dir, masks_dir)
  raise ValueError(f"config.masks.source={config.source!r}: expected 'lip' or 'pairs'")
