"""Evaluation speed on a Market-1501-sized problem: distance matrix, then CMC + mAP.

    python -m bench.bench_evaluation [--queries 3368 --gallery 15913 --dim 2048 --repeats 3]
                                     [--backend numpy,jax]

Labels follow Market-1501's test set (750 ids over 6 cameras, 2,793 distractors of id 0 among the
gallery, several good matches per query); features are an identity centroid plus noise, so good
matches rank high as with a trained model (the ranking's cost does not depend on it). Prints the
median time of each part for each backend of `metrics.evaluate_features`: ``numpy`` (BLAS distance
matrix on the host, then `metrics.evaluate_rank`) and ``jax`` (distances and good-match ranks on
JAX's default device, after one warm-up call that compiles it; timed from host features, and
from features already on the device, as a model's output would be). Both backends must give the
same scores; the script checks it.
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np
from absl import app, flags

from bench import _common
from sagan_jax.reid import metrics

flags.DEFINE_integer("queries", 3368, "query features")
flags.DEFINE_integer("gallery", 15913, "gallery features")
flags.DEFINE_integer("dim", 2048, "feature dimension")
flags.DEFINE_integer("repeats", 3, "timed repetitions (median)")
flags.DEFINE_string("backend", "numpy", "comma list of evaluate_features backends: numpy, jax")


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


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  allocator = _common.apply(args)
  qf, gf, q_pids, g_pids, q_cams, g_cams = market_like(args.queries, args.gallery, args.dim)
  labels = (q_pids, g_pids, q_cams, g_cams)
  flops = 2 * args.queries * args.gallery * args.dim
  rows, scores = [], {}
  for backend in args.backend.split(","):
    if backend == "numpy":
      t_dist, distmat = timed(lambda: metrics.squared_euclidean(qf, gf), args.repeats)
      t_step, (cmc, mean_ap) = timed(lambda: metrics.evaluate_rank(distmat, *labels), args.repeats)
      t_trap, (_, ap_trap) = timed(lambda: metrics.evaluate_rank(distmat, *labels, ap_mode="trapezoid"), args.repeats)
      rows.append(
        (
          "numpy (BLAS distances on the host)",
          f"{t_dist * 1e3:.0f} ms ({flops / t_dist / 1e9:.0f} GFLOP/s)",
          t_dist + t_step,
          t_dist + t_trap,
        )
      )
    elif backend == "jax":
      run = lambda q, g, mode="step": metrics.evaluate_features(q, g, *labels, ap_mode=mode, backend="jax")
      start = time.perf_counter()
      run(qf, gf)
      compile_s = time.perf_counter() - start
      t_step, (cmc, mean_ap) = timed(lambda: run(qf, gf), args.repeats)
      t_trap, (_, ap_trap) = timed(lambda: run(qf, gf, "trapezoid"), args.repeats)
      rows.append(
        (
          f"jax on {jax.devices()[0].device_kind}, host features (first call {compile_s:.1f} s)",
          "inside the totals",
          t_step,
          t_trap,
        )
      )
      on_device = jax.device_put(qf), jax.device_put(gf)
      t_dev, _ = timed(lambda: run(*on_device), args.repeats)
      rows.append(
        (f"jax on {jax.devices()[0].device_kind}, features on the device", "inside the totals", t_dev, float("nan"))
      )
    else:
      raise app.UsageError(f"--backend: unknown backend {backend!r} (numpy, jax)")
    scores[backend] = (cmc, mean_ap, ap_trap)
  print(
    f"Market-sized evaluation: {args.queries} queries × {args.gallery} gallery × {args.dim}-d, float32, "
    f"{flops / 1e9:.0f} GFLOP of distances, median of {args.repeats}; {allocator}"
  )
  print(f"Generated features (not a model): R-1 {cmc[0]:.3f}, mAP {mean_ap:.3f} (step), {ap_trap:.3f} (trapezoid)")
  print("| backend | distance matrix | distance + CMC + mAP (step AP) | with trapezoid AP |\n|---|---|---|---|")
  ms = lambda t: "" if np.isnan(t) else f"{t * 1e3:.{1 if t < 0.1 else 0}f} ms"
  for name, dist, total_step, total_trap in rows:
    print(f"| {name} | {dist} | {ms(total_step)} | {ms(total_trap)} |")
  reference = next(iter(scores.values()))
  for backend, (cmc_b, ap_b, trap_b) in scores.items():
    if not (
      np.array_equal(cmc_b[:10], reference[0][:10])
      and abs(ap_b - reference[1]) < 1e-6
      and abs(trap_b - reference[2]) < 1e-6
    ):
      print(
        f"WARNING: backend {backend} scores differ: R-1 {cmc_b[0]:.4f} mAP {ap_b:.6f} against "
        f"{reference[0][0]:.4f} / {reference[1]:.6f} (float32 products rounding differently near ties?)"
      )


if __name__ == "__main__":
  app.run(main)
