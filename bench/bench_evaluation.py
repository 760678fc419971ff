"""Evaluation speed on a Market-1501-sized problem: distance matrix, then CMC + mAP.

    python bench/bench_evaluation.py [--queries 3368 --gallery 15913 --dim 2048 --repeats 3]

Labels follow Market-1501's test set (750 ids over 6 cameras, 2,793 distractors of id 0 among the
gallery, several good matches per query); features are an identity centroid plus noise, so good
matches rank high as with a trained model (the ranking's cost does not depend on it). Prints the
median time of each part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

import _common  # noqa: E402
from sagan_jax.reid import metrics  # noqa: E402


def market_like(num_q: int, num_g: int, dim: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  num_ids, num_distractors = 750, min(2793, num_g // 5)
  g_pids = np.concatenate([rng.integers(1, num_ids + 1, num_g - num_distractors), np.zeros(num_distractors, np.int64)])
  g_cams = rng.integers(1, 7, num_g)
  q_pids = rng.integers(1, num_ids + 1, num_q)
  q_cams = rng.integers(1, 7, num_q)
  centroids = rng.standard_normal((num_ids + 1, dim)).astype(np.float32)
  noise = 1.0
  centroids *= 0.3  # identity signal vs noise: gives R-1 ≈ 0.8, a trained IDE model's regime
  qf = centroids[q_pids] + noise * rng.standard_normal((num_q, dim), dtype=np.float32)
  gf = centroids[g_pids] + noise * rng.standard_normal((num_g, dim), dtype=np.float32)
  gf[g_pids == 0] = noise * rng.standard_normal((num_distractors, dim), dtype=np.float32) * 1.1
  return qf, gf, q_pids, g_pids, q_cams, g_cams


def timed(fn, repeats):
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--queries", type=int, default=3368)
  parser.add_argument("--gallery", type=int, default=15913)
  parser.add_argument("--dim", type=int, default=2048)
  parser.add_argument("--repeats", type=int, default=3)
  _common.add_flag(parser)
  args = parser.parse_args()
  allocator = _common.apply(args)
  qf, gf, q_pids, g_pids, q_cams, g_cams = market_like(args.queries, args.gallery, args.dim)
  t_dist, distmat = timed(lambda: metrics.squared_euclidean(qf, gf), args.repeats)
  t_step, (cmc, mean_ap) = timed(lambda: metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams), args.repeats)
  t_trap, (_, mean_ap_trap) = timed(
      lambda: metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, ap_mode="trapezoid"), args.repeats)
  flops = 2 * args.queries * args.gallery * args.dim
  print(f"Market-sized evaluation: {args.queries} queries × {args.gallery} gallery × {args.dim}-d, float32, median of {args.repeats}; {allocator}")
  print("| part | time | note |\n|---|---|---|")
  print(f"| distance matrix (BLAS) | {t_dist * 1e3:.0f} ms | {flops / 1e9:.0f} GFLOP, {flops / t_dist / 1e9:.0f} GFLOP/s |")
  print(f"| CMC + mAP (step AP) | {t_step * 1e3:.0f} ms | generated features (not a model): R-1 {cmc[0]:.3f}, mAP {mean_ap:.3f} |")
  print(f"| CMC + mAP (trapezoid AP) | {t_trap * 1e3:.0f} ms | mAP {mean_ap_trap:.3f} |")
  print(f"| total (distance + step) | {(t_dist + t_step) * 1e3:.0f} ms | |")


if __name__ == "__main__":
  main()
