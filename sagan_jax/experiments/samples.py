"""Fig. 4-style pictures of SA-GAN's progress: source | S1(x) | G1(S1(x)) for three spatial codes |
ground truth (when the benchmark has it) | a random target image, under column headings."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from sagan_jax.sagan.model import SAGAN, XY


@functools.partial(jax.jit, static_argnames=("model", "num_codes"))
def _columns(model: SAGAN, params, images, masks, key, num_codes: int):
  masks = model.masks_for_input(masks)
  cols = [images]
  batch, fixed = images.shape[0], model.fixed_codes(key, num_codes)
  for i, k in enumerate(jax.random.split(key, num_codes)):
    if model.config.code_distribution == "categorical":  # column i: category i mod z_dim in every row
      z = jnp.broadcast_to(fixed[i], (batch, model.config.z_dim))
    else:  # each row its own draw
      z = model.spatial_codes(k, batch)
    a = model.adapt(params, XY, images, masks, z)
    cols += [a.spatial, a.adapted] if model.config.spatial and model.config.pixel else [a.adapted]
  return jnp.stack(cols, axis=1)  # [B, columns, H, W, 3]


def headings(model: SAGAN, num_codes: int, with_truth: bool) -> list[str]:
  """The column titles of `grid`."""
  both = model.config.spatial and model.config.pixel
  adapted = "G1(S1(x))" if both else ("S1(x)" if model.config.spatial else "G1(x)")
  titles = ["source x"]
  for k in range(1, num_codes + 1):
    titles += [f"S1(x) z{k}", f"{adapted} z{k}"] if both else [f"{adapted} z{k}"]
  return titles + (["ground truth"] if with_truth else []) + ["target (random)"]


def grid(
  model: SAGAN,
  params,
  source: np.ndarray,
  target: np.ndarray,
  key: jax.Array,
  num_codes: int = 3,
  truth: np.ndarray | None = None,
  scale: int = 4,
) -> np.ndarray:
  """uint8 picture: one row per source image ``source[B, H, W, 4]`` (RGB + mask, in [-1, 1] / {0, 1}).

  Columns: the source; for each of ``num_codes`` spatial codes S1(x) then G1(S1(x)) (only the
  adapted image for variants without STMs or generators); the paired ground truth ``truth[B, H, W, ≥3]``
  when given; then one target image per row, randomly drawn from ``target`` (not a pair: as the
  paper's Fig. 4). Crops are enlarged ``scale`` times (nearest neighbour) under a row of headings.
  """
  cols = np.asarray(_columns(model, params, jnp.asarray(source[..., :3]), jnp.asarray(source[..., 3:]), key, num_codes))
  if truth is not None:
    cols = np.concatenate([cols, truth[:, None, ..., :3]], axis=1)
  picks = np.random.default_rng(0).choice(len(target), size=len(source), replace=len(target) < len(source))
  cols = np.concatenate([cols, target[picks, None, ..., :3]], axis=1)
  cols = np.repeat(np.repeat(cols, scale, axis=2), scale, axis=3)
  b, c, h, w, _ = cols.shape
  pad, head = 2 * scale, 14
  canvas = np.full((head + b * (h + pad) + pad, c * (w + pad) + pad, 3), 255, np.uint8)
  for r in range(b):
    for j in range(c):
      top, left = head + pad + r * (h + pad), pad + j * (w + pad)
      canvas[top : top + h, left : left + w] = np.round((np.clip(cols[r, j], -1, 1) + 1) * 127.5).astype(np.uint8)
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  for j, title in enumerate(headings(model, num_codes, truth is not None)):
    draw.text((pad + j * (w + pad), 2), title, fill=(0, 0, 0))
  return np.asarray(picture)


def save(picture: np.ndarray, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(picture).save(path + ".tmp.png")
  os.replace(path + ".tmp.png", path)
