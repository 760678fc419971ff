"""Fig. 4-style pictures of SA-GAN's progress: source | S1(x) | G1(S1(x)) for three spatial codes | target."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from sagan_jax.sagan.model import SAGAN, XY


@functools.partial(jax.jit, static_argnames=("model", "num_codes"))
def _columns(model: SAGAN, params, images, masks, key, num_codes: int):
  masks = model.masks_for_input(masks)
  cols = [images]
  for k in jax.random.split(key, num_codes):
    a = model.adapt(params, XY, images, masks, model.spatial_codes(k, images.shape[0]))
    cols += [a.spatial, a.adapted] if model.config.spatial and model.config.pixel else [a.adapted]
  return jnp.stack(cols, axis=1)  # [B, columns, H, W, 3]


def grid(model: SAGAN, params, source: np.ndarray, target: np.ndarray, key: jax.Array, num_codes: int = 3) -> np.ndarray:
  """uint8 picture: one row per source image ``source[B, H, W, 4]`` (RGB + mask, in [-1, 1] / {0, 1}).

  Columns: the source; for each of ``num_codes`` spatial codes S1(x) then G1(S1(x)) (only the
  adapted image for variants without STMs or generators); then one target image per row,
  randomly drawn from ``target`` (not a pair: as the paper's Fig. 4).
  """
  cols = np.asarray(_columns(model, params, jnp.asarray(source[..., :3]), jnp.asarray(source[..., 3:]), key, num_codes))
  picks = np.random.default_rng(0).choice(len(target), size=len(source), replace=len(target) < len(source))
  cols = np.concatenate([cols, target[picks, None, ..., :3]], axis=1)
  b, c, h, w, _ = cols.shape
  pad = 2
  canvas = np.full((b * (h + pad) + pad, c * (w + pad) + pad, 3), 255, np.uint8)
  for r in range(b):
    for j in range(c):
      canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + j * (w + pad):pad + j * (w + pad) + w] = (
          np.round((np.clip(cols[r, j], -1, 1) + 1) * 127.5).astype(np.uint8))
  return canvas


def save(picture: np.ndarray, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(picture).save(path + ".tmp.png")
  os.replace(path + ".tmp.png", path)
