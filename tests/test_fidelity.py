"""Fidelity scores on hand-made cases: exact translators score 0, no translation scores 1."""

import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import fidelity, geometry


def _translation(dx, dy=0.0):
  return jnp.asarray([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]], jnp.float32)


def test_viewpoint_error_is_zero_for_the_truth_one_for_the_identity_and_linear_in_a_translation():
  truth = _translation(0.2)
  assert float(fidelity.viewpoint_error(truth, truth)) == pytest.approx(0.0, abs=1e-7)
  assert float(fidelity.viewpoint_error(jnp.eye(3), truth)) == pytest.approx(1.0, abs=1e-6)
  # Every corner moves by 0.2 under the truth and by 0.05 under a quarter of it: 0.15 / 0.2.
  assert float(fidelity.viewpoint_error(_translation(0.05), truth)) == pytest.approx(0.75, abs=1e-6)
  # The opposite shift lands 0.4 from the truth: worse than not warping.
  assert float(fidelity.viewpoint_error(_translation(-0.2), truth)) == pytest.approx(2.0, abs=1e-6)


def test_viewpoint_error_of_a_projective_truth_by_hand():
  # The synthetic benchmark's kind of homography: a vertical keystone.
  truth = jnp.asarray([[1.0, 0, 0], [0, 1.0, 0], [0, -0.3, 1.0]], jnp.float32)
  corners = np.array(fidelity.CORNERS)
  w = 1 - 0.3 * corners[:, 1]  # -0.3·y + 1
  moved = corners / w[:, None]
  reference = np.mean(np.linalg.norm(moved - corners, axis=1))
  np.testing.assert_allclose(np.asarray(fidelity.map_corners(truth)), moved, rtol=1e-6)
  assert float(fidelity.viewpoint_error(jnp.eye(3), truth)) == pytest.approx(1.0, abs=1e-6)
  half = jnp.asarray([[1.0, 0, 0], [0, 1.0, 0], [0, -0.15, 1.0]], jnp.float32)
  w_half = 1 - 0.15 * corners[:, 1]
  expected = np.mean(np.linalg.norm(corners / w_half[:, None] - moved, axis=1)) / reference
  assert float(fidelity.viewpoint_error(half, truth)) == pytest.approx(expected, rel=1e-5)
  assert 0.3 < expected < 0.7


def test_viewpoint_error_from_the_sl3_parameters_the_stm_predicts():
  # The STM predicts sl(3) parameters; exp of the log of the truth is the truth.
  p = jnp.asarray([[0.0, 0.0, 0.1, 0.0, 0.0, -0.05, 0.0, -0.2]], jnp.float32)
  truth = geometry.homography_from_params(p)[0]
  assert float(fidelity.viewpoint_error(geometry.homography_from_params(p), truth)[0]) < 1e-5
  assert float(fidelity.viewpoint_error(geometry.homography_from_params(jnp.zeros_like(p)), truth)[0]) == pytest.approx(
    1.0, abs=1e-5
  )


def test_pixel_error_is_zero_for_the_truth_one_for_the_source_and_linear_between():
  rng = np.random.default_rng(0)
  truth, source = rng.uniform(-1, 1, (2, 3, 8, 4, 3)).astype(np.float32)
  mask = (rng.uniform(size=(3, 8, 4, 1)) < 0.5).astype(np.float32)
  assert float(fidelity.pixel_error(truth, truth, source, mask)) == 0.0
  assert float(fidelity.pixel_error(source, truth, source, mask)) == pytest.approx(1.0, abs=1e-6)
  halfway = 0.5 * (truth + source)
  assert float(fidelity.pixel_error(halfway, truth, source, mask)) == pytest.approx(0.5, abs=1e-6)
  # Pixels outside the mask do not count.
  spoiled = np.where(mask > 0, truth, truth + 5.0)
  assert float(fidelity.pixel_error(spoiled, truth, source, mask)) == 0.0


def test_code_diversity_is_the_mean_pairwise_corner_distance():
  same = jnp.stack([jnp.stack([_translation(0.1)] * 3)] * 2)  # [B=2, M=3]
  assert float(fidelity.code_diversity(same)) == pytest.approx(0.0, abs=1e-7)
  spread = jnp.stack([jnp.stack([_translation(0.0), _translation(0.3), _translation(0.6)])])
  # Pairs: 0.3, 0.6, 0.3 → 0.4.
  assert float(fidelity.code_diversity(spread)) == pytest.approx(0.4, abs=1e-6)
  assert float(fidelity.code_diversity(spread[:, :1])) == 0.0


# --------------------------------------------------------------------------------------------------
# Learning, measured against the synthetic benchmark's ground truth.


# --------------------------------------------------------------------------------------------------
# Several true viewpoints.


def test_coverage_and_precision_by_hand():
  corners = jnp.asarray(fidelity.CORNERS, jnp.float32)
  shift = lambda dx: corners + jnp.asarray([dx, 0.0])
  true = jnp.stack([shift(0.0), shift(0.4)])[None]  # one image, two true views
  codes = jnp.stack([shift(0.0), shift(0.0), shift(0.1)])[:, None]  # three codes
  errors = fidelity.corner_errors(codes, true, reference=0.4)  # [M, N, K]
  np.testing.assert_allclose(np.asarray(errors[:, 0]), [[0, 1], [0, 1], [0.25, 0.75]], atol=1e-6)
  # Coverage: view 0 is hit exactly, view 1's nearest code is 0.75 away.
  assert float(fidelity.coverage_error(errors)) == pytest.approx((0 + 0.75) / 2)
  assert float(fidelity.coverage_error(errors[:1])) == pytest.approx((0 + 1) / 2)  # one code
  # Precision: every code is near some true view.
  assert float(fidelity.precision_error(errors)) == pytest.approx((0 + 0 + 0.25) / 3)
  # The best single warp sits between the two views and covers both at 0.5 each.
  best = fidelity.best_single_warp(np.asarray(true))
  single = fidelity.corner_errors(jnp.asarray(best, jnp.float32)[None], true, 0.4)
  assert float(fidelity.coverage_error(single)) == pytest.approx(0.5, abs=1e-4)


def test_geometric_median_of_three_points_by_hand():
  # Three corners of a right angle at the origin, one far away: the median stays at the right angle.
  points = np.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
  median = fidelity.geometric_median(points)
  assert np.linalg.norm(median[0] - [0.21, 0.21]) < 0.02  # the Fermat point of this triangle
  total = lambda p: np.linalg.norm(points[0] - p, axis=-1).sum()
  assert all(total(median[0]) <= total(median[0] + d) for d in 0.01 * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]]))


def test_nearest_truth_pixel_and_detail_errors():
  rng = np.random.default_rng(0)
  truths = rng.uniform(-1, 1, (3, 2, 16, 8, 3))
  masks = np.ones((3, 2, 16, 8, 1))
  source = rng.uniform(-1, 1, (3, 16, 8, 3))
  # A translation equal to one of the truths scores 0; the source itself 1.
  for k in (0, 1):
    assert fidelity.pixel_error_nearest(truths[:, k][None], truths, source, masks) == 0.0
    assert fidelity.detail_error_nearest(truths[:, k][None], truths, source, masks) == pytest.approx(0.0, abs=1e-9)
  assert fidelity.pixel_error_nearest(source[None], truths, source, masks) == pytest.approx(1.0)
  # Several codes are averaged, not summed: three copies of the source still score 1.
  assert fidelity.pixel_error_nearest(np.stack([source] * 3), truths, source, masks) == pytest.approx(1.0)
  assert fidelity.detail_error_nearest(np.stack([source] * 3), truths, source, masks) == pytest.approx(1.0)
  assert fidelity.detail_error_nearest(source[None], truths, source, masks) == pytest.approx(1.0)
  # The nearest truth is taken per translation: halfway to truth 0 scores half of the source's distance to it.
  halfway = (source + truths[:, 0]) / 2
  source_nearest = sum(min(np.abs(source[n] - truths[n, k]).sum() for k in range(2)) for n in range(3))
  expected = sum(min(np.abs(halfway[n] - truths[n, k]).sum() for k in range(2)) for n in range(3)) / source_nearest
  assert fidelity.pixel_error_nearest(halfway[None], truths, source, masks) == pytest.approx(expected, rel=1e-6)
  # SSIM: identical images 1; a flat image of the right mean colour loses the structure.
  assert np.allclose(fidelity.ssim_map(source, source), 1.0)
  flat = np.broadcast_to(truths[:, 0].mean(axis=(1, 2), keepdims=True), truths[:, 0].shape)
  assert fidelity.detail_error_nearest(flat[None], truths[:, :1], source, masks[:, :1]) > 0.8


def test_weighted_ssim_agrees_with_a_window_by_window_brute_force():
  rng = np.random.default_rng(1)
  a, b = rng.uniform(-1, 1, (2, 12, 10, 3))
  weights = (rng.uniform(size=(12, 10)) > 0.4).astype(np.float64)
  got = fidelity.ssim_map(a, b, weights)
  # All-ones weights are the plain SSIM.
  np.testing.assert_allclose(fidelity.ssim_map(a, b, np.ones((12, 10))), fidelity.ssim_map(a, b), atol=1e-12)
  x, y = (a.mean(-1) + 1) / 2, (b.mean(-1) + 1) / 2
  g = fidelity._gaussian_window()
  window = np.outer(g, g)
  for i, j in [(5, 4), (6, 6), (3, 5)]:  # interior pixels: the 7×7 window needs no reflection
    w = window * weights[i - 3 : i + 4, j - 3 : j + 4]
    w = w / w.sum()
    px, py = x[i - 3 : i + 4, j - 3 : j + 4], y[i - 3 : i + 4, j - 3 : j + 4]
    mx, my = (w * px).sum(), (w * py).sum()
    vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
    cxy = (w * (px - mx) * (py - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert got[i, j] == pytest.approx(expected, rel=1e-9)


def test_detail_error_reads_the_person_not_the_scene_beside_it():
  rng = np.random.default_rng(2)
  n, h, w = 4, 24, 12
  truths = rng.uniform(-1, 1, (n, 1, h, w, 3))
  masks = np.zeros((n, 1, h, w, 1))
  masks[:, :, 6:18, 3:9] = 1.0  # a 12×6 person in each frame
  source = rng.uniform(-1, 1, (n, h, w, 3))
  person = masks[:, 0]
  # The true person on another scene: exact where it is scored, whatever the background.
  for background in (rng.uniform(-1, 1, (n, h, w, 3)), np.zeros((n, h, w, 3)), source):
    moved = person * truths[:, 0] + (1 - person) * background
    assert fidelity.detail_error_nearest(moved[None], truths, source, masks) == pytest.approx(0.0, abs=1e-9)
    # The unweighted windows straddle the outline and read the changed scene.
    plain = np.sum((1 - fidelity.ssim_map(moved, truths[:, 0])) * person[..., 0])
    assert plain > 0.05 * np.sum((1 - fidelity.ssim_map(source, truths[:, 0])) * person[..., 0])
  # Detail on the person still counts: the true person blurred inside its own outline.
  blurred = truths[:, 0].copy()
  inner = truths[:, 0, 6:18, 3:9]
  blurred[:, 6:18, 3:9] = (inner + np.roll(inner, 1, axis=1) + np.roll(inner, 1, axis=2)) / 3
  assert fidelity.detail_error_nearest(blurred[None], truths, source, masks) > 0.2
  # The person shifted by two pixels: the truth's person pixels now show the other scene.
  shifted = np.roll(truths[:, 0], 2, axis=2)
  assert fidelity.detail_error_nearest(shifted[None], truths, source, masks) > 0.5
