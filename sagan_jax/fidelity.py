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

Homographies are output → input, in the normalised coordinates of `sagan_jax.geometry`; distances
are measured where the four image corners are sent, in those units (the image spans 2 × 2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
