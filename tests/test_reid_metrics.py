"""CMC / mAP: hand-computed cases and agreement with a brute-force per-query reference."""

import numpy as np
import pytest

from sagan_jax.reid import metrics


def brute_force(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
  """Sorts every query's gallery (stable), drops junk, and walks it like the Market Matlab code."""
  cmc_sum, step_aps, trap_aps = np.zeros(max_rank), [], []
  for i in range(len(q_pids)):
    order = np.argsort(distmat[i], kind="stable")
    junk = (g_pids[order] == -1) | ((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
    order = order[~junk]
    matches = (g_pids[order] == q_pids[i]) & (g_cams[order] != q_cams[i])
    if not matches.any():
      continue
    first = int(np.argmax(matches))
    if first < max_rank:
      cmc_sum[first:] += 1
    hits, precisions = 0, []
    old_recall, old_precision, trap = 0.0, 1.0, 0.0
    for n, is_hit in enumerate(matches, start=1):
      hits += int(is_hit)
      if is_hit:
        precisions.append(hits / n)
      recall, precision = hits / matches.sum(), hits / n
      trap += (recall - old_recall) * (old_precision + precision) / 2
      old_recall, old_precision = recall, precision
      if hits == matches.sum():
        break
    step_aps.append(np.mean(precisions))
    trap_aps.append(trap)
  return cmc_sum / len(step_aps), np.mean(step_aps), np.mean(trap_aps)


def test_hand_computed_case_with_junk_distractor_and_unmatched_query():
  #            good  junk  neg  junk(-1) good  distractor
  g_pids = np.array([1, 1, 2, -1, 1, 0])
  g_cams = np.array([2, 1, 2, 2, 3, 1])
  distmat = np.array(
    [
      [0.5, 0.1, 0.3, 0.05, 0.9, 0.2],  # pid 1 cam 1: valid order 5, 2, 0, 4 → good ranks 2, 3
      [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # pid 2 cam 2: its only match is same-camera junk → skipped
    ]
  )
  q_pids, q_cams = np.array([1, 2]), np.array([1, 2])
  cmc, step_ap, details = metrics.evaluate_rank(
    distmat, q_pids, g_pids, q_cams, g_cams, max_rank=5, return_details=True
  )
  np.testing.assert_allclose(cmc, [0, 0, 1, 1, 1])
  assert step_ap == pytest.approx((1 / 3 + 2 / 4) / 2)
  assert details["num_queries"] == 1 and details["num_skipped"] == 1
  _, trap_ap = metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=5, ap_mode="trapezoid")
  # Recall 0 → ½ at position 3 (precision 0/2 → 1/3), ½ → 1 at position 4 (1/3 → 2/4).
  assert trap_ap == pytest.approx(0.5 * (0 + 1 / 3) / 2 + 0.5 * (1 / 3 + 1 / 2) / 2) == pytest.approx(7 / 24)


def test_ties_are_broken_by_gallery_index():
  g_pids, g_cams = np.array([5, 7, 7]), np.array([1, 2, 2])
  q = (np.array([7]), np.array([1]))
  cmc, ap = metrics.evaluate_rank(np.array([[0.4, 0.4, 0.4]]), q[0], g_pids, q[1], g_cams, max_rank=3)
  np.testing.assert_allclose(cmc, [0, 1, 1])  # the negative (index 0) comes first
  assert ap == pytest.approx((1 / 2 + 2 / 3) / 2)
  # The same negative at the end of the gallery ranks after both tied good matches.
  cmc, ap = metrics.evaluate_rank(
    np.array([[0.4, 0.4, 0.4]]), q[0], np.array([7, 7, 5]), q[1], np.array([2, 2, 1]), max_rank=3
  )
  np.testing.assert_allclose(cmc, [1, 1, 1])
  assert ap == pytest.approx(1.0)


def test_a_perfect_ranking_scores_one_in_both_modes():
  g_pids, g_cams = np.array([3, 3, 4, 0]), np.array([2, 3, 1, 1])
  distmat = np.array([[0.1, 0.2, 0.3, 0.4]])
  for mode in metrics.AP_MODES:
    cmc, ap = metrics.evaluate_rank(distmat, np.array([3]), g_pids, np.array([1]), g_cams, max_rank=4, ap_mode=mode)
    np.testing.assert_allclose(cmc, 1.0)
    assert ap == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_brute_force_reference(seed):
  rng = np.random.default_rng(seed)
  num_q, num_g = 60, 400
  g_pids = rng.integers(-1, 25, num_g)  # -1 junk boxes and 0 distractors included
  g_cams = rng.integers(1, 5, num_g)
  q_pids = rng.integers(1, 25, num_q)
  q_cams = rng.integers(1, 5, num_q)
  # Quantised distances make exact ties frequent, the hard case for the fast path.
  distmat = np.round(rng.random((num_q, num_g)) * 40).astype(np.float32)
  cmc, step_ap, details = metrics.evaluate_rank(
    distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, return_details=True
  )
  _, trap_ap = metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, ap_mode="trapezoid")
  ref_cmc, ref_step, ref_trap = brute_force(distmat, q_pids, g_pids, q_cams, g_cams, 20)
  np.testing.assert_allclose(cmc, ref_cmc, atol=1e-12)
  assert step_ap == pytest.approx(ref_step, abs=1e-12)
  assert trap_ap == pytest.approx(ref_trap, abs=1e-12)
  assert step_ap != pytest.approx(trap_ap, abs=1e-4)  # the two conventions really differ
  assert details["num_queries"] + details["num_skipped"] == num_q


def random_labels(rng, num_q, num_g):
  """Junk boxes (-1), distractors (0), and query ids missing from the gallery (skipped queries)."""
  return rng.integers(1, 22, num_q), rng.integers(-1, 20, num_g), rng.integers(1, 5, num_q), rng.integers(1, 5, num_g)


def test_good_match_indices_against_a_per_query_scan():
  rng = np.random.default_rng(0)
  q_pids, g_pids, q_cams, g_cams = random_labels(rng, 40, 250)
  good = metrics.good_match_indices(q_pids, g_pids, q_cams, g_cams)
  expected = [np.flatnonzero((g_pids == q_pids[i]) & (g_cams != q_cams[i])) for i in range(40)]
  most = max(len(e) for e in expected)
  assert good.shape == (40, 1 << (most - 1).bit_length()) and good.shape[1] >= most
  for row, e in zip(good, expected):
    np.testing.assert_array_equal(row[: len(e)], e)
    assert np.all(row[len(e) :] == -1)
  assert metrics.good_match_indices(q_pids, g_pids[:0], q_cams, g_cams[:0]).shape == (40, 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_jax_backend_gives_the_numpy_scores_with_ties_and_in_blocks(seed):
  rng = np.random.default_rng(seed)
  num_q, num_g = 45, 300
  _q_pids, _g_pids, _q_cams, _g_cams = labels = random_labels(rng, num_q, num_g)
  # Small integer features: every distance is an integer that float32 holds exactly whatever the
  # order of the sums, so both backends see the same distances, with many exact ties.
  qf = rng.integers(-2, 3, (num_q, 5)).astype(np.float32)
  gf = rng.integers(-2, 3, (num_g, 5)).astype(np.float32)
  distmat = metrics.squared_euclidean(qf, gf)
  assert len(np.unique(distmat)) < 100  # 13,500 distances, so ties are the rule
  ref_cmc, ref_step, ref_trap = brute_force(distmat, *labels, 20)
  for mode, ref_ap in (("step", ref_step), ("trapezoid", ref_trap)):
    cmc, ap, details = metrics.evaluate_rank(distmat, *labels, max_rank=20, ap_mode=mode, return_details=True)
    assert details["num_skipped"] > 0
    for block_size in (None, 7):  # one block; seven, the last one padded
      got_cmc, got_ap, got = metrics.evaluate_features(
        qf, gf, *labels, max_rank=20, ap_mode=mode, return_details=True, backend="jax", block_size=block_size
      )
      np.testing.assert_array_equal(got_cmc, cmc)
      np.testing.assert_allclose(got_cmc, ref_cmc, atol=1e-12)
      assert got_ap == ap == pytest.approx(ref_ap, abs=1e-12)
      assert (got["num_queries"], got["num_skipped"]) == (details["num_queries"], details["num_skipped"])
      np.testing.assert_array_equal(got["ap"], details["ap"])
      np.testing.assert_array_equal(got["first_rank"], details["first_rank"])


def test_backends_agree_on_float_features_and_reject_bad_input():
  rng = np.random.default_rng(3)
  labels = random_labels(rng, 30, 200)
  qf, gf = rng.standard_normal((30, 64)).astype(np.float32), rng.standard_normal((200, 64)).astype(np.float32)
  numpy_cmc, numpy_ap = metrics.evaluate_features(qf, gf, *labels, backend="numpy")
  jax_cmc, jax_ap = metrics.evaluate_features(qf, gf, *labels, backend="jax")
  np.testing.assert_array_equal(jax_cmc, numpy_cmc)
  assert jax_ap == pytest.approx(numpy_ap, abs=1e-12)
  bad = gf.copy()
  bad[5, 3] = np.nan
  with pytest.raises(ValueError, match="non-finite"):
    metrics.evaluate_features(qf, bad, *labels, backend="jax")
  with pytest.raises(ValueError, match="backend='cuda'"):
    metrics.evaluate_features(qf, gf, *labels, backend="cuda")
  with pytest.raises(ValueError, match="block_size=0"):
    metrics.evaluate_features(qf, gf, *labels, backend="jax", block_size=0)
  with pytest.raises(ValueError, match="same D"):
    metrics.evaluate_features(qf, gf[:, :32], *labels, backend="jax")
  with pytest.raises(ValueError, match="labels"):
    metrics.evaluate_features(qf, gf[:100], *labels, backend="jax")


def test_squared_euclidean_matches_direct_computation():
  rng = np.random.default_rng(0)
  q, g = rng.standard_normal((7, 16)), rng.standard_normal((9, 16))
  direct = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
  np.testing.assert_allclose(metrics.squared_euclidean(q, g), direct, rtol=1e-5, atol=1e-4)


def test_bad_inputs():
  g = (np.array([1, 2]), np.array([1, 2]))
  with pytest.raises(ValueError, match="non-finite"):
    metrics.evaluate_rank(np.array([[np.nan, 1.0]]), np.array([1]), g[0], np.array([2]), g[1])
  with pytest.raises(ValueError, match="labels"):
    metrics.evaluate_rank(np.zeros((1, 3)), np.array([1]), g[0], np.array([2]), g[1])
  with pytest.raises(ValueError, match="no query has a good match"):
    metrics.evaluate_rank(np.zeros((1, 2)), np.array([1]), g[0], np.array([1]), g[1])
  with pytest.raises(ValueError, match="ap_mode"):
    metrics.evaluate_rank(np.zeros((1, 2)), np.array([1]), g[0], np.array([2]), g[1], ap_mode="interpolated")


def test_a_junk_query_is_refused_not_scored():
  """One junk query against one junk box would otherwise score an AP above 1."""
  distmat = np.array([[0.1, 0.5], [0.2, 0.3]], np.float32)
  for fn, args in (
    (metrics.evaluate_rank, (distmat,)),
    (metrics.evaluate_features, (np.ones((2, 4), np.float32), np.ones((2, 4), np.float32))),
  ):
    with pytest.raises(ValueError, match=r"query 1 has person id -1 \(1 such queries\): junk boxes"):
      fn(*args, np.array([3, -1]), np.array([3, -1]), np.array([1, 1]), np.array([2, 2]))
