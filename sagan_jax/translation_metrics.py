"""What a translation did, measured without ground truth: pure functions of features and images.

For real datasets no paired truth exists, so three questions are asked of the translated source
set instead (`sagan_jax.experiments.report` computes them for every adaptation):

* `frechet_distance`: how far apart two image sets are in a feature space (the Fréchet distance of
  Gaussians fitted to their features, as FID). A translation towards the target makes the
  translated source closer to the target than the raw source is.
* `identity_rank1`: whether a translated image still looks like its own person: rank-1 retrieval
  of its identity among the untranslated source images, its own untranslated image left out (so it
  must find another photograph of the person). The report's ``identity_kept`` is this over the
  same figure for the untranslated images themselves: 1.0 keeps every identity the feature space
  could tell apart, 0 keeps none.
* `artifact_energy`: how much more of an image set's spectral power sits at the checkerboard
  frequencies of a stride-2 upsampling (period 2 along either axis) than a reference set's.
  1.0 is as clean as the reference (the target images).
* `framing_gap`: how far apart two sets of person masks are in where the person sits in the frame
  and how much of it the person fills (`framing`), the spatial question the other three leave out.
  A spatial translation towards the target moves the translated (warped) masks' framing towards
  the target's own masks'.
"""

from __future__ import annotations

import numpy as np


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """``‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½)`` of ``[N, D]`` feature sets (0 for identical sets).

  The trace of the matrix square root is computed from the eigenvalues of the symmetric
  ``Σa^½ Σb Σa^½``, which are those of ``Σa Σb``: no non-symmetric square root, no complex parts.
  """
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
    raise ValueError(f"need two [N ≥ 2, D] feature sets of one dimension, got {a.shape} and {b.shape}")
  mean_a, mean_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(cov_a)
  root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  trace_root = np.sum(np.sqrt(np.clip(middle, 0, None)))
  distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
  return float(max(distance, 0.0))  # identical sets round to about −1e-11, not a distance


def identity_rank1(
  query: np.ndarray,
  query_ids: np.ndarray,
  gallery: np.ndarray,
  gallery_ids: np.ndarray,
  own: np.ndarray | None = None,
) -> float | None:
  """Share of ``query`` rows whose nearest ``gallery`` row (Euclidean) has the query's identity.

  ``own[i]``: the gallery row of query ``i``'s own untranslated image (−1: not in the gallery), left
  out of its search, so a query must find *another* image of its person. Only queries whose person
  has such an image count; None when no query does.
  """
  query, gallery = np.asarray(query, np.float32), np.asarray(gallery, np.float32)
  query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
  distances = (
    np.sum(query**2, 1)[:, None] + np.sum(gallery**2, 1)[None, :] - 2 * query @ gallery.T
  )  # one BLAS product; the ranking of Euclidean distances
  same = query_ids[:, None] == gallery_ids[None, :]
  if own is not None:
    own = np.asarray(own)
    rows = np.flatnonzero(own >= 0)
    distances[rows, own[rows]] = np.inf
    same[rows, own[rows]] = False
  answerable = same.any(axis=1)
  if not answerable.any():
    return None
  nearest = np.argmin(distances[answerable], axis=1)
  return float(np.mean(gallery_ids[nearest] == query_ids[answerable]))


def checkerboard_fraction(images: np.ndarray) -> np.ndarray:
  """``[N]``: each image's share of AC spectral power on the period-2 lines, summed over its channels.

  ``images``: ``[N, H, W, C]`` in any range, each channel's mean removed. With ``P = Σ_c |DFT_c|²``,
  the period-2 lines are the frequencies ``(H/2, v)`` and ``(u, W/2)`` for every ``u``, ``v``: every
  pattern that alternates from one pixel to the next along an axis, however its amplitude varies
  along the other. A stride-2 transposed convolution's checkerboard lies there; summing channels
  counts a checkerboard of colours (one that leaves the luminance flat) as much as one of light.
  H and W must be even.
  """
  images = np.asarray(images, np.float64)
  if images.ndim == 3:
    images = images[..., None]
  n, h, w = images.shape[:3]
  if h % 2 or w % 2:
    raise ValueError(f"image height and width must be even, got {h}×{w}")
  centred = images - images.mean(axis=(1, 2), keepdims=True)
  power = np.sum(np.abs(np.fft.fft2(centred, axes=(1, 2))) ** 2, axis=-1)
  lines = np.zeros((h, w), bool)
  lines[h // 2, :] = True
  lines[:, w // 2] = True
  total = power.reshape(n, -1).sum(1)
  return power[:, lines].sum(1) / np.maximum(total, 1e-12)


def artifact_energy(images: np.ndarray, reference: np.ndarray) -> float:
  """Mean `checkerboard_fraction` of ``images`` over that of ``reference`` (1.0: as clean as it)."""
  return float(np.mean(checkerboard_fraction(images)) / max(float(np.mean(checkerboard_fraction(reference))), 1e-12))


FRAMING = ("area", "centre_y", "centre_x", "spread_y", "spread_x")


def framing(masks: np.ndarray, min_area: float = 0.01) -> np.ndarray:
  """``[N, 5]`` framing of the person in each mask of ``masks[N, H, W(, 1)]`` (values in [0, 1]): its
  `FRAMING` statistics, the mask's mean (the share of the frame the person fills), its centroid and its
  standard deviation about it along y and x, in normalised coordinates (−1 and 1 at the outer pixel
  centres, as `sagan_jax.geometry`). Masks covering less than ``min_area`` of the frame (no person
  found) are left out."""
  m = np.asarray(masks, np.float64)
  m = m[..., 0] if m.ndim == 4 else m
  if m.ndim != 3 or min(m.shape[1:]) < 2:
    raise ValueError(f"need masks [N, H ≥ 2, W ≥ 2(, 1)], got shape {np.shape(masks)}")
  y, x = np.linspace(-1.0, 1.0, m.shape[1]), np.linspace(-1.0, 1.0, m.shape[2])
  area = m.mean(axis=(1, 2))
  m = m[area >= min_area]
  rows, cols, total = m.sum(2), m.sum(1), m.sum(axis=(1, 2))
  centre_y, centre_x = rows @ y / total, cols @ x / total
  spread_y = np.sqrt((rows * (y[None] - centre_y[:, None]) ** 2).sum(1) / total)
  spread_x = np.sqrt((cols * (x[None] - centre_x[:, None]) ** 2).sum(1) / total)
  return np.stack([area[area >= min_area], centre_y, centre_x, spread_y, spread_x], 1)


def framing_gap(masks_a: np.ndarray, masks_b: np.ndarray) -> float | None:
  """`frechet_distance` between the `framing` of two mask sets (0 for identical sets); None when either
  set has fewer than two masks with a person."""
  a, b = framing(masks_a), framing(masks_b)
  return None if min(len(a), len(b)) < 2 else frechet_distance(a, b)
