"""The translated source set: M adapted images per source training image, with the source labels.

Written by the translate stage as one RGBA PNG per (image, code) under ``WORKDIR/translated/``
(RGB: the adapted image; alpha: its warped human mask) and ``labels.json``, written last, which
marks the set complete. `TranslatedSource` reads it back in the form the input pipeline expects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from sagan_jax import fileio

LABELS = "labels.json"


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


def is_complete(root: str) -> bool:
  return os.path.isfile(os.path.join(root, LABELS))


class TranslatedSource(Sequence):
  """Random access to a complete translated set: ``image`` uint8 [H, W, 3], ``mask`` [H, W, 1], labels."""

  def __init__(self, root: str):
    if not is_complete(root):
      raise FileNotFoundError(f"no complete translated set in {root!r} ({LABELS} missing): run the translate stage")
    with open(os.path.join(root, LABELS)) as f:
      labels = json.load(f)
    self.root = root
    self.names = labels["names"]
    self.person_ids = np.asarray(labels["person_id"], np.int32)
    self.camera_ids = np.asarray(labels["camera_id"], np.int32)

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
