"""How close a translation is to the truth: pure functions of arrays, for benchmarks that know it.

The synthetic benchmark renders, for a subset of source images, the ideal translation (the same
scene seen by the target cameras) and records the true viewpoint homography
(`sagan_jax.data.synthetic`). These scores compare SA-GAN's X→Y translation with both:

* `viewpoint_error`: how far the learned T_xy is from the true homography, relative to how far the
  identity is: 1 = no better than not warping, 0 = exact.
* `pixel_error`: the person-masked L1 distance of G1(S1(x)) to the ground truth, relative to that
  of the untranslated source x: 1 = as far as the source, 0 = exact.
* `code_diversity`: how far apart the T_xy of different spatial codes of one image are (the
  multi-modal mapping of Section III-B needs it above zero).

A target seen from several viewpoints gives each source image K true translations; the multi-view
scores below (`coverage_error`, `precision_error`, `pixel_error_nearest`, `detail_error_nearest`)
compare with the nearest of them.

Homographies are output → input, in the normalised coordinates of `sagan_jax.geometry`; distances
are measured where the four image corners are sent, in those units (the image spans 2 × 2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def map_corners(h: jax.Array) -> jax.Array:
  """``[..., 4, 2]``: where the homographies ``h[..., 3, 3]`` send the four image corners."""
  corners = jnp.asarray(CORNERS, jnp.float32)
  homogeneous = jnp.concatenate([corners, jnp.ones((4, 1), jnp.float32)], -1)
  points = jnp.einsum("...ij,kj->...ki", h.astype(jnp.float32), homogeneous)
  return points[..., :2] / points[..., 2:3]


def corner_distance(h_a: jax.Array, h_b: jax.Array) -> jax.Array:
  """``[...]``: mean Euclidean distance between where ``h_a`` and ``h_b`` send the image corners."""
  return jnp.mean(jnp.linalg.norm(map_corners(h_a) - map_corners(h_b), axis=-1), axis=-1)


def viewpoint_error(t_xy: jax.Array, h_true: jax.Array) -> jax.Array:
  """``[...]``: corner distance of each ``t_xy[..., 3, 3]`` to ``h_true[3, 3]`` over that of the identity.

  0 for the true homography, 1 for the identity (no warp), above 1 for a warp in the wrong direction.
  """
  return corner_viewpoint_error(map_corners(t_xy), map_corners(jnp.asarray(h_true, jnp.float32)))


def corner_viewpoint_error(corners: jax.Array, true_corners: jax.Array, reference: float | None = None) -> jax.Array:
  """`viewpoint_error` from where the learned and the true warps send the corners (``[..., 4, 2]``).

  For warps that are no matrix (a thin-plate spline's grid read at the corners). ``true_corners``
  is ``[4, 2]`` or one per image (``[N, 4, 2]``, broadcast against ``corners``). ``reference``, the
  distance that scores 1, defaults to the identity's distance to the truth pooled over the images;
  pass the benchmark's viewpoint change when some truths are the identity (a source camera already
  at the target's height), so every subset is scored in the same unit.
  """
  identity = jnp.asarray(CORNERS, jnp.float32)
  if reference is None:
    reference = jnp.mean(jnp.linalg.norm(true_corners - identity, axis=-1))
  return jnp.mean(jnp.linalg.norm(corners - true_corners, axis=-1), axis=-1) / reference


def pixel_error(translated: jax.Array, truth: jax.Array, source: jax.Array, mask: jax.Array) -> jax.Array:
  """Masked ``Σ|translated − truth| / Σ|source − truth|`` over the whole batch (a scalar).

  Args:
    translated: ``[B, H, W, 3]`` G1(S1(x)).
    truth: ``[B, H, W, 3]`` the paired ground truth.
    source: ``[B, H, W, 3]`` x, untranslated.
    mask: ``[B, H, W, 1]`` the pixels scored (the person as the target camera sees it).

  Summed over the batch before dividing, so images where x happens to be close to the truth do
  not dominate.
  """
  mask = mask.astype(jnp.float32)
  error = lambda a: jnp.sum(jnp.abs(a.astype(jnp.float32) - truth.astype(jnp.float32)) * mask)
  return error(translated) / jnp.maximum(error(source), 1e-12)


def code_diversity(t_xy: jax.Array) -> jax.Array:
  """Mean corner distance between the ``[B, M, 3, 3]`` transformations of different codes of one image.

  Averaged over the M(M − 1)/2 pairs of each image, then over images; 0 when every code gives the
  same warp (or M = 1).
  """
  return corner_code_diversity(map_corners(t_xy))


def corner_code_diversity(corners: jax.Array) -> jax.Array:
  """`code_diversity` from the corners ``[B, M, 4, 2]`` each code's warp sends them to."""
  m = corners.shape[1]
  if m < 2:
    return jnp.zeros((), jnp.float32)
  pairwise = jnp.mean(jnp.linalg.norm(corners[:, :, None] - corners[:, None, :], axis=-1), axis=-1)  # [B, M, M]
  return jnp.sum(pairwise) / (corners.shape[0] * m * (m - 1))


# --------------------------------------------------------------------------------------------------
# Targets with several viewpoints: a source image has a set of K true translations.


def corner_errors(corners: jax.Array, true_corners: jax.Array, reference: float) -> jax.Array:
  """``[M, N, K]``: mean corner distance of code m's warp of image n to image n's truth k, over ``reference``.

  ``corners`` ``[M, N, 4, 2]`` (M codes), ``true_corners`` ``[N, K, 4, 2]`` (K true views).
  """
  diff = corners[:, :, None] - true_corners[None]  # [M, N, K, 4, 2]
  return jnp.mean(jnp.linalg.norm(diff, axis=-1), axis=-1) / reference


def coverage_error(errors: jax.Array) -> jax.Array:
  """For each true viewpoint the nearest code's error, averaged (over views and images): low when
  every target view is produced by some code. ``errors``: `corner_errors` ``[M, N, K]``."""
  return jnp.mean(jnp.min(errors, axis=0))


def precision_error(errors: jax.Array) -> jax.Array:
  """For each code the nearest true viewpoint's error, averaged: low when every code's warp is a real view."""
  return jnp.mean(jnp.min(errors, axis=2))


def offset_and_spread(corners: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
  """One code's corner error to one view, ``corners`` and ``truth`` ``[N, 4, 2]``, split in two: the
  displacement every image shares (the mean displacement's length) and the images' scatter around
  it, each averaged over the corners. The error lies between the first and their sum (triangle
  inequality)."""
  d = np.asarray(corners, np.float64) - np.asarray(truth, np.float64)
  shared = d.mean(axis=0)
  return float(np.mean(np.linalg.norm(shared, axis=-1))), float(np.mean(np.linalg.norm(d - shared, axis=-1)))


def geometric_median(points: np.ndarray, iterations: int = 200) -> np.ndarray:
  """``[..., 2]``: the point minimising the summed Euclidean distance to ``points[..., P, 2]`` (Weiszfeld)."""
  points = np.asarray(points, np.float64)
  estimate = points.mean(axis=-2)
  for _ in range(iterations):
    distance = np.maximum(np.linalg.norm(points - estimate[..., None, :], axis=-1), 1e-12)
    weights = 1.0 / distance
    estimate = np.sum(points * weights[..., None], axis=-2) / np.sum(weights, axis=-1)[..., None]
  return estimate


def best_single_warp(true_corners: np.ndarray) -> np.ndarray:
  """``[N, 4, 2]``: per image, the one warp nearest to all its K true views (each corner's geometric
  median over the views). A homography is fixed by where it sends the four corners, so this is the
  warp that minimises `coverage_error` for one code: the floor any M = 1 translator can reach."""
  return geometric_median(np.swapaxes(np.asarray(true_corners), 1, 2))


def pixel_error_nearest(translated: np.ndarray, truths: np.ndarray, source: np.ndarray, masks: np.ndarray) -> float:
  """`pixel_error` against the nearest of K truths: ``mean_m Σ min_k |t̂_m − t_k|·m_k / Σ min_k |x − t_k|·m_k``.

  ``translated`` ``[M, N, H, W, 3]`` (M codes), ``truths`` ``[N, K, H, W, 3]`` with ``masks``
  ``[N, K, H, W, 1]``, ``source`` ``[N, H, W, 3]``. Sums run over codes, images and pixels; each
  (code, image) pair takes the truth it is closest to, and so does the untranslated source.
  """
  per = lambda a: np.sum(np.abs(a[:, :, None] - truths[None]) * masks[None], axis=(3, 4, 5))  # [M, N, K]
  translated_error = np.sum(np.min(per(translated), axis=2)) / len(translated)  # per code, as the source's
  return float(translated_error / max(float(np.sum(np.min(per(source[None]), axis=2))), 1e-12))


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size) - size // 2
  g = np.exp(-(x**2) / (2 * sigma**2))
  return g / g.sum()


def ssim_map(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
  """``[..., H, W]`` structural similarity (Wang et al. 2004) of RGB images in [-1, 1], on luminance.

  A 7×7 Gaussian window (σ 1.5; 11×11 is the usual size for 256-pixel images, these are smaller),
  edges reflected, C1 = 0.01², C2 = 0.03² for luminance in [0, 1]. With ``weights`` ``[..., H, W]``
  (a person mask), each window's means, variances and covariance are taken over the weighted pixels
  only, the window times the weights renormalised, so a window on the outline compares the two
  people and never the scene beside them; all-ones weights give the plain SSIM.
  """
  lum = lambda x: (np.asarray(x, np.float64).mean(-1) + 1) / 2
  x, y = lum(a), lum(b)
  g = _gaussian_window()
  pad = len(g) // 2

  def blur(z):
    z = np.pad(z, [(0, 0)] * (z.ndim - 2) + [(pad, pad), (pad, pad)], mode="reflect")
    z = sum(w * z[..., i : i + z.shape[-2] - 2 * pad, :] for i, w in enumerate(g))
    return sum(w * z[..., :, i : i + z.shape[-1] - 2 * pad] for i, w in enumerate(g))

  if weights is None:
    weights = np.ones_like(x)
  weights = np.broadcast_to(np.asarray(weights, np.float64), x.shape)
  # A window with no weight at all gets a mean of 0 and no variance: it is scored, if at all,
  # with a weight of 0 by the callers (the weights are the same mask).
  total = np.maximum(blur(weights), 1e-12)
  mean = lambda z: blur(weights * z) / total
  mx, my = mean(x), mean(y)
  # Clipped: a variance cannot be negative, rounding can make it so.
  vx, vy = np.maximum(mean(x * x) - mx**2, 0), np.maximum(mean(y * y) - my**2, 0)
  cxy = mean(x * y) - mx * my
  c1, c2 = 0.01**2, 0.03**2
  return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def detail_error_nearest(
  translated: np.ndarray, truths: np.ndarray, source: np.ndarray, masks: np.ndarray, person_windows: bool = True
) -> float:
  """As `pixel_error_nearest`, with ``1 − SSIM`` on the person in place of the L1 difference.

  Structure and contrast count, not only colour: a flat patch of the right colour scores about
  as badly as the untranslated source (1), while a translation that keeps the person's edges and
  texture in the right place scores near 0. The SSIM windows are weighted by the truth's person
  mask (`ssim_map`'s ``weights``): the truth keeps the source's scene, which a translation to the
  target is right to change, so the background beside the outline does not count; a translation
  that puts the person elsewhere still shows its own background on the truth's person pixels.
  ``person_windows=False`` leaves the windows unweighted: the definition before 2026-12-05, kept
  for comparison (`bench.fidelity_references`).
  """
  weights = lambda k: masks[:, k, ..., 0] if person_windows else None
  dissimilarity = lambda a: np.stack(
    [
      np.sum((1 - ssim_map(a, truths[:, k], weights(k))) * masks[:, k, ..., 0], axis=(-2, -1))
      for k in range(truths.shape[1])
    ],
    axis=-1,
  )  # [..., N, K]
  translated_d = np.stack([dissimilarity(t) for t in translated])  # [M, N, K]
  source_d = dissimilarity(source)[None]
  translated_error = np.sum(np.min(translated_d, axis=2)) / len(translated)  # per code, as the source's
  return float(translated_error / max(float(np.sum(np.min(source_d, axis=2))), 1e-12))
