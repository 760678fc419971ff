"""Tests for sagan_jax.geometry: exact cases, inverses, a brute-force reference and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sagan_jax import geometry


def _random_images(key, shape, smooth=False):
  """Uniform noise, or a smooth image (a few low-frequency sinusoids) for interpolation tests."""
  if not smooth:
    return jax.random.uniform(key, shape)
  b, h, w, c = shape
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30)))
  out = np.zeros(shape)
  for _ in range(3):
    fx, fy, phase = rng.uniform(0.25, 1.0), rng.uniform(0.25, 1.0), rng.uniform(0, 2 * np.pi, (b, 1, 1, c))
    out += np.sin(2 * np.pi * (fx * xx + fy * yy)[None, :, :, None] + phase) / 3
  return jnp.asarray(out, jnp.float32)


def _translation(tx, ty, batch=1, dtype=jnp.float32):
  h = jnp.eye(3, dtype=dtype).at[0, 2].set(tx).at[1, 2].set(ty)
  return jnp.broadcast_to(h, (batch, 3, 3))


def _brute_force_warp(images, h, out_hw):
  """Reference: the grid from numpy (float64) and jax.scipy.ndimage.map_coordinates per channel."""
  images = np.asarray(images, np.float64)
  h = np.asarray(h, np.float64)
  b, in_h, in_w, c = images.shape
  out_h, out_w = out_hw
  ys, xs = np.meshgrid(np.linspace(-1, 1, out_h), np.linspace(-1, 1, out_w), indexing="ij")
  pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
  results = []
  for i in range(b):
    q = pts @ h[i].T
    u = (q[..., 0] / q[..., 2] + 1) * (in_w - 1) / 2
    v = (q[..., 1] / q[..., 2] + 1) * (in_h - 1) / 2
    channels = [
      jax.scipy.ndimage.map_coordinates(
        jnp.asarray(images[i, ..., k], jnp.float32), [v, u], order=1, mode="constant", cval=0.0
      )
      for k in range(c)
    ]
    results.append(jnp.stack(channels, axis=-1))
  return jnp.stack(results)


# --------------------------------------------------------------------------------------------------
# Parameterisations.


def test_sl3_generator_layout_and_trace():
  p = jnp.arange(1.0, 9.0)
  a = geometry.sl3_generator(p)
  np.testing.assert_array_equal(a, [[1, 2, 3], [4, 5, 6], [7, 8, -6]])
  assert float(jnp.trace(a)) == 0.0


def test_homography_identity_inverse_and_determinant():
  p = 0.3 * jax.random.normal(jax.random.key(0), (16, 8))
  h = geometry.homography_from_params(p)
  h_inv = geometry.homography_from_params(-p)
  np.testing.assert_allclose(h @ h_inv, jnp.broadcast_to(jnp.eye(3), h.shape), atol=1e-5)
  np.testing.assert_allclose(h_inv, jnp.linalg.inv(h), atol=1e-5)
  np.testing.assert_allclose(jnp.linalg.det(h), 1.0, atol=1e-5)
  np.testing.assert_array_equal(
    geometry.homography_from_params(jnp.zeros((3, 8))), jnp.broadcast_to(jnp.eye(3), (3, 3, 3))
  )


def test_homography_small_parameters_are_first_order_matrix_entries():
  p = 1e-4 * jnp.arange(1.0, 9.0)
  h = geometry.homography_from_params(p)
  a = geometry.sl3_generator(p)
  # expm(A) = I + A + A²/2 + ...: the remainder is bounded by ‖A‖² (‖A‖ ≈ 1.5e-3 here).
  second_order = float(jnp.sum(a**2))
  np.testing.assert_allclose(h, jnp.eye(3) + a, atol=second_order)
  assert float(jnp.abs(h - jnp.eye(3)).max()) > 10 * second_order  # the first-order part is real


def test_homography_batch_dims_and_bfloat16_params():
  p = 0.1 * jax.random.normal(jax.random.key(1), (2, 3, 8))
  h = geometry.homography_from_params(p)
  assert h.shape == (2, 3, 3, 3) and h.dtype == jnp.float32
  h16 = geometry.homography_from_params(p.astype(jnp.bfloat16))
  assert h16.dtype == jnp.float32  # computed in float32 whatever the input dtype
  np.testing.assert_allclose(h16, h, atol=2e-2)


def test_affine_identity_inverse_and_last_row():
  p = 0.3 * jax.random.normal(jax.random.key(2), (8, 6))
  a = geometry.affine_from_params(p)
  np.testing.assert_allclose(a @ geometry.affine_from_params(-p), jnp.broadcast_to(jnp.eye(3), a.shape), atol=1e-5)
  np.testing.assert_allclose(a[:, 2], jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0]), (8, 3)), atol=1e-7)
  np.testing.assert_allclose(jnp.linalg.det(a), jnp.exp(p[:, 0] + p[:, 4]), rtol=1e-5)
  np.testing.assert_array_equal(geometry.affine_from_params(jnp.zeros((6,))), jnp.eye(3))


def test_wrong_parameter_counts_raise():
  with pytest.raises(ValueError, match="last axis of 8"):
    geometry.homography_from_params(jnp.zeros((2, 6)))
  with pytest.raises(ValueError, match="last axis of 6"):
    geometry.affine_from_params(jnp.zeros((2, 8)))


# --------------------------------------------------------------------------------------------------
# Exact warps.


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("channels", [1, 4])
def test_identity_warp_reproduces_input_exactly(padding, channels):
  images = _random_images(jax.random.key(3), (2, 17, 9, channels))
  out = geometry.warp(images, geometry.homography_from_params(jnp.zeros((2, 8))), padding=padding)
  np.testing.assert_array_equal(out, images)
  out = geometry.warp(images, geometry.affine_from_params(jnp.zeros((2, 6))), padding=padding)
  np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("shift", [(1, 0), (0, 2), (3, -2), (-4, 5)])
def test_integer_pixel_translation_shifts_exactly(shift):
  h, w = 24, 16
  tu, tv = shift
  images = _random_images(jax.random.key(4), (1, h, w, 3))
  # Output pixel (u, v) samples input pixel (u + tu, v + tv).
  hom = _translation(2 * tu / (w - 1), 2 * tv / (h - 1))
  out = geometry.warp(images, hom)
  rows = slice(max(0, -tv), h - max(0, tv))
  cols = slice(max(0, -tu), w - max(0, tu))
  src_rows = slice(rows.start + tv, rows.stop + tv)
  src_cols = slice(cols.start + tu, cols.stop + tu)
  np.testing.assert_array_equal(out[:, rows, cols], images[:, src_rows, src_cols])


def test_pixel_and_normalized_homographies_convert_both_ways():
  in_hw, out_hw = (20, 10), (8, 6)
  h_norm = geometry.homography_from_params(0.2 * jax.random.normal(jax.random.key(5), (3, 8)))
  h_pix = geometry.homography_normalized_to_pixel(h_norm, in_hw, out_hw)
  np.testing.assert_allclose(geometry.homography_pixel_to_normalized(h_pix, in_hw, out_hw), h_norm, atol=1e-5)
  # Hand-computed: a 3-pixel shift in x of a 10-pixel-wide image is 2 * 3 / 9 in normalised units.
  shift_pix = _translation(3.0, 0.0)
  np.testing.assert_allclose(geometry.homography_pixel_to_normalized(shift_pix, (20, 10))[0, 0, 2], 6 / 9, rtol=1e-6)
  # A pixel homography maps output pixel centres to the input pixels the warp reads.
  u, v = 2.0, 5.0
  q = h_pix[0] @ jnp.array([u, v, 1.0])
  grid = geometry.homography_grid(h_norm[:1], out_hw)
  np.testing.assert_allclose((grid[0, 5, 2] + 1) * (jnp.array(in_hw[::-1]) - 1) / 2, q[:2] / q[2], atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Inverses and the brute-force reference.


def test_warp_then_inverse_warp_returns_input_in_the_interior():
  h, w = 64, 32
  images = _random_images(jax.random.key(6), (4, h, w, 3), smooth=True)
  p = 0.08 * jax.random.normal(jax.random.key(7), (4, 8))
  there = geometry.warp(images, geometry.homography_from_params(p))
  back = geometry.warp(there, geometry.homography_from_params(-p))
  # Where the round trip never left the image, an all-ones image comes back as ones exactly enough.
  ones = jnp.ones((4, h, w, 1))
  round_trip_ones = geometry.warp(
    geometry.warp(ones, geometry.homography_from_params(p)), geometry.homography_from_params(-p)
  )
  valid = jnp.abs(round_trip_ones - 1.0) < 1e-5
  assert float(valid.mean()) > 0.5
  # Two bilinear resamplings blur by about f''·t(1-t)/2 per axis and pass; on this image (|f''| up to
  # ~0.01 per pixel²) that stays under 1.5% of the [-1, 1] range, 0.3% on average (measured 0.96%
  # and 0.21%).
  err = jnp.where(valid, jnp.abs(back - images), 0.0)
  assert float(err.max()) < 0.015, float(err.max())
  assert float(err.sum() / valid.sum() / 3) < 0.003
  # ... while the forward warp alone really moved the image.
  assert float(jnp.where(valid, jnp.abs(there - images), 0.0).mean()) > 0.05


@pytest.mark.parametrize("out_hw", [(32, 16), (20, 28)])
def test_warp_agrees_with_map_coordinates_on_random_homographies(out_hw):
  images = _random_images(jax.random.key(8), (6, 32, 16, 4), smooth=True)
  h = geometry.homography_from_params(0.25 * jax.random.normal(jax.random.key(9), (6, 8)))
  ours = geometry.warp(images, h, out_hw=out_hw)
  ref = _brute_force_warp(images, h, out_hw)
  assert float(jnp.abs(ref).max()) > 0.1  # the comparison covers real content, not padding only
  np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_warp_agrees_with_map_coordinates_in_float64_on_noise():
  with jax.enable_x64(True):
    images = jax.random.uniform(jax.random.key(10), (3, 12, 9, 2), dtype=jnp.float64)
    h = geometry.homography_from_params(0.3 * jax.random.normal(jax.random.key(11), (3, 8), dtype=jnp.float64))
    ours = geometry.warp(images, h)
    assert ours.dtype == jnp.float64
    b, hh, ww, c = images.shape
    grid = geometry.homography_grid(h, (hh, ww))
    u = (grid[..., 0] + 1) * (ww - 1) / 2
    v = (grid[..., 1] + 1) * (hh - 1) / 2
    ref = jnp.stack(
      [
        jnp.stack(
          [
            jax.scipy.ndimage.map_coordinates(images[i, ..., k], [v[i], u[i]], order=1, mode="constant")
            for k in range(c)
          ],
          -1,
        )
        for i in range(b)
      ]
    )
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_warp_grid_matches_warp_for_homography_grids():
  images = _random_images(jax.random.key(12), (2, 16, 12, 3), smooth=True)
  h = geometry.homography_from_params(0.2 * jax.random.normal(jax.random.key(13), (2, 8)))
  np.testing.assert_allclose(
    geometry.warp_grid(images, geometry.homography_grid(h, (16, 12))), geometry.warp(images, h), atol=1e-5
  )


# --------------------------------------------------------------------------------------------------
# Padding, dtypes, degenerate warps.


def test_padding_modes_half_a_pixel_outside():
  # A 2×3 image with columns 1, 2, 3; sample half a pixel left of column 0 and right of column 2.
  images = jnp.tile(jnp.array([1.0, 2.0, 3.0])[None, None, :, None], (1, 2, 1, 1))
  half_pixel = 2 * 0.5 / 2  # normalised size of half a pixel when W = 3
  for tx, zeros_expect, border_expect in [
    (-half_pixel, [0.5, 1.5, 2.5], [1.0, 1.5, 2.5]),
    (half_pixel, [1.5, 2.5, 1.5], [1.5, 2.5, 3.0]),
  ]:
    for padding, expect in [("zeros", zeros_expect), ("border", border_expect)]:
      out = geometry.warp(images, _translation(tx, 0.0), padding=padding)
      np.testing.assert_allclose(out[0, 0, :, 0], expect, atol=1e-6, err_msg=f"{padding} tx={tx}")


def test_far_outside_reads_zeros_or_border():
  images = _random_images(jax.random.key(14), (1, 8, 8, 2))
  far = _translation(5.0, 0.0)
  np.testing.assert_array_equal(geometry.warp(images, far, padding="zeros"), jnp.zeros_like(images))
  border = geometry.warp(images, far, padding="border")
  np.testing.assert_array_equal(border, jnp.broadcast_to(images[:, :, -1:, :], images.shape))


def test_bfloat16_runs_and_stays_close_to_float32():
  images = _random_images(jax.random.key(15), (2, 32, 16, 4), smooth=True)
  h = geometry.homography_from_params(0.2 * jax.random.normal(jax.random.key(16), (2, 8)))
  f32 = geometry.warp(images, h)
  # Mixed precision (bfloat16 images, float32 matrices): bfloat16 keeps 8 significant bits, about
  # 0.4% of the [-1, 1] range.
  b16 = jax.jit(geometry.warp)(images.astype(jnp.bfloat16), h)
  assert b16.dtype == jnp.bfloat16
  np.testing.assert_allclose(b16.astype(jnp.float32), f32, atol=1e-2)
  # All bfloat16: the rounded matrix also moves coordinates by up to ~0.1 pixel, which matters only
  # at the sharp zero-padding edge; on average the result stays within bfloat16 resolution.
  all_b16 = jax.jit(geometry.warp)(images.astype(jnp.bfloat16), h.astype(jnp.bfloat16))
  assert all_b16.dtype == jnp.bfloat16
  assert float(jnp.abs(all_b16.astype(jnp.float32) - f32).mean()) < 4e-3
  grads = jax.grad(lambda i: geometry.warp(i, h.astype(jnp.bfloat16)).astype(jnp.float32).sum())(
    images.astype(jnp.bfloat16)
  )
  assert grads.dtype == jnp.bfloat16 and bool(jnp.isfinite(grads.astype(jnp.float32)).all())


def test_degenerate_homography_stays_finite_with_finite_gradients():
  # The horizon w = 0 crosses the middle of the output: half the points lie "behind the camera".
  h = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
  images = _random_images(jax.random.key(17), (1, 16, 16, 3))
  out = geometry.warp(images, h)
  assert bool(jnp.isfinite(out).all())

  def loss(images, h):
    return jnp.sum(geometry.warp(images, h) ** 2)

  g_img, g_h = jax.grad(loss, argnums=(0, 1))(images, h)
  assert bool(jnp.isfinite(g_img).all()) and bool(jnp.isfinite(g_h).all())
  # The clamped half reads padding: the rows above the horizon (y < 0) sample far outside.
  assert float(jnp.abs(out[0, :7]).max()) == 0.0


def test_bad_arguments_raise_clear_errors():
  images = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match="padding"):
    geometry.warp(images, _translation(0.0, 0.0), padding="reflect")
  with pytest.raises(ValueError, match=r"\[B, 3, 3\]"):
    geometry.warp(images, jnp.eye(3))
  with pytest.raises(ValueError, match="grid"):
    geometry.warp_grid(images, jnp.zeros((1, 8, 8, 3)))


# --------------------------------------------------------------------------------------------------
# Transformations under jax transforms and their gradients.


def test_jit_and_vmap():
  images = _random_images(jax.random.key(18), (3, 2, 12, 10, 2))
  p = 0.1 * jax.random.normal(jax.random.key(19), (3, 2, 8))
  per_group = jax.vmap(lambda i, q: geometry.warp(i, geometry.homography_from_params(q)))
  out = jax.jit(per_group)(images, p)
  flat = geometry.warp(images.reshape(6, 12, 10, 2), geometry.homography_from_params(p.reshape(6, 8)))
  np.testing.assert_allclose(out.reshape(6, 12, 10, 2), flat, atol=1e-6)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_gradients_match_finite_differences_in_float64(padding):
  with jax.enable_x64(True):
    images = jax.random.uniform(jax.random.key(20), (2, 7, 6, 2), dtype=jnp.float64)
    p = 0.3 * jax.random.normal(jax.random.key(21), (2, 8), dtype=jnp.float64)

    def f(images, p):
      return geometry.warp(images, geometry.homography_from_params(p), padding=padding)

    check_grads(f, (images, p), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)

    grid = geometry.homography_grid(geometry.homography_from_params(p), (5, 4))
    check_grads(
      lambda i, g: geometry.warp_grid(i, g, padding=padding),
      (images, grid),
      order=1,
      modes=("rev",),
      eps=1e-6,
      atol=1e-5,
      rtol=1e-5,
    )


def test_gradient_with_respect_to_translation_is_the_image_gradient():
  # d/dt img(u + t) = img'(u): on a horizontal ramp with slope 0.1 per pixel, every interior pixel's
  # derivative with respect to a pixel translation is exactly 0.1.
  h, w = 6, 10
  ramp = jnp.tile((0.1 * jnp.arange(w, dtype=jnp.float32))[None, None, :, None], (1, h, 1, 1))
  shift = 0.25

  def interior_sum(t):
    out = geometry.warp(ramp, _translation(2 * t / (w - 1), 0.0))
    return out[0, :, 1:-2, 0].sum()

  grad = jax.grad(interior_sum)(shift)
  np.testing.assert_allclose(grad, 0.1 * h * (w - 3), rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Thin-plate splines.


def test_tps_zero_offsets_give_the_identity_grid_and_warp():
  grid = geometry.tps_grid(jnp.zeros((2, 3, 4, 2)), (16, 12))
  np.testing.assert_array_equal(grid, jnp.broadcast_to(geometry.identity_grid((16, 12)), (2, 16, 12, 2)))
  images = _random_images(jax.random.key(22), (2, 16, 12, 3))
  np.testing.assert_array_equal(geometry.warp_grid(images, grid), images)


def test_tps_interpolates_its_control_points_and_reproduces_affine_maps():
  control_hw, out_hw = (3, 3), (9, 9)  # control points fall exactly on output pixels 0, 4, 8
  offsets = 0.1 * jax.random.normal(jax.random.key(23), (1, 3, 3, 2))
  grid = geometry.tps_grid(offsets, out_hw)
  ctrl = geometry.tps_control_points(control_hw).reshape(3, 3, 2)
  np.testing.assert_allclose(grid[0, ::4, ::4], ctrl + offsets[0], atol=1e-5)

  # Offsets that follow an affine map give exactly that affine map everywhere.
  a = np.array([[0.1, -0.05, 0.02], [0.03, 0.08, -0.04]])
  affine_offsets = ctrl @ a[:, :2].T + a[:, 2]
  grid = geometry.tps_grid(jnp.asarray(affine_offsets[None], jnp.float32), out_hw)
  base = np.asarray(geometry.identity_grid(out_hw))
  np.testing.assert_allclose(grid[0], base + base @ a[:, :2].T + a[:, 2], atol=1e-5)


def test_tps_is_differentiable_through_the_warp():
  images = _random_images(jax.random.key(24), (1, 12, 10, 2), smooth=True)
  offsets = 0.05 * jax.random.normal(jax.random.key(25), (1, 2, 3, 2))
  g = jax.grad(lambda o: jnp.sum(geometry.warp_grid(images, geometry.tps_grid(o, (12, 10))) ** 2))(offsets)
  assert g.shape == offsets.shape and float(jnp.abs(g).sum()) > 0
