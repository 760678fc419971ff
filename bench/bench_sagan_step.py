"""Times one full SA-GAN iteration: n_critic critic updates + one generator update, both directions.

Prints, per choice of layers (``--layers``), the seconds per iteration, img/s (source images per second
through a full iteration), the compile time and the FLOPs of each compiled step from XLA's cost
analysis, so an accelerator figure can be stated as MFU against the device's measured matmul rate.
With several implementations the steps are taken in turn (round-robin), so a machine whose speed
drifts slows every row alike and the ratios between rows hold.

Usage:
  python -m bench.bench_sagan_step --scale cpu        # the tests' tiny networks (32×16)
  python -m bench.bench_sagan_step --scale synthetic  # the main job's networks (configs/synthetic.py, 64×32)
  python -m bench.bench_sagan_step --scale paper      # 256×128, batch 8, 9 residual blocks
  python -m bench.bench_sagan_step --scale synthetic --layers flax,cpu
  Options: --batch N --dtype float32|bfloat16 --iterations N --n_critic N
           --trace FILE.json.gz (profile one more iteration; bench/trace_summary.py reads it)
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from bench import _common
from sagan_jax import parallel
from sagan_jax.sagan import SAGAN, make_steps
from sagan_jax.sagan.steps import create_state
from sagan_jax.sagan.train import optimizers

flags.DEFINE_enum(
  "scale",
  "cpu",
  ["cpu", "synthetic", "paper"],
  "network size: cpu (the tests'), synthetic (the main job's), paper (256×128)",
)
flags.DEFINE_integer("batch", 8, "images per batch")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype")
flags.DEFINE_integer("iterations", 5, "timed iterations (median), after a warm-up")
flags.DEFINE_bool("count_only", False, "print the updates' FLOP counts and stop (no compiling, any machine)")
flags.DEFINE_integer("n_critic", None, "critic updates per iteration (default: the config's, 5)")


def _model_flops(c, tx, mesh, state, batch) -> tuple[float, float]:
  """The critic and generator updates' FLOPs with flax's layers: the model's arithmetic, the same for every row."""
  steps = make_steps(SAGAN(c, layers=_common.layers("flax")), tx, mesh)
  return tuple(_common.model_flops(step, state, batch) for step in steps)


def _print_counts(args, mesh) -> None:
  """What the MFU column divides by, for a scale and batch, from shapes alone (nothing is compiled)."""
  c = _common.sagan_config_at(args.scale, args.dtype)
  h, w = c.image_size
  tx = optimizers(c, 0)
  state = jax.eval_shape(lambda: create_state(SAGAN(c, layers=_common.layers("flax")), tx, 0, mesh))
  batch = {
    k: jax.ShapeDtypeStruct((args.batch, h, w, 3 if k in ("x", "y") else 1), jnp.float32)
    for k in ("x", "x_mask", "y", "y_mask")
  }
  critic, generator = _model_flops(c, tx, mesh, state, batch)
  print(f"SA-GAN updates, {args.scale} scale, {h}×{w}, batch {args.batch}, {args.dtype} (bench._common.model_flops)")
  print()
  print("| critic update GFLOP | generator update GFLOP |")
  print("|---|---|")
  print(f"| {critic / 1e9:.1f} | {generator / 1e9:.1f} |")


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  allocator = _common.apply(args)

  mesh = parallel.make_mesh()
  parallel.check_batch_divisible(args.batch, mesh)
  if args.count_only:
    _print_counts(args, mesh)
    return
  rows = []
  flops = None
  for layers in args.layers.split(","):
    c = _common.sagan_config_at(args.scale, args.dtype)
    model = SAGAN(c, layers=_common.layers(layers))
    h, w = c.image_size
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    batch = {
      "x": jax.random.uniform(keys[0], (args.batch, h, w, 3), minval=-1, maxval=1),
      "x_mask": (jax.random.uniform(keys[1], (args.batch, h, w, 1)) > 0.5).astype(jnp.float32),
      "y": jax.random.uniform(keys[2], (args.batch, h, w, 3), minval=-1, maxval=1),
      "y_mask": (jax.random.uniform(keys[3], (args.batch, h, w, 1)) > 0.5).astype(jnp.float32),
    }
    batch = jax.device_put(batch, parallel.batch_sharded(mesh))
    tx = optimizers(c, 0)
    state = create_state(model, tx, 0, mesh)
    critic_step, generator_step = make_steps(model, tx, mesh)
    if flops is None:
      flops = _model_flops(c, tx, mesh, state, batch)
    start = time.perf_counter()
    # Run the executables compiled here: calling the jitted functions would compile them again
    # (ahead-of-time compilation does not fill the jit cache).
    critic_compiled = critic_step.lower(state, batch).compile()
    generator_compiled = generator_step.lower(state, batch).compile()
    rows.append(
      {
        "impl": layers,
        "critic": critic_compiled,
        "generator": generator_compiled,
        "state": state,
        "batch": batch,
        "compile_s": time.perf_counter() - start,
        "critic_flops": flops[0],
        "generator_flops": flops[1],
        "critic_s": [],
        "generator_s": [],
        "n_critic": c.n_critic if args.n_critic is None else args.n_critic,
      }
    )

  def timed(step, row):
    start = time.perf_counter()
    row["state"], metrics = step(row["state"], row["batch"])
    jax.block_until_ready(metrics)
    return time.perf_counter() - start

  for repeat in range(args.iterations + 1):  # the first round warms up
    for row in rows:
      critic = [timed(row["critic"], row) for _ in range(row["n_critic"])]
      generator = timed(row["generator"], row)
      if repeat:
        row["critic_s"] += critic
        row["generator_s"].append(generator)

  n_critic = rows[0]["n_critic"]
  if args.trace:

    def iteration(row=rows[0]):  # one more iteration of the first row
      for _ in range(n_critic):
        timed(row["critic"], row)
      timed(row["generator"], row)

    _common.trace(iteration, args.trace)
  print(
    f"SA-GAN iteration ({n_critic} critic + 1 generator update, both directions), {args.scale} scale: "
    f"{h}×{w}, batch {args.batch}, {args.dtype}, {c.generator_blocks} residual blocks"
  )
  print(
    f"device: {_common.device_line()}; {allocator}; medians over {args.iterations} iterations after a warm-up"
    + (", implementations in turn" if len(rows) > 1 else "")
  )
  print(
    f"{args.dtype} matmul rate measured here: {_common.matmul_rate(args.dtype) / 1e12:.4f} TFLOP/s; "
    "GFLOP: the convolutions and products of each traced step (bench._common.model_flops)"
  )
  print()
  print(
    "| layers | critic step, ms | generator step, ms | s/iteration | img/s | compile s "
    "| critic / generator GFLOP | TFLOP/s | MFU |"
  )
  print("|---|---|---|---|---|---|---|---|---|")
  for row in rows:
    critic, generator = statistics.median(row["critic_s"]), statistics.median(row["generator_s"])
    seconds = n_critic * critic + generator
    achieved = (n_critic * row["critic_flops"] + row["generator_flops"]) / seconds
    print(
      f"| {row['impl']} | {critic * 1e3:.1f} | {generator * 1e3:.1f} | {seconds:.3f} | {args.batch / seconds:.2f} "
      f"| {row['compile_s']:.1f} | {row['critic_flops'] / 1e9:.2f} / {row['generator_flops'] / 1e9:.2f} "
      f"| {achieved / 1e12:.4f} | {_common.mfu(achieved, args.dtype)} |"
    )


if __name__ == "__main__":
  app.run(main)
