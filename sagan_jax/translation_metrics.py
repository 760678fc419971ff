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
  return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


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
