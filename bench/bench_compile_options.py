"""Compile time against run time of one SA-GAN generator's gradient under XLA's compile options.

Why the test suite compiles most tests with `jax_disable_most_optimizations` and marks its
training tests `xla_optimized` (tests/conftest.py): each option is timed in a fresh process, as
`XLA_FLAGS` is read once per process.

Usage: python -m bench.bench_compile_options [--batch 8] [--height 64] [--width 32] [--calls 5]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

flags.DEFINE_integer("batch", 8, "images per batch")
flags.DEFINE_integer("height", 64, "image height")
flags.DEFINE_integer("width", 32, "image width")
flags.DEFINE_integer("calls", 5, "timed calls after the compile")
flags.DEFINE_string("child", None, "(internal) JSON of jax.config updates: run one measurement in this process")

# name → (environment additions, jax.config updates)
OPTIONS = {
  "default": ({}, {}),
  "jax_disable_most_optimizations": ({}, {"jax_disable_most_optimizations": True}),
  "XLA_FLAGS=--xla_backend_optimization_level=0": ({"XLA_FLAGS": "--xla_backend_optimization_level=0"}, {}),
  # XLA's fusion kept, LLVM's costly passes off: the middle way for the `xla_optimized` tests.
  "XLA_FLAGS=--xla_llvm_disable_expensive_passes=true": ({"XLA_FLAGS": "--xla_llvm_disable_expensive_passes=true"}, {}),
  "jax_optimization_level=O0": ({}, {"jax_optimization_level": "O0"}),
  "jax_exec_time_optimization_effort=-1": ({}, {"jax_exec_time_optimization_effort": -1.0}),
}
flags.DEFINE_list("options", list(OPTIONS), "which compile options to time (names of OPTIONS)")


def _measure(updates: dict, batch: int, height: int, width: int, calls: int) -> dict:
  """In this process: compile the gradient once, then time ``calls`` calls."""
  import time

  import jax
  import jax.numpy as jnp

  from sagan_jax.models.generator import ResnetGenerator

  for key, value in updates.items():
    jax.config.update(key, value)
  model = ResnetGenerator(features=16, num_blocks=2)
  x = jnp.ones((batch, height, width, 3))
  params = model.init(jax.random.key(0), x)
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(model.apply(p, x) ** 2)))
  start = time.perf_counter()
  compiled = grad.lower(params, x).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(params, x))
  start = time.perf_counter()
  for _ in range(calls):
    jax.block_until_ready(compiled(params, x))
  return {"compile_s": compile_s, "call_s": (time.perf_counter() - start) / calls}


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  if args.child is not None:
    print(json.dumps(_measure(json.loads(args.child), args.batch, args.height, args.width, args.calls)))
    return

  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  print(f"ResnetGenerator(features=16, num_blocks=2) gradient, batch {args.batch}, {args.height}×{args.width}, CPU")
  print("| option | compile, s | one call, s |")
  print("|---|---|---|")
  unknown = [o for o in args.options if o not in OPTIONS]
  if unknown:
    raise app.UsageError(f"--options: unknown {unknown}; choose from {', '.join(OPTIONS)}")
  for name in args.options:
    env_add, updates = OPTIONS[name]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_add}
    if "XLA_FLAGS" not in env_add:
      env.pop("XLA_FLAGS", None)
    sizes = [f"--batch={args.batch}", f"--height={args.height}", f"--width={args.width}", f"--calls={args.calls}"]
    out = subprocess.run(
      [sys.executable, "-m", "bench.bench_compile_options", *sizes, f"--child={json.dumps(updates)}"],
      cwd=root,
      env={**env, "PYTHONPATH": root},
      capture_output=True,
      text=True,
      check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"| {name} | {result['compile_s']:.2f} | {result['call_s']:.3f} |")


if __name__ == "__main__":
  app.run(main)
