"""Re-ID evaluation: CMC and mAP, exact, with the field's conventions spelled out.

`evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)` ranks the gallery for every query by
increasing distance and scores it:

* good matches: same person id, *different* camera;
* junk, removed from the ranking (never a negative, never a hit): same person id and same camera
  (the Market-1501/Duke protocol: such a match is trivial), and every gallery item with person
  id -1 (Market's junk boxes);
* distractors (person id 0) and every other id stay in the ranking as negatives;
* a query without any good match cannot be scored: it is skipped, counted, and the count is
  logged and returned with ``return_details=True``; CMC and mAP average over scored queries;
* ties in distance are broken by gallery index (a stable order), so results never depend on a
  sort implementation.

``ap_mode="step"`` is non-interpolated AP, the mean over hits of the precision at each hit (the
torchreid / fast-reid / scikit-learn ``average_precision_score`` convention). ``ap_mode="trapezoid"``
is the official Market-1501 Matlab evaluation (``compute_AP.m``), which integrates precision over
recall with the trapezoid rule, averaging the precision at each hit with the precision just before it.
Both share the same CMC. Papers that compare against the Market-1501 baselines of 2015–2018 used
the Matlab code; torchreid-era papers use ``"step"``; the two differ by a fraction of a point.

How it is fast: no query sorts the gallery. A query's only unknowns are the ranks of its good
matches. With its k good distances sorted, the items that can precede one are the non-junk items
no farther than the last good match; one `np.searchsorted` of those into the k distances and a
bincount give, for every good match, how many items are closer (O(G) to select, O(c log k) to
count c candidates, instead of O(G log G) for a sort); exact distance ties are detected and resolved
by gallery index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from absl import logging

AP_MODES = ("step", "trapezoid")


def squared_euclidean(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
  """``|q|² + |g|² - 2 q·g`` as float32 [Q, G]: the same ranking as Euclidean distance, one BLAS call."""
  query = np.asarray(query, np.float32)
  gallery = np.asarray(gallery, np.float32)
  out = np.empty((query.shape[0], gallery.shape[0]), np.float32)
  np.matmul(query, gallery.T, out=out)
  out *= -2.0
  out += np.einsum("ij,ij->i", query, query)[:, None]
  out += np.einsum("ij,ij->i", gallery, gallery)[None, :]
  return out


def positive_ranks(row: np.ndarray, good: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """0-based ranks, among the ``valid`` gallery items ordered by (distance, index), of the ``good`` items.

  ``good``: ascending gallery indices (all valid); ``valid``: bool mask. Returns ascending ranks.
  """
  good_d = row[good]
  order = np.argsort(good_d, kind="stable")  # equal distances keep gallery-index order
  good, good_d = good[order], good_d[order]
  # Only valid items no farther than the last good match can precede one.
  candidates = np.flatnonzero(valid & (row <= good_d[-1]))
  cand_d = row[candidates]
  upper = np.searchsorted(good_d, cand_d, side="right")  # goods at distance ≤ d
  # closer[j]: valid items strictly closer than the j-th good match.
  closer = np.cumsum(np.bincount(upper, minlength=len(good) + 1))[:len(good)]
  lower = np.searchsorted(good_d, cand_d, side="left")  # goods at distance < d
  if np.any(lower != upper):  # some valid item is exactly as far as a good match: order ties by index
    for j in range(len(good)):
      tied = candidates[cand_d == good_d[j]]
      closer[j] += np.count_nonzero(tied < good[j])
  return closer


def evaluate_rank(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                  ap_mode: str = "step", return_details: bool = False):
  """CMC curve (``cmc[k]`` = fraction of queries with a good match in the top k+1) and mAP.

  Returns ``(cmc[max_rank], mAP)``, or ``(cmc, mAP, details)`` with ``details`` holding
  ``num_queries`` (scored), ``num_skipped`` (no good match), ``ap`` (per scored query) and
  ``first_rank`` (0-based rank of each scored query's first good match).
  """
  if ap_mode not in AP_MODES:
    raise ValueError(f"ap_mode={ap_mode!r}: expected one of {AP_MODES}")
  distmat = np.asarray(distmat)
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  num_q, num_g = distmat.shape
  if q_pids.shape != (num_q,) or q_camids.shape != (num_q,) or g_pids.shape != (num_g,) or g_camids.shape != (num_g,):
    raise ValueError(f"distmat is {num_q}×{num_g} but got {q_pids.shape[0]} query / {g_pids.shape[0]} gallery labels")
  if not np.all(np.isfinite(distmat)):
    raise ValueError("distmat has non-finite entries (NaN/Inf features?); fix the features before evaluating")
  not_junk_box = g_pids != -1
  cmc = np.zeros(max_rank, np.float64)
  aps, first_ranks = [], []
  skipped = 0
  for i in range(num_q):
    same_id = g_pids == q_pids[i]
    same_cam = g_camids == q_camids[i]
    good = np.flatnonzero(same_id & ~same_cam)
    if good.size == 0:
      skipped += 1
      continue
    valid = not_junk_box & ~(same_id & same_cam)
    ranks = positive_ranks(distmat[i], good, valid)
    hits = np.arange(1, len(ranks) + 1)
    precision = hits / (ranks + 1)
    if ap_mode == "step":
      aps.append(precision.mean())
    else:
      before = np.where(ranks > 0, (hits - 1) / np.maximum(ranks, 1), 1.0)
      aps.append(((before + precision) / 2).mean())
    first_ranks.append(ranks[0])
    if ranks[0] < max_rank:
      cmc[ranks[0]:] += 1
  if skipped:
    logging.warning("evaluate_rank: %d of %d queries have no good match in the gallery and were skipped", skipped, num_q)
  if not aps:
    raise ValueError("no query has a good match (same id, other camera) in the gallery: check the query/gallery split")
  cmc /= len(aps)
  mean_ap = float(np.mean(aps))
  if not return_details:
    return cmc, mean_ap
  details: dict[str, Any] = {"num_queries": len(aps), "num_skipped": skipped, "ap": np.asarray(aps),
                             "first_rank": np.asarray(first_ranks)}
  return cmc, mean_ap, details
