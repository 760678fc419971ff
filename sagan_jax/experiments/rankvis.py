"""Ranked-list pictures (as torchreid's visrank): a query, then its top-10 gallery images, framed
green where the identity matches and red where it does not. Gallery images the evaluation
removes as junk (same identity and camera as the query, or identity −1) are left out here too."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from sagan_jax.reid import metrics

TOP_K = 10
_GREEN, _RED, _WHITE = (0, 170, 0), (220, 0, 0), (255, 255, 255)


def _framed(image: np.ndarray, colour, size_hw, border: int = 4) -> np.ndarray:
  h, w = size_hw
  inner = np.asarray(Image.fromarray(image).resize((w - 2 * border, h - 2 * border), Image.BILINEAR))
  out = np.empty((h, w, 3), np.uint8)
  out[:] = colour
  out[border : h - border, border : w - border] = inner
  return out


def ranked_list(query_image, gallery_images, matches, size_hw=(128, 64), gap: int = 8) -> np.ndarray:
  """One row: the query (white frame), a gap, then ``gallery_images`` framed by ``matches``."""
  tiles = [_framed(query_image, _WHITE, size_hw), np.full((size_hw[0], gap, 3), 255, np.uint8)]
  tiles += [_framed(g, _GREEN if m else _RED, size_hw) for g, m in zip(gallery_images, matches)]
  return np.concatenate(tiles, axis=1)


def write(out_dir: str, builder, query, gallery, count: int, seed: int = 0) -> list[str]:
  """PNGs for ``count`` queries drawn with ``seed`` from the query split; returns their paths.

  ``query``/``gallery`` are the ``(features, pids, camids)`` triples of the builder's ``query``
  and ``gallery`` splits, in split order.
  """
  q_source, g_source = builder.as_data_source("query"), builder.as_data_source("gallery")
  chosen = np.sort(np.random.default_rng(seed).choice(len(query[1]), size=min(count, len(query[1])), replace=False))
  distmat = metrics.squared_euclidean(query[0][chosen], gallery[0])
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for row, qi in enumerate(chosen):
    pid, cam = query[1][qi], query[2][qi]
    keep = ~(((gallery[1] == pid) & (gallery[2] == cam)) | (gallery[1] == -1))
    order = np.flatnonzero(keep)[np.argsort(distmat[row][keep], kind="stable")][:TOP_K]
    picture = ranked_list(
      np.asarray(q_source[int(qi)]["image"]),
      [np.asarray(g_source[int(g)]["image"]) for g in order],
      gallery[1][order] == pid,
    )
    path = os.path.join(out_dir, f"query_{int(qi):05d}_pid{int(pid)}.png")
    Image.fromarray(picture).save(path)
    paths.append(path)
  return paths
