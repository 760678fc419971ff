"""Times the IDE ResNet-50 training step (forward, backward, SGD update) at 256×128.

One row per (batch, dtype): seconds per step, images/s, compile time, FLOPs per step (the convolutions
and products of the step traced with XLA's convolution gradients: the model's arithmetic, the same
for every row and backend), achieved TFLOP/s and MFU against the device's measured matmul rate in that dtype, and the
medians of the process's minor page faults and system CPU seconds per step (``getrusage`` around
each timed step: what ``--host_allocator tuned|default`` changes).
With ``--torch`` (needs torch and torchvision importable) a row for torchvision's ``resnet50``
training step on the same input, as a PyTorch user would write it (NCHW float32, SGD momentum,
``torch.get_num_threads()`` threads).

The rows of one batch size are built first and their steps then timed in turn (round-robin), so a
slow stretch of a shared machine slows every row alike and the ratios between rows hold;
``--sequential`` times each row alone right after building it, keeping one model in memory at a
time (batch 128 takes about 15 GB of temporaries per model).

Usage:
  python -m bench.bench_ide_step                            # batch 8 and 128, float32 and bfloat16
  python -m bench.bench_ide_step --batches 8 --dtypes float32 --steps 5 --torch --forward
  python -m bench.bench_ide_step --batches 8 --dtypes float32 --layers flax,cpu
  python -m bench.bench_ide_step --batches 128 --sequential --torch
  python -m bench.bench_ide_step --batches 128 --dtypes bfloat16 --trace ide.json.gz   # then bench/trace_summary.py
  Options: --classes 751 (Market-1501's training ids) --height 256 --width 128
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from bench import _common
from sagan_jax import parallel
from sagan_jax.reid import ide
from sagan_jax.reid import train as ide_train

flags.DEFINE_string("batches", "8,128", "comma list of batch sizes (one row each)")
flags.DEFINE_string("dtypes", "float32,bfloat16", "comma list of compute dtypes")
flags.DEFINE_integer("steps", 3, "timed steps per row (median), after one warm-up step")
flags.DEFINE_integer("classes", 751, "identities of the IDE head")
flags.DEFINE_string("stage_sizes", "3,4,6,3", "residual blocks per stage (ResNet-50's by default)")
flags.DEFINE_integer("resnet_width", 64, "the first stage's width (ResNet-50's 64 by default)")
flags.DEFINE_integer("height", 256, "image height")
flags.DEFINE_integer("width", 128, "image width")
flags.DEFINE_bool("count_only", False, "print each batch's step FLOP count and stop (no compiling, any machine)")
flags.DEFINE_bool("torch", False, "add torchvision's step (float32) for comparison")
flags.DEFINE_bool("forward", False, "add rows timing the forward pass alone")
flags.DEFINE_bool(
  "sequential",
  False,
  "time each row alone right after building it (one model in memory at a time, for batch 128 on a small "
  "host) instead of round-robin across the batch size's rows",
)


def _time_rows(rows: list[dict], steps: int, trace: str | None = None) -> None:
  """Sets each row's ``seconds``: the median of ``steps`` calls, taken round-robin across ``rows``.

  With ``trace``, one more step of the first row is profiled into that file (`_common.trace`).

  Taking the rows' steps in turn makes a slow stretch of the machine (this 2-core VM's matmul rate
  was measured anywhere from 0.14 to 0.19 TFLOP/s on one day) cost every row alike, so the rows'
  ratios hold even when their absolute figures drift.
  """
  samples = [[] for _ in rows]
  faults, system = [[] for _ in rows], [[] for _ in rows]  # minor page faults and system CPU seconds
  for _ in range(steps):
    for i, (row, row_samples) in enumerate(zip(rows, samples)):
      before = resource.getrusage(resource.RUSAGE_SELF)
      start = time.perf_counter()
      row["step"]()
      row_samples.append(time.perf_counter() - start)
      after = resource.getrusage(resource.RUSAGE_SELF)
      faults[i].append(after.ru_minflt - before.ru_minflt)
      system[i].append(after.ru_stime - before.ru_stime)
  if trace:
    _common.trace(rows[0]["step"], trace)
  for row, row_samples, row_faults, row_system in zip(rows, samples, faults, system):
    row["seconds"] = statistics.median(row_samples)
    row["faults"], row["system"] = statistics.median(row_faults), statistics.median(row_system)
    row["spread"] = (min(row_samples), max(row_samples))
    row["mfu"] = "" if np.isnan(row["flop"]) else _common.mfu(row["flop"] / row["seconds"], row["dtype"])
    del row["step"]  # frees the row's state before the next group is built


def _config(dtype: str, size: tuple[int, int]):
  cfg = ide.ide_config()
  cfg.dtype, cfg.image_size = dtype, size
  cfg.stage_sizes, cfg.width = tuple(int(s) for s in flags.FLAGS.stage_sizes.split(",")), flags.FLAGS.resnet_width
  return cfg


def jax_row(batch: int, dtype: str, classes: int, size: tuple[int, int], layers: str) -> dict:
  cfg = _config(dtype, size)
  mesh = parallel.make_mesh()
  parallel.check_batch_divisible(batch, mesh)
  model = ide.make_model(cfg, classes, _common.layers(layers))
  optimizer = ide_train.make_optimizer(cfg, steps_per_epoch=100)
  state = ide.create_state(model, optimizer, size, 0, mesh)
  rng = np.random.default_rng(0)
  images = jax.device_put(rng.uniform(-1, 1, (batch, *size, 3)).astype(np.float32), parallel.batch_sharded(mesh))
  labels = jax.device_put(rng.integers(0, classes, batch).astype(np.int32), parallel.batch_sharded(mesh))
  step = ide.make_train_step(model, optimizer, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, images, labels).compile()
  compile_s = time.perf_counter() - start
  holder = {"state": state}

  def one():
    holder["state"], metrics = compiled(holder["state"], images, labels)
    jax.block_until_ready(metrics)

  one()  # warm-up
  return {
    "impl": f"sagan_jax, layers {layers}",
    "batch": batch,
    "dtype": dtype,
    "step": one,
    "compile": compile_s,
    "flop": _model_flops(cfg, classes, optimizer, mesh, state, images, labels),
  }


def _model_flops(cfg, classes, optimizer, mesh, state, images, labels) -> float:
  """The step's FLOPs as flax's layers (XLA's own convolution gradients) express it, whatever layers run.

  That is the model's arithmetic, the same for every row and every backend: our im2col products do
  the same multiply-adds. Counted on the traced step, so nothing more is compiled.
  """
  model = ide.make_model(cfg, classes)
  return _common.model_flops(ide.make_train_step(model, optimizer, mesh), state, images, labels)


def jax_forward_row(batch: int, dtype: str, classes: int, size: tuple[int, int]) -> dict:
  """The training step's forward pass alone (train-mode batch norm, loss), to split forward from backward."""
  cfg = _config(dtype, size)
  model = ide.make_model(cfg, classes, _common.layers("auto"))
  mesh = parallel.make_mesh()
  state = ide.create_state(model, ide_train.make_optimizer(cfg, 100), size, 0, mesh)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (batch, *size, 3)).astype(np.float32)
  labels = rng.integers(0, classes, batch).astype(np.int32)

  def forward(params, batch_stats, images, labels):
    (logits, _), _ = model.apply(
      {"params": params, "batch_stats": batch_stats},
      ide.imagenet_normalize(images),
      train=True,
      mutable=["batch_stats"],
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()

  compiled = jax.jit(forward).lower(state.params, state.batch_stats, images, labels).compile()
  one = lambda: jax.block_until_ready(compiled(state.params, state.batch_stats, images, labels))
  one()
  return {
    "impl": "sagan_jax, forward only",
    "batch": batch,
    "dtype": dtype,
    "step": one,
    "compile": float("nan"),
    "flop": _common.model_flops(forward, state.params, state.batch_stats, images, labels),
  }


def torch_row(batch: int, classes: int, size: tuple[int, int], forward_only: bool = False) -> dict | None:
  try:
    import torch
    import torchvision
  except ImportError:
    return None
  model = torchvision.models.resnet50(num_classes=classes)
  model.train()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  gen = torch.Generator().manual_seed(0)
  images = torch.rand((batch, 3, *size), generator=gen) * 2 - 1
  labels = torch.randint(0, classes, (batch,), generator=gen)
  loss_fn = torch.nn.CrossEntropyLoss()

  def one():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()

  def forward():
    with torch.no_grad():
      loss_fn(model(images), labels)

  fn = forward if forward_only else one
  fn()
  what = ", forward only" if forward_only else ""
  return {
    "impl": f"torchvision resnet50{what}, torch {torch.__version__} ({torch.get_num_threads()} threads)",
    "batch": batch,
    "dtype": "float32",
    "step": fn,
    "compile": float("nan"),
    "flop": float("nan"),
  }


def _print_counts(batches: list[int], classes: int, size: tuple[int, int]) -> None:
  """What the MFU column divides by, from shapes alone (nothing is compiled)."""
  cfg = _config("float32", size)
  mesh = parallel.make_mesh()
  optimizer = ide_train.make_optimizer(cfg, steps_per_epoch=100)
  model = ide.make_model(cfg, classes)
  state = jax.eval_shape(lambda: ide.create_state(model, optimizer, size, 0, mesh))
  print(f"IDE train step, {size[0]}×{size[1]}, {classes} classes (bench._common.model_flops)")
  print()
  print("| batch | GFLOP/step |")
  print("|---|---|")
  for batch in batches:
    images = jax.ShapeDtypeStruct((batch, *size, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    print(f"| {batch} | {_model_flops(cfg, classes, optimizer, mesh, state, images, labels) / 1e9:.0f} |")


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  allocator = _common.apply(args)
  size = (args.height, args.width)
  batches = [int(b) for b in args.batches.split(",")]
  if args.count_only:
    _print_counts(batches, args.classes, size)
    return
  rows = []
  pending_trace = args.trace  # taken of the first row timed, then cleared

  def time_rows(group):
    nonlocal pending_trace
    _time_rows(group, args.steps, pending_trace)
    pending_trace = None

  for batch in batches:
    group = []  # one batch size's rows, timed round-robin unless --sequential

    def add(row, group=group):
      if args.sequential:
        time_rows([row])
      group.append(row)

    for dtype in filter(None, args.dtypes.split(",")):  # --dtypes= (empty): the torch rows only
      for layers in args.layers.split(","):
        add(jax_row(batch, dtype, args.classes, size, layers))
      if args.forward:
        add(jax_forward_row(batch, dtype, args.classes, size))
    if args.torch:
      for forward_only in (False, True) if args.forward else (False,):
        row = torch_row(batch, args.classes, size, forward_only)
        if row is None:
          print("  torch/torchvision not importable: no torch row", file=sys.stderr)
          break
        add(row)
    if not args.sequential:
      time_rows(group)
    for row in group:
      print(f"  measured: batch {batch}, {row['impl']}, {row['dtype']}: {row['seconds']:.3f} s/step", file=sys.stderr)
    rows += group
  order = "each row alone" if args.sequential else "round-robin across each batch size's rows"
  print(
    f"IDE ResNet-50 train step, {size[0]}×{size[1]}, {args.classes} classes, median of {args.steps} steps "
    f"after a warm-up, taken {order}"
  )
  print(f"device: {_common.device_line()}; {allocator}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print()
  print(
    "| implementation | batch | dtype | s/step | min–max s | img/s | compile s | GFLOP/step | TFLOP/s | MFU "
    "| page faults/step | system s/step |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    tflops = r["flop"] / r["seconds"] / 1e12
    compile_s = "" if np.isnan(r["compile"]) else f"{r['compile']:.1f}"
    gflop = "" if np.isnan(r["flop"]) else f"{r['flop'] / 1e9:.0f}"
    tflop_s = "" if np.isnan(tflops) else f"{tflops:.3f}"
    spread = f"{r['spread'][0]:.4f}–{r['spread'][1]:.4f}"
    print(
      f"| {r['impl']} | {r['batch']} | {r['dtype']} | {r['seconds']:.4f} | {spread} "
      f"| {r['batch'] / r['seconds']:.2f} | {compile_s} | {gflop} | {tflop_s} | {r['mfu']} "
      f"| {r['faults']:.0f} | {r['system']:.3f} |"
    )
  for dtype in sorted({r["dtype"] for r in rows}):
    print(f"\n{dtype} matmul rate measured on this device: {_common.matmul_rate(dtype) / 1e12:.3f} TFLOP/s")


if __name__ == "__main__":
  app.run(main)
