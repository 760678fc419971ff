"""Times the homography warp: forward and forward+backward, batch 8 × 256×128×4 by default.

Prints one table row per implementation:
  * sagan_jax.geometry.warp (hand-written backward pass);
  * the same sampling through jax.scipy.ndimage.map_coordinates with autodiff's backward pass
    (what a straightforward JAX implementation gets);
  * kornia.geometry.transform.warp_perspective, only when torch and kornia happen to be installed.

Usage: python -m bench.bench_warp [--batch 8] [--height 256] [--width 128] [--channels 4]
       [--dtype float32|bfloat16] [--repeats 50] [--host_allocator tuned|default]
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from bench import _common
from sagan_jax import geometry

flags.DEFINE_integer("batch", 8, "images per batch")
flags.DEFINE_integer("height", 256, "image height")
flags.DEFINE_integer("width", 128, "image width")
flags.DEFINE_integer("channels", 4, "image channels")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype")
flags.DEFINE_integer("repeats", 50, "timed repetitions (median)")


def _time_ms(fn, repeats: int) -> tuple[float, float]:
  """Median and interquartile spread of ``fn()`` in milliseconds, after two warm-up calls."""
  fn()
  fn()
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    samples.append((time.perf_counter() - start) * 1e3)
  q = statistics.quantiles(samples, n=4)
  return statistics.median(samples), q[2] - q[0]


def _map_coordinates_warp(images, h):
  """Reference sampling: per-image, per-channel map_coordinates on the homography grid."""
  _b, hh, ww, c = images.shape
  grid = geometry.homography_grid(h, (hh, ww))
  u = (grid[..., 0] + 1) * (ww - 1) / 2
  v = (grid[..., 1] + 1) * (hh - 1) / 2

  def one(image, u, v):
    return jnp.stack(
      [jax.scipy.ndimage.map_coordinates(image[..., k], [v, u], order=1, mode="constant") for k in range(c)], axis=-1
    )

  return jax.vmap(one)(images, u, v)


def _jax_rows(name, warp_fn, images, params, repeats):
  forward = jax.jit(lambda i, p: warp_fn(i, geometry.homography_from_params(p)))
  loss = lambda i, p: jnp.sum(jnp.square(warp_fn(i, geometry.homography_from_params(p)).astype(jnp.float32)))
  backward = jax.jit(jax.grad(loss, argnums=(0, 1)))
  fwd = _time_ms(lambda: jax.block_until_ready(forward(images, params)), repeats)
  bwd = _time_ms(lambda: jax.block_until_ready(backward(images, params)), repeats)
  return name, fwd, bwd


def _kornia_row(batch, height, width, channels, repeats):
  try:
    import kornia
    import torch
  except ImportError:
    return None
  images = torch.rand(batch, channels, height, width, requires_grad=True)
  h = torch.eye(3).repeat(batch, 1, 1) + 0.01 * torch.randn(batch, 3, 3)
  h.requires_grad_(True)

  def forward():
    with torch.no_grad():
      kornia.geometry.transform.warp_perspective(images, h, (height, width), align_corners=True)

  def backward():
    out = kornia.geometry.transform.warp_perspective(images, h, (height, width), align_corners=True)
    out.square().sum().backward()

  return (
    f"kornia {kornia.__version__} warp_perspective (torch {torch.__version__})",
    _time_ms(forward, repeats),
    _time_ms(backward, repeats),
  )


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  allocator = _common.apply(args)

  dtype = jnp.dtype(args.dtype)
  images = jax.random.uniform(jax.random.key(0), (args.batch, args.height, args.width, args.channels)).astype(dtype)
  params = 0.1 * jax.random.normal(jax.random.key(1), (args.batch, 8))

  rows = [
    _jax_rows("sagan_jax.geometry.warp", geometry.warp, images, params, args.repeats),
    _jax_rows("map_coordinates + autodiff", _map_coordinates_warp, images, params, args.repeats),
  ]
  kornia_row = _kornia_row(args.batch, args.height, args.width, args.channels, args.repeats)
  if kornia_row is not None:
    rows.append(kornia_row)

  device = jax.devices()[0]
  print(
    f"warp of {args.batch}×{args.height}×{args.width}×{args.channels} {args.dtype}, homography, bilinear, zeros padding"
  )
  print(
    f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} host cores, "
    f"{platform.processor() or platform.machine()}; "
    f"jax {jax.__version__}; {allocator}; median of {args.repeats} (interquartile range)"
  )
  print()
  print(f"| {'implementation':<58} | {'forward ms':>16} | {'forward+backward ms':>20} |")
  print(f"|{'-' * 60}|{'-' * 18}|{'-' * 22}|")
  for name, (fwd, fwd_iqr), (bwd, bwd_iqr) in rows:
    print(f"| {name:<58} | {fwd:8.2f} ({fwd_iqr:5.2f}) | {bwd:10.2f} ({bwd_iqr:6.2f}) |")


if __name__ == "__main__":
  app.run(main)
