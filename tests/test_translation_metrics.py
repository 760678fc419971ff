"""The translation report's measures, by hand and against brute-force references."""

import numpy as np
import pytest
import scipy.linalg

from sagan_jax import translation_metrics as tm


def test_frechet_distance_is_zero_for_identical_sets_and_agrees_with_a_brute_force_square_root():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
  assert tm.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
  shift = np.array([1.0, 2.0, 0, 0, 0, -2.0])
  assert tm.frechet_distance(a, a + shift) == pytest.approx(9.0)  # equal covariances: ‖Δμ‖²
  b = rng.normal(size=(300, 6)) * np.array([1, 2, 3, 1, 1, 0.5]) + 1.0
  ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  reference = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
  assert tm.frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
  with pytest.raises(ValueError, match="feature sets"):
    tm.frechet_distance(a, b[:, :5])


def test_an_identity_translation_keeps_every_identity_and_a_scrambled_one_does_not():
  rng = np.random.default_rng(1)
  gallery = rng.normal(size=(50, 16))
  ids = np.arange(50) // 2  # two images per person
  assert tm.identity_rank1(gallery, ids, gallery, ids) == 1.0
  slightly = gallery + 0.01 * rng.normal(size=gallery.shape)
  assert tm.identity_rank1(slightly, ids, gallery, ids) == 1.0
  assert tm.identity_rank1(gallery[::-1], ids, gallery, ids) == pytest.approx(2 / 50)  # only the middle pair
  # By hand: queries 0 and 1 are nearest to gallery rows of their own id, query 2 to another's.
  q = np.array([[0.0, 0.1], [5.0, 4.9], [0.2, 0.0]])
  g = np.array([[0.0, 0.0], [5.0, 5.0]])
  assert tm.identity_rank1(q, np.array([7, 8, 8]), g, np.array([7, 8])) == pytest.approx(2 / 3)


def test_leaving_the_own_image_out_asks_for_another_photograph_of_the_person():
  # By hand: person 7 has gallery rows 0 and 2, person 8 row 1 only. Query 0 is a copy of row 0:
  # without it, its nearest is row 1 (person 8) at distance 1, not row 2 at distance 3.
  g = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
  g_ids = np.array([7, 8, 7])
  q = np.array([[0.0, 0.0], [2.9, 0.0], [1.0, 0.0]])
  q_ids = np.array([7, 7, 8])
  assert tm.identity_rank1(q, q_ids, g, g_ids) == 1.0  # each finds its own copy
  # Query 2 (person 8, own row 1) has no other photograph: it does not count. Query 1 (own row 2)
  # finds row 1 (person 8) at 1.9 before row 0 at 2.9.
  assert tm.identity_rank1(q, q_ids, g, g_ids, own=np.array([0, 2, 1])) == pytest.approx(0 / 2)
  assert tm.identity_rank1(q, q_ids, g, g_ids, own=np.array([-1, 2, 1])) == pytest.approx(1 / 2)
  assert tm.identity_rank1(q[2:], q_ids[2:], g, g_ids, own=np.array([1])) is None
  # Against a brute-force loop on random data.
  rng = np.random.default_rng(3)
  g, g_ids = rng.normal(size=(40, 5)), rng.integers(0, 12, 40)
  own = rng.integers(-1, 40, 60)
  q = np.where(own[:, None] >= 0, g[own] + 0.3 * rng.normal(size=(60, 5)), rng.normal(size=(60, 5)))
  q_ids = np.where(own >= 0, g_ids[own], rng.integers(0, 12, 60))
  hits = []
  for i in range(60):
    candidates = [j for j in range(40) if j != own[i]]
    if any(g_ids[j] == q_ids[i] for j in candidates):
      nearest = min(candidates, key=lambda j: np.sum((q[i] - g[j]) ** 2))
      hits.append(g_ids[nearest] == q_ids[i])
  assert tm.identity_rank1(q, q_ids, g, g_ids, own) == pytest.approx(np.mean(hits))


def test_recolouring_rotates_the_person_and_keeps_the_background():
  from sagan_jax.experiments import report

  images = np.zeros((1, 2, 2, 3))
  images[0, :, :] = [0.1, 0.2, 0.3]
  masks = np.array([[[[1.0], [0.0]], [[0.0], [1.0]]]])
  out = report.recolour_person(images, masks)
  np.testing.assert_allclose(out[0, 0, 0], [0.2, 0.3, 0.1])  # the person: R, G, B → G, B, R
  np.testing.assert_allclose(out[0, 0, 1], [0.1, 0.2, 0.3])  # the background as it was
  np.testing.assert_allclose(out[0, 1, 1], [0.2, 0.3, 0.1])
  swapped = report.recolour_person(images, masks, (2, 1, 0))  # the bench's red-blue swap
  np.testing.assert_allclose(swapped[0, 0, 0], [0.3, 0.2, 0.1])
  np.testing.assert_allclose(swapped[0, 0, 1], [0.1, 0.2, 0.3])
  assert report.as_uint8(np.array([-1.5, 0.0, 1.0])).tolist() == [0, 128, 255]


def test_a_checkerboard_raises_the_artifact_energy():
  rng = np.random.default_rng(2)
  y, x = np.mgrid[:32, :16]
  smooth = np.stack([np.sin(y / 9.0 + k) + np.cos(x / 7.0) for k in range(20)])[..., None].repeat(3, -1)
  smooth = smooth + 0.05 * rng.normal(size=smooth.shape)
  board = ((y + x) % 2 * 2.0 - 1.0)[None, ..., None]  # period 2 along both axes: the frequency (H/2, W/2)
  assert tm.checkerboard_fraction(board[..., 0]) == pytest.approx([1.0])
  assert tm.artifact_energy(smooth, smooth) == pytest.approx(1.0)
  assert tm.artifact_energy(smooth + 0.3 * board, smooth) > 3.0
  # Rows alternating, their amplitude varying along the row: on the line (H/2, ·), not at one point.
  rows = ((y % 2) * 2.0 - 1.0) * (1 + np.sin(x / 3.0))
  assert tm.checkerboard_fraction(rows[None]) == pytest.approx([1.0])
  # A checkerboard of colours with flat luminance (red against green) counts too.
  colours = np.stack([board[0, ..., 0], -board[0, ..., 0], np.zeros((32, 16))], -1)[None]
  assert tm.checkerboard_fraction(colours) == pytest.approx([1.0])
  assert tm.artifact_energy(smooth + 0.3 * colours, smooth) > 3.0
  with pytest.raises(ValueError, match="even"):
    tm.checkerboard_fraction(np.zeros((1, 31, 16, 3)))


def test_framing_reads_area_centroid_and_spread_by_hand_and_skips_empty_masks():
  # 5×3 frames: y at −1, −0.5, 0, 0.5, 1 and x at −1, 0, 1 (normalised pixel centres).
  thin, wide, empty = np.zeros((5, 3)), np.zeros((5, 3)), np.zeros((5, 3))
  thin[1:4, 1] = 1  # three pixels down the middle column
  wide[:, :2] = 1  # the two left columns
  got = tm.framing(np.stack([thin, empty, wide])[..., None])
  thin_row = [3 / 15, 0, 0, np.sqrt((0.25 + 0 + 0.25) / 3), 0]
  wide_row = [10 / 15, 0, -0.5, np.sqrt((1 + 0.25 + 0.25 + 1) / 5), 0.5]
  expected = [thin_row, wide_row]
  np.testing.assert_allclose(got, expected, atol=1e-12)
  assert tm.FRAMING == ("area", "centre_y", "centre_x", "spread_y", "spread_x")
  with pytest.raises(ValueError, match="masks"):
    tm.framing(np.zeros((2, 1, 3)))


def test_a_warp_that_frames_the_person_as_the_target_does_closes_the_framing_gap():
  import jax.numpy as jnp

  from sagan_jax import geometry

  rng = np.random.default_rng(3)

  def people(heights, widths, centre_y):
    masks = np.zeros((len(heights), 64, 32, 1), np.float32)
    for m, h, w, c in zip(masks, heights, widths, centre_y):
      m[c - h // 2 : c + h // 2, 16 - w // 2 : 16 + w // 2] = 1
    return masks

  h, w, c = rng.integers(30, 41, 40), rng.integers(8, 13, 40), rng.integers(30, 35, 40)
  source = people(h, w, c)
  target = people((h * 1.25).astype(int) // 2 * 2, (w * 1.25).astype(int) // 2 * 2, c)  # 1.25× the size
  assert tm.framing_gap(source, source) == pytest.approx(0.0, abs=1e-9)
  raw = tm.framing_gap(source, target)
  assert raw > 0.01
  zoom = np.diag([0.8, 0.8, 1.0]).astype(np.float32)  # output→input: 1.25× about the frame's centre
  zoomed = np.asarray(geometry.warp(jnp.asarray(source), jnp.broadcast_to(zoom, (40, 3, 3))))
  assert tm.framing_gap(zoomed, target) < 0.1 * raw
  shrunk = np.asarray(geometry.warp(jnp.asarray(source), jnp.broadcast_to(np.linalg.inv(zoom), (40, 3, 3))))
  assert tm.framing_gap(shrunk, target) > raw  # the other way: further from the target's framing
  assert tm.framing_gap(source, np.zeros((3, 64, 32, 1))) is None  # no person in the target
