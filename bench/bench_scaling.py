"""Scaling of the sharded steps over 1/2/4/8 simulated CPU devices: same answers, one compile each.

Correctness of scaling, not speed: the devices are XLA host-platform devices sharing this machine's
cores, so the time column shows sharding overhead, not a speed-up. For each device count the same
global batch goes through the same steps from the same initial state:

  * SA-GAN: one critic update and one generator update (the CPU test scale, 32×16, batch 8);
  * IDE: one SGD step of a small ResNet (32×16, batch 8), whose batch norm then reduces over the
    sharded batch (global statistics).

Columns: the step's losses; the largest gradient difference against 1 device, relative to the
largest gradient entry (read from the optimizer's first moment after its first step, which is the
gradient times a constant: Adam's (1 - b1)·g, SGD momentum's trace); the largest parameter-update
difference, relative to the largest update; the share of parameters whose update differs by more
than 1e-5 of it; s/step after compilation. Differences are float32 reduction order (a sum over 8
shards adds in another order than one over 1). Adam's first step moves every entry by about lr·sign(g),
so where a gradient entry is itself rounding noise its sign, and the update, can flip (a difference
of up to 2 in the update column) while the gradients agree to float32 precision.

Usage: python -m bench.bench_scaling [--devices 1,2,4,8] [--repeats 5]
"""

from __future__ import annotations

import os
import sys

_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()  # before jax is imported
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import time  # noqa: E402  (after the device count, which must precede jax)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402

from bench import _common  # noqa: E402
from sagan_jax import parallel  # noqa: E402
from sagan_jax.reid import ide  # noqa: E402
from sagan_jax.reid import train as ide_train  # noqa: E402
from sagan_jax.sagan import SAGAN, apply_tiny_scale, make_steps, sagan_config  # noqa: E402
from sagan_jax.sagan.steps import create_state  # noqa: E402
from sagan_jax.sagan.train import optimizers  # noqa: E402

flags.DEFINE_string("devices", "1,2,4,8", "comma list of simulated CPU device counts")
flags.DEFINE_list("steps", ["sagan", "ide"], "which steps to time: sagan (critic + generator), ide")
flags.DEFINE_integer("repeats", 5, "timed repetitions (median)")


def _timed(fn, repeats):
  fn()  # compile
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return out, (time.perf_counter() - start) / repeats


def sagan_run(n: int, batch: dict, repeats: int):
  config = apply_tiny_scale(sagan_config())
  model, tx = SAGAN(config), optimizers(config, 0)
  mesh = parallel.make_mesh(n)
  state0 = create_state(model, tx, 0, mesh)
  critic_step, generator_step = make_steps(model, tx, mesh)
  batch = jax.device_put(batch, parallel.batch_sharded(mesh))

  def both():  # the steps donate their state: each call starts from a copy of the initial one
    state, critic_metrics = critic_step(jax.tree.map(jnp.copy, state0), batch)
    state, generator_metrics = generator_step(state, batch)
    return state.params, first_moments(state.opt_state), {**critic_metrics, **generator_metrics}

  (params, moments, metrics), seconds = _timed(both, repeats)
  compiles = critic_step._cache_size() + generator_step._cache_size()
  return jax.device_get(params), jax.device_get(moments), jax.device_get(metrics), seconds, compiles


def ide_run(n: int, images, labels, repeats: int):
  cfg = ide.ide_config()
  cfg.image_size, cfg.stage_sizes, cfg.width = (32, 16), (1, 1, 1, 1), 8
  model = ide.make_model(cfg, num_classes=10)
  optimizer = ide_train.make_optimizer(cfg, steps_per_epoch=10)
  mesh = parallel.make_mesh(n)
  step = ide.make_train_step(model, optimizer, mesh)
  data = parallel.batch_sharded(mesh)
  images, labels = jax.device_put(images, data), jax.device_put(labels, data)
  state0 = ide.create_state(model, optimizer, cfg.image_size, 0, mesh)

  def one():  # the step donates its state: each call starts from a copy of the initial one
    state, metrics = step(jax.tree.map(jnp.copy, state0), images, labels)
    return state.params, first_moments(state.opt_state), metrics

  (params, moments, metrics), seconds = _timed(one, repeats)
  return jax.device_get(params), jax.device_get(moments), jax.device_get(metrics), seconds, step._cache_size()


def first_moments(opt_state):
  """The optimizer's gradient accumulators (Adam's mu, SGD momentum's trace): after one step, the
  gradient times a constant."""
  kinds = (optax.ScaleByAdamState, optax.TraceState)
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, kinds)) if isinstance(s, kinds)]
  return [s.mu if isinstance(s, optax.ScaleByAdamState) else s.trace for s in found]


def relative_difference(tree, reference) -> float:
  leaves = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
  t, r = leaves(tree), leaves(reference)
  return float(np.abs(t - r).max() / np.abs(r).max())


def compare(params, reference, initial) -> tuple[float, float]:
  """(max |Δupdate| / max |update|, share of entries whose update differs by > 1e-5 of max |update|)."""
  leaves = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
  p, r, i = leaves(params), leaves(reference), leaves(initial)
  scale = np.abs(r - i).max()
  diff = np.abs(p - r)
  return float(diff.max() / scale), float((diff > 1e-5 * scale).mean())


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  allocator = _common.apply(args)
  counts = [int(d) for d in args.devices.split(",")]
  if max(counts) > jax.device_count():
    sys.exit(
      f"--devices asks for {max(counts)} devices, {jax.device_count()} exist (XLA_FLAGS={os.environ['XLA_FLAGS']!r})"
    )
  rng = np.random.default_rng(0)
  gan_batch = {k: rng.uniform(-1, 1, (8, 32, 16, c)).astype(np.float32) for k, c in (("x", 3), ("y", 3))}
  gan_batch.update({k: (rng.random((8, 32, 16, 1)) > 0.5).astype(np.float32) for k in ("x_mask", "y_mask")})
  ide_images = rng.uniform(-1, 1, (8, 32, 16, 3)).astype(np.float32)
  ide_labels = rng.integers(0, 10, 8).astype(np.int32)

  rows = []
  tiny = apply_tiny_scale(sagan_config())
  cfg = ide.ide_config()
  cfg.image_size, cfg.stage_sizes, cfg.width = (32, 16), (1, 1, 1, 1), 8
  initial = {
    "sagan": lambda: create_state(SAGAN(tiny), optimizers(tiny, 0), 0).params,
    "ide": lambda: (
      ide.create_state(
        ide.make_model(cfg, 10), ide_train.make_optimizer(cfg, 10), (32, 16), 0, parallel.make_mesh(1)
      ).params
    ),
  }
  table = {
    "sagan": ("SA-GAN critic + generator", sagan_run, (gan_batch,), ("critic/loss", "generator/loss")),
    "ide": ("IDE SGD step", ide_run, (ide_images, ide_labels), ("loss",)),
  }
  unknown = [s for s in args.steps if s not in table]
  if unknown:
    raise app.UsageError(f"--steps: unknown {unknown}; choose from {', '.join(table)}")
  for key in args.steps:
    name, run, inputs, losses = table[key]
    start_params = jax.device_get(initial[key]())
    reference = reference_moments = None
    for n in counts:
      params, moments, metrics, seconds, compiles = run(n, *inputs, args.repeats)
      if reference is None:
        reference, reference_moments = params, moments
      worst, share = compare(params, reference, start_params)
      gradient = relative_difference(moments, reference_moments)
      loss_text = ", ".join(f"{k} {float(metrics[k]):.6f}" for k in losses if k in metrics)
      rows.append((name, n, loss_text, gradient, worst, share, seconds, compiles))
  print(f"Sharded steps over simulated CPU devices (same global batch 8, same initial state); {allocator}")
  print(f"device: {_common.device_line()}")
  print()
  print(
    f"| step | devices | losses | max gradient diff vs {counts[0]} device(s) | max update diff | "
    "updates differing > 1e-5 | s/step | compilations |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for name, n, loss_text, gradient, worst, share, seconds, compiles in rows:
    print(
      f"| {name} | {n} | {loss_text} | {gradient:.2e} | {worst:.2e} | {100 * share:.2f} % | {seconds:.3f} | "
      f"{compiles} |"
    )


if __name__ == "__main__":
  app.run(main)
