"""Times one full SA-GAN iteration: n_critic critic updates + one generator update, both directions.

Prints img/s (source images per second through a full iteration), the compile time, and the
FLOPs of each compiled step from XLA's cost analysis, so an accelerator figure can be stated as
MFU against the device's measured bf16 matmul rate.

Usage:
  python bench/bench_sagan_step.py --scale cpu     # the tiny CPU configuration (32×16)
  python bench/bench_sagan_step.py --scale paper   # 256×128, batch 8, 9 residual blocks
  Options: --batch N --dtype float32|bfloat16 --iterations N --n_critic N
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import _common  # noqa: E402
from sagan_jax import parallel  # noqa: E402
from sagan_jax.sagan import SAGAN, apply_tiny_scale, make_steps, sagan_config  # noqa: E402
from sagan_jax.sagan.steps import create_state  # noqa: E402


def configure(scale: str, dtype: str):
  c = sagan_config()  # "paper": the defaults (256×128, 64 features, 9 blocks, 70×70 PatchGAN, SPGAN's SiaNet)
  c.dtype = dtype
  return apply_tiny_scale(c) if scale == "cpu" else c


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scale", choices=["cpu", "paper"], default="cpu")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument("--iterations", type=int, default=5)
  parser.add_argument("--n_critic", type=int, default=None, help="critic updates per iteration (default: the config's, 5)")
  _common.add_flag(parser)
  args = parser.parse_args()
  allocator = _common.apply(args)

  c = configure(args.scale, args.dtype)
  n_critic = c.n_critic if args.n_critic is None else args.n_critic
  model = SAGAN(c)
  mesh = parallel.make_mesh()
  parallel.check_batch_divisible(args.batch, mesh)
  h, w = c.image_size
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  batch = {
      "x": jax.random.uniform(keys[0], (args.batch, h, w, 3), minval=-1, maxval=1),
      "x_mask": (jax.random.uniform(keys[1], (args.batch, h, w, 1)) > 0.5).astype(jnp.float32),
      "y": jax.random.uniform(keys[2], (args.batch, h, w, 3), minval=-1, maxval=1),
      "y_mask": (jax.random.uniform(keys[3], (args.batch, h, w, 1)) > 0.5).astype(jnp.float32),
  }
  batch = jax.device_put(batch, parallel.batch_sharded(mesh))
  state = create_state(model, 0, mesh)
  critic_step, generator_step = make_steps(model, mesh)

  start = time.perf_counter()
  critic_compiled = critic_step.lower(state, batch).compile()
  generator_compiled = generator_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  critic_flops, generator_flops = _common.flops(critic_compiled), _common.flops(generator_compiled)

  # Run the executables compiled above: calling the jitted functions would compile them again
  # (ahead-of-time compilation does not fill the jit cache).
  def iteration(state):
    for _ in range(n_critic):
      state, _ = critic_compiled(state, batch)
    state, metrics = generator_compiled(state, batch)
    return state, metrics

  state, metrics = iteration(state)  # warm-up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(args.iterations):
    state, metrics = iteration(state)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / args.iterations

  iteration_flops = n_critic * critic_flops + generator_flops
  achieved = iteration_flops / seconds
  print(f"SA-GAN iteration ({n_critic} critic + 1 generator update, both directions), {args.scale} scale: "
        f"{h}×{w}, batch {args.batch}, {args.dtype}, {c.generator_blocks} residual blocks")
  print(f"device: {_common.device_line()}; {allocator}; mean of {args.iterations} iterations after a warm-up")
  print()
  print("| metric | value |")
  print("|---|---|")
  print(f"| seconds per iteration | {seconds:.3f} |")
  print(f"| source images per second | {args.batch / seconds:.2f} |")
  print(f"| compile time (both steps), s | {compile_s:.1f} |")
  print(f"| critic step GFLOPs (XLA cost analysis) | {critic_flops / 1e9:.2f} |")
  print(f"| generator step GFLOPs | {generator_flops / 1e9:.2f} |")
  print(f"| iteration TFLOP/s achieved | {achieved / 1e12:.4f} |")
  print(f"| {args.dtype} matmul TFLOP/s measured on this device | {_common.matmul_rate(args.dtype) / 1e12:.4f} |")
  print(f"| MFU (achieved / measured matmul rate) | {_common.mfu(achieved, args.dtype)} |")


if __name__ == "__main__":
  main()
