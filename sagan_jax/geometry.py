"""Differentiable spatial transformations: the "T" inside SA-GAN's spatial transformer modules.

SA-GAN (Section III-B) lets its spatial transformer modules S1/S2 predict an affine, homography or
thin-plate-spline (TPS) transformation and warps image and human mask together with it. Everything
here is a pure function of arrays, usable from any JAX project.

Conventions (all functions share them):

* Images are ``[B, H, W, C]`` with any number of channels, so RGB and mask travel together.
* Coordinates are **normalised**: ``x`` first, then ``y``, each in ``[-1, 1]`` where ``±1`` are the
  *centres* of the corner pixels (PyTorch's ``align_corners=True``). Pixel ``(u, v)`` of a ``W × H``
  image sits at ``x = 2u / (W - 1) - 1``, ``y = 2v / (H - 1) - 1``.
* A transformation maps **output** coordinates to the **input** coordinates they sample from
  (inverse mapping, as in every spatial transformer): ``warp(img, H)[p] = img[H p]``.
* Homographies and affine maps come from a Lie-algebra parameterisation (as in ST-GAN):
  ``H = expm(A(p))``. Hence ``p = 0`` is the identity and the inverse is exact,
  ``H(-p) = H(p)^{-1}``, which is what SA-GAN's spatial cycle loss (eq. 3) and its spatial critic
  D_T (eq. 1) compare.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Padding = Literal["zeros", "border"]

HOMOGRAPHY_NUM_PARAMS = 8
AFFINE_NUM_PARAMS = 6

# Smallest projective denominator allowed in `homography_grid` (see its docstring).
_MIN_DENOMINATOR = 1e-3


def _compute_dtype(dtype) -> jnp.dtype:
  """At least float32: homogeneous coordinates in bfloat16 are off by about a pixel."""
  return jnp.promote_types(dtype, jnp.float32)


def sl3_generator(p: jax.Array) -> jax.Array:
  """The trace-free 3×3 generator ``A(p)`` of the sl(3) parameterisation.

  Layout (row-major, ST-GAN's ``I + p`` layout with the trace constraint on the last entry)::

      A(p) = [[p0, p1, p2],
              [p3, p4, p5],
              [p6, p7, -(p0 + p4)]]

  For small ``p``, ``H ≈ I + A``: ``p2``/``p5`` translate in x/y (normalised units), ``p0``/``p4``
  scale x/y, ``p1``/``p3`` shear (``p1 = -p3`` rotates), ``p6``/``p7`` tilt the image plane
  (perspective, e.g. a vertical keystone for a camera looking down).

  Args:
    p: ``[..., 8]`` parameters.

  Returns:
    ``[..., 3, 3]`` trace-free generator.
  """
  if p.shape[-1] != HOMOGRAPHY_NUM_PARAMS:
    raise ValueError(f"homography parameters need a last axis of {HOMOGRAPHY_NUM_PARAMS}, got shape {p.shape}")
  last = -(p[..., 0] + p[..., 4])
  flat = jnp.concatenate([p, last[..., None]], axis=-1)
  return flat.reshape((*p.shape[:-1], 3, 3))


def homography_from_params(p: jax.Array) -> jax.Array:
  """Homography ``H = expm(A(p))`` from 8 sl(3) parameters (layout: `sl3_generator`).

  ``det H = exp(trace A) = 1``; ``p = 0`` gives the identity; ``homography_from_params(-p)`` is the
  exact inverse of ``homography_from_params(p)`` (up to float rounding), because ``expm(-A)`` inverts
  ``expm(A)``. Computed in at least float32 whatever the dtype of ``p``.

  Args:
    p: ``[..., 8]`` parameters.

  Returns:
    ``[..., 3, 3]`` homographies in normalised coordinates (see the module docstring).
  """
  p = p.astype(_compute_dtype(p.dtype))
  return _expm(sl3_generator(p))


def affine_from_params(p: jax.Array) -> jax.Array:
  """Affine map ``H = expm(A(p))`` from 6 aff(2) parameters, as a ``[..., 3, 3]`` matrix.

  Layout::

      A(p) = [[p0, p1, p2],
              [p3, p4, p5],
              [ 0,  0,  0]]

  Same conventions as `homography_from_params`: ``p = 0`` is the identity and
  ``affine_from_params(-p)`` is the exact inverse. The last row of ``H`` is ``[0, 0, 1]``;
  ``det H = exp(p0 + p4)`` (area is not preserved, unlike sl(3)).
  """
  if p.shape[-1] != AFFINE_NUM_PARAMS:
    raise ValueError(f"affine parameters need a last axis of {AFFINE_NUM_PARAMS}, got shape {p.shape}")
  p = p.astype(_compute_dtype(p.dtype))
  zeros = jnp.zeros((*p.shape[:-1], 3), p.dtype)
  a = jnp.concatenate([p, zeros], axis=-1).reshape((*p.shape[:-1], 3, 3))
  return _expm(a)


def _expm(a: jax.Array) -> jax.Array:
  batch_shape = a.shape[:-2]
  flat = a.reshape((-1, 3, 3))
  return jax.vmap(jax.scipy.linalg.expm)(flat).reshape((*batch_shape, 3, 3))


# --------------------------------------------------------------------------------------------------
# Coordinate frames.


def _pixel_from_normalized_matrix(hw: tuple[int, int], dtype=jnp.float32) -> jax.Array:
  """``K`` with ``pixel = K @ normalised`` (homogeneous, x first) for an ``(H, W)`` image."""
  h, w = hw
  sx, sy = (w - 1) / 2.0, (h - 1) / 2.0
  return jnp.array([[sx, 0.0, sx], [0.0, sy, sy], [0.0, 0.0, 1.0]], dtype)


def _normalized_from_pixel_matrix(hw: tuple[int, int], dtype=jnp.float32) -> jax.Array:
  h, w = hw
  if h < 2 or w < 2:
    raise ValueError(f"normalised coordinates need images of at least 2×2 pixels, got {hw}")
  return jnp.array([[2.0 / (w - 1), 0.0, -1.0], [0.0, 2.0 / (h - 1), -1.0], [0.0, 0.0, 1.0]], dtype)


def homography_normalized_to_pixel(
  h_norm: jax.Array, in_hw: tuple[int, int], out_hw: tuple[int, int] | None = None
) -> jax.Array:
  """Converts an output→input homography from normalised to pixel coordinates.

  Pixel coordinates are ``(u, v)`` = (column, row) with ``(0, 0)`` the centre of the top-left pixel.

  Args:
    h_norm: ``[..., 3, 3]`` homography in normalised coordinates.
    in_hw: ``(H, W)`` of the image sampled from.
    out_hw: ``(H, W)`` of the output grid; defaults to ``in_hw``.
  """
  out_hw = in_hw if out_hw is None else out_hw
  dtype = _compute_dtype(h_norm.dtype)
  return (
    _pixel_from_normalized_matrix(in_hw, dtype) @ h_norm.astype(dtype) @ _normalized_from_pixel_matrix(out_hw, dtype)
  )


def homography_pixel_to_normalized(
  h_pix: jax.Array, in_hw: tuple[int, int], out_hw: tuple[int, int] | None = None
) -> jax.Array:
  """Inverse of `homography_normalized_to_pixel`."""
  out_hw = in_hw if out_hw is None else out_hw
  dtype = _compute_dtype(h_pix.dtype)
  return (
    _normalized_from_pixel_matrix(in_hw, dtype) @ h_pix.astype(dtype) @ _pixel_from_normalized_matrix(out_hw, dtype)
  )


def identity_grid(out_hw: tuple[int, int], dtype=jnp.float32) -> jax.Array:
  """``[H, W, 2]`` normalised (x, y) coordinates of every output pixel centre."""
  h, w = out_hw
  gx, gy = jnp.meshgrid(_normalized_axis(w, dtype), _normalized_axis(h, dtype))
  return jnp.stack([gx, gy], axis=-1)


def homography_grid(h: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """Sampling grid ``[B, H, W, 2]`` (normalised x, y) of output→input homographies ``h[B, 3, 3]``.

  Degenerate warps: where the projective denominator ``w = h20·x + h21·y + h22`` falls to or below
  ``1e-3`` (the horizon of the homography crosses the output, or the point lies behind it), ``w`` is
  clamped to ``1e-3``. Those points land far outside the input and read the padding value, the
  result stays finite, and gradients through clamped points are zero instead of NaN/Inf.
  """
  x, y, dx, dy = _homography_displacement(h, out_hw)
  return jnp.stack([x + dx, y + dy], axis=-1)


def _homography_displacement(h: jax.Array, out_hw: tuple[int, int]):
  """Output coordinates ``x, y`` (``[1, 1, W]``, ``[1, H, 1]``) and displacements ``[B, H, W]``.

  ``H p - p`` is computed from ``H - I`` so that the identity gives exactly zero displacement and
  pure translations exactly their offset; `warp` relies on this to copy pixels bit-exactly. Written
  as broadcasts of ``[B, 1, 1]`` entries rather than an einsum: the gradient then reduces over major
  axes only, which XLA's CPU backend does quickly.
  """
  if h.ndim != 3 or h.shape[1:] != (3, 3):
    raise ValueError(f"homographies must be [B, 3, 3], got shape {h.shape}")
  dtype = _compute_dtype(h.dtype)
  h = h.astype(dtype)
  rows, cols = out_hw
  x = _normalized_axis(cols, dtype)[None, None, :]
  y = _normalized_axis(rows, dtype)[None, :, None]
  e = lambda i, j: h[:, i, j, None, None]
  denom_minus_one = e(2, 0) * x + e(2, 1) * y + (e(2, 2) - 1.0)
  denom = jnp.maximum(denom_minus_one + 1.0, _MIN_DENOMINATOR)
  dx = ((e(0, 0) - 1.0) * x + e(0, 1) * y + e(0, 2) - x * denom_minus_one) / denom
  dy = (e(1, 0) * x + (e(1, 1) - 1.0) * y + e(1, 2) - y * denom_minus_one) / denom
  return x, y, dx, dy


def _normalized_axis(n: int, dtype) -> jax.Array:
  """``n`` pixel centres in normalised units, ``2i / (n - 1) - 1``."""
  if n < 2:
    raise ValueError(f"normalised coordinates need at least 2 pixels along each axis, got {n}")
  return jnp.arange(n, dtype=dtype) * (2.0 / (n - 1)) - 1.0


# --------------------------------------------------------------------------------------------------
# Thin-plate splines.


def tps_control_points(control_hw: tuple[int, int]) -> np.ndarray:
  """``[K, 2]`` normalised (x, y) control points on a uniform ``control_hw`` grid over [-1, 1]²."""
  gh, gw = control_hw
  if gh < 2 or gw < 2:
    raise ValueError(f"a TPS control grid needs at least 2×2 points, got {control_hw}")
  xs, ys = np.meshgrid(np.linspace(-1.0, 1.0, gw), np.linspace(-1.0, 1.0, gh))
  return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def _tps_radial(sq_dist):
  """TPS kernel ``U(r) = r² log r²`` with ``U(0) = 0``."""
  return np.where(sq_dist > 0, sq_dist * np.log(np.maximum(sq_dist, 1e-300)), 0.0)


@functools.lru_cache(maxsize=32)
def _tps_basis(control_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
  """``[H*W, K]`` matrix mapping control-point offsets to per-pixel offsets (float64, cached).

  The TPS interpolating offsets ``d_k`` at control points ``c_k`` is
  ``f(p) = a0 + a1 x + a2 y + Σ_k w_k U(|p - c_k|)`` with ``[w; a] = L⁻¹ [d; 0]`` and
  ``L = [[U(|c_i - c_j|), P], [Pᵀ, 0]]``. Only the first K columns of ``L⁻¹`` matter, and the
  whole map is linear in ``d``, so it folds into a single matrix.
  """
  ctrl = tps_control_points(control_hw)
  k = ctrl.shape[0]
  p_ctrl = np.concatenate([np.ones((k, 1)), ctrl], axis=1)
  sq = ((ctrl[:, None, :] - ctrl[None, :, :]) ** 2).sum(-1)
  system = np.zeros((k + 3, k + 3))
  system[:k, :k] = _tps_radial(sq)
  system[:k, k:] = p_ctrl
  system[k:, :k] = p_ctrl.T
  coeffs = np.linalg.inv(system)[:, :k]  # [K+3, K]
  pts = np.asarray(identity_grid(out_hw, jnp.float32), np.float64).reshape(-1, 2)
  sq_pts = ((pts[:, None, :] - ctrl[None, :, :]) ** 2).sum(-1)
  features = np.concatenate([_tps_radial(sq_pts), np.ones((pts.shape[0], 1)), pts], axis=1)
  return features @ coeffs


def tps_grid(control_offsets: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """Thin-plate-spline sampling grid ``[B, H, W, 2]``.

  The control points are fixed on a uniform grid over [-1, 1]² whose shape is that of
  ``control_offsets``: control point ``(i, j)`` of the output samples the input at its own
  position plus ``control_offsets[:, i, j]`` (normalised x, y). Between control points the offsets
  follow the thin-plate spline (Bookstein 1989). Zero offsets give exactly the identity grid.

  Args:
    control_offsets: ``[B, gh, gw, 2]`` offsets, ``gh, gw >= 2``.
    out_hw: ``(H, W)`` of the output grid.
  """
  b, gh, gw, two = control_offsets.shape
  if two != 2:
    raise ValueError(f"TPS control offsets need a last axis of 2, got shape {control_offsets.shape}")
  dtype = _compute_dtype(control_offsets.dtype)
  basis = jnp.asarray(_tps_basis((gh, gw), tuple(out_hw)), dtype)
  offsets = jnp.einsum("pk,bkc->bpc", basis, control_offsets.reshape(b, gh * gw, 2).astype(dtype))
  return identity_grid(out_hw, dtype)[None] + offsets.reshape(b, *out_hw, 2)


# --------------------------------------------------------------------------------------------------
# Sampling.


def warp_grid(images: jax.Array, grid: jax.Array, padding: Padding = "zeros") -> jax.Array:
  """Bilinear sampling of ``images[B, H, W, C]`` at ``grid[B, Ho, Wo, 2]`` (normalised x, y).

  Differentiable with respect to both images and grid (reverse mode: ``grad``, ``vjp``; the
  hand-written backward pass is what makes it fast, and forward-mode ``jvp`` is not defined).
  Interpolation weights and coordinates are computed in at least float32; the result has the
  dtype of ``images``.

  Args:
    images: ``[B, H, W, C]``, ``H, W >= 2``.
    grid: ``[B, Ho, Wo, 2]`` input coordinates of each output pixel.
    padding: ``"zeros"`` (outside the input reads 0, bilinearly blended at the border, as
      PyTorch's ``grid_sample``) or ``"border"`` (coordinates clamp to the edge pixels).

  Returns:
    ``[B, Ho, Wo, C]``.
  """
  if grid.ndim != 4 or grid.shape[-1] != 2:
    raise ValueError(f"warp_grid needs a grid [B, Ho, Wo, 2], got shape {grid.shape}")
  if images.ndim != 4:
    raise ValueError(f"warp_grid needs images [B, H, W, C], got shape {images.shape}")
  dtype = _compute_dtype(jnp.promote_types(images.dtype, grid.dtype))
  grid = grid.astype(dtype)
  identity = identity_grid(grid.shape[1:3], dtype)
  u, v = _pixel_coordinates(grid[..., 0] - identity[..., 0], grid[..., 1] - identity[..., 1], images.shape[1:3], dtype)
  return _bilinear_sample(images, u, v, padding)


def warp(
  images: jax.Array,
  h: jax.Array,
  out_hw: tuple[int, int] | None = None,
  padding: Padding = "zeros",
) -> jax.Array:
  """Warps ``images[B, H, W, C]`` by output→input homographies ``h[B, 3, 3]`` (normalised coords).

  ``warp(img, H)[p] = img[H p]``: use ``homography_from_params(p)`` for the sl(3) parameters the
  spatial transformer predicts, or any 3×3 matrix (affine maps included). Bilinear interpolation,
  differentiable (reverse mode) with respect to images and ``h``, usable under jit/vmap/grad and in
  bfloat16 (coordinates are computed in float32). Degenerate homographies stay finite: see
  `homography_grid`.

  Args:
    images: ``[B, H, W, C]``; RGB and mask channels are warped together.
    h: ``[B, 3, 3]``.
    out_hw: output ``(H, W)``; defaults to the input size.
    padding: ``"zeros"`` or ``"border"`` (see `warp_grid`).
  """
  if images.ndim != 4:
    raise ValueError(f"warp needs images [B, H, W, C], got shape {images.shape}")
  in_h, in_w = images.shape[1:3]
  out_h, out_w = (in_h, in_w) if out_hw is None else tuple(out_hw)
  h = h.astype(_compute_dtype(jnp.promote_types(images.dtype, h.dtype)))
  _, _, dx, dy = _homography_displacement(h, (out_h, out_w))
  u, v = _pixel_coordinates(dx, dy, (in_h, in_w), h.dtype)
  return _bilinear_sample(images, u, v, padding)


def _pixel_coordinates(dx: jax.Array, dy: jax.Array, in_hw: tuple[int, int], dtype) -> tuple[jax.Array, jax.Array]:
  """Input pixel coordinates from normalised displacements ``[B, Ho, Wo]`` of the output grid.

  Computed as an exact base grid (output pixel ``i`` sits at input pixel ``i (W-1)/(Wo-1)``) plus
  the scaled displacement, so a zero displacement of an equal-size grid reads every pixel at an
  exact integer position and copies it bit for bit.
  """
  in_h, in_w = in_hw
  out_h, out_w = dx.shape[1:3]
  base_u = jnp.arange(out_w, dtype=dtype) * ((in_w - 1) / (out_w - 1))
  base_v = jnp.arange(out_h, dtype=dtype) * ((in_h - 1) / (out_h - 1))
  return base_u[None, None, :] + dx * ((in_w - 1) / 2.0), base_v[None, :, None] + dy * ((in_h - 1) / 2.0)


def _bilinear_sample(images: jax.Array, u: jax.Array, v: jax.Array, padding: Padding) -> jax.Array:
  """Samples at pixel coordinates ``u`` (column), ``v`` (row), each ``[B, Ho, Wo]``."""
  if images.ndim != 4 or u.ndim != 3 or u.shape != v.shape or u.shape[0] != images.shape[0]:
    raise ValueError(
      f"sampling needs images [B, H, W, C] and coordinates [B, Ho, Wo] for the same B; got {images.shape} and {u.shape}"
    )
  if images.shape[1] < 2 or images.shape[2] < 2:
    raise ValueError(f"sampling needs images of at least 2×2 pixels, got {images.shape[1:3]}")
  if padding not in ("zeros", "border"):
    raise ValueError(f"padding must be 'zeros' or 'border', got {padding!r}")
  dtype = _compute_dtype(jnp.promote_types(images.dtype, u.dtype))
  return _sample(images, u.astype(dtype), v.astype(dtype), padding)


class _Taps(NamedTuple):
  """Where each output pixel reads: its top-left flat row index, fractions, and clip masks."""

  top_left: jax.Array  # [B, Ho, Wo] int32 row of the top-left tap in the flattened source
  row_len: int  # flat distance between vertically adjacent taps
  fx: jax.Array  # [B, Ho, Wo] fractional x offset from the left taps
  fy: jax.Array  # [B, Ho, Wo]
  u_inside: jax.Array  # [B, Ho, Wo] 1 where u was not clipped (its gradient flows), else 0
  v_inside: jax.Array

  def rows(self) -> tuple[jax.Array, ...]:
    """Flat source rows of the four taps: top-left, top-right, bottom-left, bottom-right."""
    t = self.top_left
    return t, t + 1, t + self.row_len, t + self.row_len + 1


def _taps(shape: tuple[int, ...], u: jax.Array, v: jax.Array, padding: Padding) -> _Taps:
  b, h, w, _ = shape
  if padding == "zeros":
    # The source gets one ring of zeros. Beyond one pixel outside the image all four taps read
    # zeros, so coordinates clip there. Fractions come from unshifted coordinates (shifting first
    # would add a rounding step); only the integer tap index moves by the ring.
    lo_u, hi_u, lo_v, hi_v, shift, row_len, rows_per_img = -1.0, float(w), -1.0, float(h), 1, w + 2, h + 2
    max_u, max_v = w - 1, h - 1  # last top-left tap that keeps the 2×2 window inside the ring
  else:
    lo_u, hi_u, lo_v, hi_v, shift, row_len, rows_per_img = 0.0, float(w - 1), 0.0, float(h - 1), 0, w, h
    max_u, max_v = w - 2, h - 2
  u_inside = ((u >= lo_u) & (u <= hi_u)).astype(u.dtype)
  v_inside = ((v >= lo_v) & (v <= hi_v)).astype(v.dtype)
  u = jnp.clip(u, lo_u, hi_u)
  v = jnp.clip(v, lo_v, hi_v)
  u0 = jnp.minimum(jnp.floor(u), max_u)
  v0 = jnp.minimum(jnp.floor(v), max_v)
  image_start = (jnp.arange(b, dtype=jnp.int32) * (rows_per_img * row_len))[:, None, None]
  top_left = image_start + (v0.astype(jnp.int32) + shift) * row_len + (u0.astype(jnp.int32) + shift)
  return _Taps(top_left, row_len, u - u0, v - v0, u_inside, v_inside)


def _source_rows(images: jax.Array, padding: Padding) -> jax.Array:
  if padding == "zeros":
    images = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return images.reshape(-1, images.shape[-1])


def _gather_taps(images: jax.Array, taps: _Taps, padding: Padding, dtype) -> list[jax.Array]:
  """The four ``[B, Ho, Wo, C]`` tap values.

  Four gathers of whole pixels (C values each), kept in the natural layout: XLA's CPU backend is
  several times slower on a stacked ``[..., 4, C]`` layout, whose minor axes are tiny.
  """
  source = _source_rows(images, padding)
  return [jnp.take(source, r, axis=0, mode="clip").astype(dtype) for r in taps.rows()]


def _sum_channels(x: jax.Array) -> jax.Array:
  """Sum over the last axis, unrolled when it is short.

  XLA's CPU backend reduces a short minor axis (C = 4 here) about five times slower than it adds
  the four slices; long axes use the ordinary reduction.
  """
  if x.shape[-1] > 8:
    return x.sum(-1)
  return functools.reduce(jnp.add, [x[..., c] for c in range(x.shape[-1])])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _sample(images: jax.Array, u: jax.Array, v: jax.Array, padding: Padding) -> jax.Array:
  return _sample_fwd(images, u, v, padding)[0]


def _sample_fwd(images, u, v, padding):
  taps = _taps(images.shape, u, v, padding)
  p00, p01, p10, p11 = _gather_taps(images, taps, padding, u.dtype)
  fx, fy = taps.fx[..., None], taps.fy[..., None]
  top = p00 + fx * (p01 - p00)
  bottom = p10 + fx * (p11 - p10)
  out = (top + fy * (bottom - top)).astype(images.dtype)
  return out, (images, taps)


def _sample_bwd(padding, residuals, g):
  """Hand-written transpose: autodiff's version runs 1.5–2× slower on CPU (`python -m bench.bench_warp`)."""
  images, taps = residuals
  b, h, w, c = images.shape
  g = g.astype(taps.fx.dtype)
  # Re-gathering measured as fast as keeping the four [B, Ho, Wo, C] tap arrays as residuals, and
  # holds four image-sized arrays less between the passes.
  p00, p01, p10, p11 = _gather_taps(images, taps, padding, g.dtype)
  fx, fy = taps.fx[..., None], taps.fy[..., None]
  top = p00 + fx * (p01 - p00)
  bottom = p10 + fx * (p11 - p10)
  d_fx = _sum_channels(g * ((p01 - p00) + fy * ((p11 - p10) - (p01 - p00))))
  d_fy = _sum_channels(g * (bottom - top))

  weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)
  padded_hw = (h + 2, w + 2) if padding == "zeros" else (h, w)
  d_rows = jnp.zeros((b * padded_hw[0] * padded_hw[1], c), g.dtype)
  for rows, weight in zip(taps.rows(), weights):
    d_rows = d_rows.at[rows.reshape(-1)].add((weight * g).reshape(-1, c), mode="promise_in_bounds")
  d_images = d_rows.reshape(b, *padded_hw, c)
  if padding == "zeros":
    d_images = d_images[:, 1:-1, 1:-1, :]
  return d_images.astype(images.dtype), d_fx * taps.u_inside, d_fy * taps.v_inside


_sample.defvjp(_sample_fwd, _sample_bwd)
