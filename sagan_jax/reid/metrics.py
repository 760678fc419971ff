"""Re-ID evaluation: CMC and mAP, exact, with the field's conventions spelled out.

`evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)` ranks the gallery for every query by
increasing distance and scores it:

* good matches: same person id, *different* camera;
* junk, removed from the ranking (never a negative, never a hit): same person id and same camera
  (the Market-1501/Duke protocol: such a match is trivial), and every gallery item with person
  id -1 (Market's junk boxes);
* distractors (person id 0) and every other id stay in the ranking as negatives;
* a query must be a person (id ≥ 0): a junk query (id -1) is refused, not scored;
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

`evaluate_features(query, gallery, ...)` starts from features instead: squared Euclidean distances,
then the same scores. Its ``backend="jax"`` computes distances and good-match ranks on JAX's
first local device (a GPU or TPU), a block of queries at a time, counting for every good match the
valid items ahead of it (a compare-and-sum over the gallery that fuses into one reduction); only
the ranks come back to the host, where `evaluate_rank`'s scoring turns them into CMC and mAP. On a
CPU that compare-and-sum is slower than the NumPy path above (`python -m bench.bench_evaluation
--backend numpy,jax`), so ``backend="auto"`` picks NumPy there.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

AP_MODES = ("step", "trapezoid")
BACKENDS = ("auto", "numpy", "jax")


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
  closer = np.cumsum(np.bincount(upper, minlength=len(good) + 1))[: len(good)]
  lower = np.searchsorted(good_d, cand_d, side="left")  # goods at distance < d
  if np.any(lower != upper):  # some valid item is exactly as far as a good match: order ties by index
    for j in range(len(good)):
      tied = candidates[cand_d == good_d[j]]
      closer[j] += np.count_nonzero(tied < good[j])
  return closer


def _check_labels(num_q: int, num_g: int, q_pids, g_pids, q_camids, g_camids, what: str):
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  if q_pids.shape != (num_q,) or q_camids.shape != (num_q,) or g_pids.shape != (num_g,) or g_camids.shape != (num_g,):
    raise ValueError(f"{what} is {num_q}×{num_g} but got {q_pids.shape[0]} query / {g_pids.shape[0]} gallery labels")
  junk = np.flatnonzero(q_pids < 0)
  if junk.size:
    # A junk query would count the gallery's junk boxes, which the ranking removes, as matches (AP above 1).
    raise ValueError(
      f"query {int(junk[0])} has person id {int(q_pids[junk[0]])} ({junk.size} such queries): junk boxes "
      "(id -1) cannot be queries; remove them from the query set"
    )
  return q_pids, g_pids, q_camids, g_camids


def evaluate_rank(
  distmat: np.ndarray,
  q_pids,
  g_pids,
  q_camids,
  g_camids,
  max_rank: int = 50,
  ap_mode: str = "step",
  return_details: bool = False,
):
  """CMC curve (``cmc[k]`` = fraction of queries with a good match in the top k+1) and mAP.

  Returns ``(cmc[max_rank], mAP)``, or ``(cmc, mAP, details)`` with ``details`` holding
  ``num_queries`` (scored), ``num_skipped`` (no good match), ``ap`` (per scored query) and
  ``first_rank`` (0-based rank of each scored query's first good match).
  """
  if ap_mode not in AP_MODES:
    raise ValueError(f"ap_mode={ap_mode!r}: expected one of {AP_MODES}")
  distmat = np.asarray(distmat)
  num_q, num_g = distmat.shape
  q_pids, g_pids, q_camids, g_camids = _check_labels(num_q, num_g, q_pids, g_pids, q_camids, g_camids, "distmat")
  if not np.all(np.isfinite(distmat)):
    raise ValueError("distmat has non-finite entries (NaN/Inf features?); fix the features before evaluating")
  good = good_match_indices(q_pids, g_pids, q_camids, g_camids)
  counts = np.sum(good >= 0, axis=1)
  ranks = np.zeros(good.shape, np.int64)
  not_junk_box = g_pids != -1
  for i in np.flatnonzero(counts):
    valid = not_junk_box & ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
    ranks[i, : counts[i]] = positive_ranks(distmat[i], good[i, : counts[i]], valid)
  return _scores(ranks, counts, max_rank, ap_mode, return_details)


def _scores(ranks: np.ndarray, counts: np.ndarray, max_rank: int, ap_mode: str, return_details: bool):
  """`evaluate_rank`'s result from every query's good-match ranks, all queries at once.

  ``ranks`` [Q, K]: row i holds query i's ``counts[i]`` good-match ranks (0-based, ascending) in its
  first entries; what follows is ignored. A query with ``counts[i] == 0`` has no good match.
  """
  scored = counts > 0
  skipped = int(np.sum(~scored))
  if skipped:
    logging.warning(
      "evaluate_rank: %d of %d queries have no good match in the gallery and were skipped", skipped, len(counts)
    )
  if not np.any(scored):
    raise ValueError("no query has a good match (same id, other camera) in the gallery: check the query/gallery split")
  ranks, counts = ranks[scored].astype(np.float64), counts[scored]
  hits = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)[None, :]  # the j-th good match is the j-th hit
  is_hit = hits <= counts[:, None]
  precision = hits / (ranks + 1)  # precision at each hit
  if ap_mode == "step":
    per_hit = precision
  else:  # trapezoid: the mean of the precision at the hit and just before it (1 before rank 0)
    per_hit = (np.where(ranks > 0, (hits - 1) / np.maximum(ranks, 1), 1.0) + precision) / 2
  aps = np.sum(np.where(is_hit, per_hit, 0.0), axis=1) / counts
  first_ranks = ranks[:, 0].astype(np.int64)
  cmc = np.cumsum(np.bincount(first_ranks[first_ranks < max_rank], minlength=max_rank)) / len(aps)
  mean_ap = float(np.mean(aps))
  if not return_details:
    return cmc, mean_ap
  details: dict[str, Any] = {"num_queries": len(aps), "num_skipped": skipped, "ap": aps, "first_rank": first_ranks}
  return cmc, mean_ap, details


# --------------------------------------------------------------------------------------------------
# From features, on the host or on a JAX device.


def evaluate_features(
  query: np.ndarray | jax.Array,
  gallery: np.ndarray | jax.Array,
  q_pids,
  g_pids,
  q_camids,
  g_camids,
  max_rank: int = 50,
  ap_mode: str = "step",
  return_details: bool = False,
  backend: str = "auto",
  block_size: int | None = None,
):
  """`evaluate_rank` of the squared Euclidean distances between ``query`` [Q, D] and ``gallery`` [G, D].

  ``backend``: ``"numpy"`` builds the distance matrix with `squared_euclidean` (BLAS) and calls
  `evaluate_rank`. ``"jax"`` computes distances (float32, full-precision products: no TF32 or
  bfloat16 passes on accelerators) and the rank of every good match on JAX's first local device,
  in blocks of ``block_size`` queries (default: as many as 256 MiB of distances hold). On the same
  distances it gives ``"numpy"``'s result; the float32 sums of two libraries may round
  differently, which can swap near-tied items. ``"auto"``: ``"jax"`` on an accelerator,
  ``"numpy"`` on a CPU, where it is faster.
  """
  if backend not in BACKENDS:
    raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
  if ap_mode not in AP_MODES:
    raise ValueError(f"ap_mode={ap_mode!r}: expected one of {AP_MODES}")
  if block_size is not None and block_size < 1:
    raise ValueError(f"block_size={block_size}: expected a positive number of queries, or None")
  if backend == "auto":
    backend = "numpy" if jax.default_backend() == "cpu" else "jax"
  query = query if isinstance(query, jax.Array) else np.asarray(query)
  gallery = gallery if isinstance(gallery, jax.Array) else np.asarray(gallery)
  if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
    raise ValueError(f"features must be [Q, D] and [G, D] with the same D, got {query.shape} and {gallery.shape}")
  if backend == "numpy":
    distmat = squared_euclidean(np.asarray(query), np.asarray(gallery))
    return evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap_mode, return_details)
  num_q, num_g = query.shape[0], gallery.shape[0]
  q_pids, g_pids, q_camids, g_camids = _check_labels(num_q, num_g, q_pids, g_pids, q_camids, g_camids, "features")
  good = good_match_indices(q_pids, g_pids, q_camids, g_camids)
  ranks = np.zeros(good.shape, np.int64)
  if good.shape[1]:
    ranks = _device_good_ranks(query, gallery, q_pids, g_pids, q_camids, g_camids, good, block_size)
  return _scores(ranks, np.sum(good >= 0, axis=1), max_rank, ap_mode, return_details)


def good_match_indices(q_pids, g_pids, q_camids, g_camids) -> np.ndarray:
  """``[Q, K]`` gallery indices of every query's good matches (same id, other camera), ascending.

  Rows are padded with -1; ``K`` is the largest number of good matches rounded up to a power of
  two (0 if no query has one), so that problems of similar sizes share a compiled program.
  """
  q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
  q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
  by_id = np.argsort(g_pids, kind="stable")  # each id's gallery items, ascending, contiguous
  start = np.searchsorted(g_pids[by_id], q_pids, side="left")
  count = np.searchsorted(g_pids[by_id], q_pids, side="right") - start
  slot = np.arange(count.max(initial=0))
  members = by_id[np.minimum(start[:, None] + slot, max(len(by_id) - 1, 0))]
  is_good = (slot < count[:, None]) & (g_camids[members] != q_camids[:, None])
  num_good = is_good.sum(axis=1)
  most = int(num_good.max(initial=0))
  out = np.full((len(q_pids), 1 << (most - 1).bit_length() if most else 0), -1, np.int32)
  rows, cols = np.nonzero(is_good)  # row by row, ascending gallery index within a row
  out[rows, np.arange(len(rows)) - np.repeat(np.cumsum(num_good) - num_good, num_good)] = members[rows, cols]
  return out


def _device_good_ranks(
  query, gallery, q_pids, g_pids, q_camids, g_camids, good: np.ndarray, block_size: int | None
) -> np.ndarray:
  num_q, num_g = query.shape[0], gallery.shape[0]
  block = min(num_q, block_size or max(1, (256 << 20) // (4 * num_g)))
  pad = -num_q % block  # padded queries have no good match: their ranks are discarded
  device = jax.local_devices()[0]
  ints = lambda a: jax.device_put(np.asarray(a, np.int32), device)
  padded = lambda a, fill: np.pad(a, [(0, pad)] + [(0, 0)] * (np.ndim(a) - 1), constant_values=fill)
  query = jnp.pad(jax.device_put(query, device).astype(jnp.float32), ((0, pad), (0, 0)))
  q_pids, q_camids, good = ints(padded(q_pids, 0)), ints(padded(q_camids, 0)), ints(padded(good, -1))
  gallery_args = (jax.device_put(gallery, device).astype(jnp.float32), ints(g_pids), ints(g_camids))
  outputs = [
    _block_good_ranks(
      query[s : s + block], q_pids[s : s + block], q_camids[s : s + block], good[s : s + block], *gallery_args
    )
    for s in range(0, num_q + pad, block)
  ]
  if not all(bool(finite) for _, finite in outputs):
    raise ValueError("the distances have non-finite entries (NaN/Inf features?); fix the features before evaluating")
  return np.concatenate([np.asarray(ranks) for ranks, _ in outputs])[:num_q]


@jax.jit
def _block_good_ranks(query, q_pids, q_camids, good, gallery, g_pids, g_camids):
  """Ascending ranks ``[b, K]`` of the ``good`` gallery items among each query's valid ones; all distances finite."""
  products = jnp.matmul(query, gallery.T, precision=jax.lax.Precision.HIGHEST)
  # `squared_euclidean`'s formula, its terms added in the same order.
  distances = (products * -2.0 + jnp.sum(query * query, axis=1)[:, None]) + jnp.sum(gallery * gallery, axis=1)[None, :]
  same_id = q_pids[:, None] == g_pids[None, :]
  valid = (g_pids != -1)[None, :] & ~(same_id & (q_camids[:, None] == g_camids[None, :]))
  good_distances = jnp.take_along_axis(distances, jnp.maximum(good, 0), axis=1)
  index = jnp.arange(distances.shape[1])
  # An item precedes a good match when it is closer, or as close and earlier in the gallery.
  ahead = (distances[:, None, :] < good_distances[:, :, None]) | (
    (distances[:, None, :] == good_distances[:, :, None]) & (index[None, None, :] < good[:, :, None])
  )
  ranks = jnp.sum(ahead & valid[:, None, :], axis=-1, dtype=jnp.int32)
  # Ascending, padding last: the layout `_scores` reads, so the host only scores.
  ranks = jnp.sort(jnp.where(good >= 0, ranks, jnp.iinfo(jnp.int32).max), axis=1)
  return ranks, jnp.all(jnp.isfinite(distances))
