"""Checkpoint save and restore times of an SA-GAN state: Orbax's default array handler against ours.

Why `sagan_jax.checkpoint` writes arrays under `MIN_REPLICA_SLICE_BYTES` per slice whole: Orbax's
default (on CPU and TPU) splits every replicated array into one slice per device, and each new
slice shape is an XLA program compiled on the spot. Each handler is timed in a fresh process (the
compiled slices are cached per process), on the state replicated over every device, as training
holds it.

Usage: python -m bench.bench_checkpoint [--scale cpu|synthetic|paper] [--devices 4] [--saves 3] [--restores 3]

On a CPU host ``--devices`` simulates that many devices (the tests use 4); elsewhere it is ignored
and every local device is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

from bench import _common

flags.DEFINE_enum("scale", "synthetic", ["cpu", "synthetic", "paper"], "network size (as bench_sagan_step)")
flags.DEFINE_integer("devices", 4, "simulated CPU devices (CPU hosts only)")
flags.DEFINE_integer("saves", 3, "saves timed in turn (the first pays for the slices' compiles)")
flags.DEFINE_integer("restores", 3, "restores timed in turn after the saves (their mean is reported)")
flags.DEFINE_string("child", None, "(internal) the handler to time in this process")

HANDLERS = ("orbax default", "sagan_jax")


def _measure(handler: str, scale: str, saves: int, restores: int) -> dict:
  """In this process: ``saves`` saves of a fresh replicated SA-GAN state, then ``restores`` restores."""
  import time

  import jax
  import orbax.checkpoint as ocp

  from sagan_jax import checkpoint, parallel
  from sagan_jax.sagan import SAGAN
  from sagan_jax.sagan.steps import create_state
  from sagan_jax.sagan.train import optimizers

  c = _common.sagan_config_at(scale)
  mesh = parallel.make_mesh()
  state = create_state(SAGAN(c), optimizers(c, 0), 0, mesh)
  leaves = jax.tree.leaves(state)
  times = []
  with tempfile.TemporaryDirectory() as directory:
    if handler == "sagan_jax":
      ckpt = checkpoint.StageCheckpoints(directory)
      save, wait, restore = ckpt.save, ckpt.wait, lambda: ckpt.restore(state)[0]
    else:
      manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True))
      save = lambda step, tree: manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree)))
      wait = manager.wait_until_finished
      abstract = checkpoint._abstract(state)  # the template StageCheckpoints restored with before
      restore = lambda: manager.restore(
        manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
      )["state"]
    for step in range(saves):
      start = time.perf_counter()
      save(step, state)
      wait()
      times.append(time.perf_counter() - start)
    restore_s = []
    for _ in range(restores):
      start = time.perf_counter()
      jax.block_until_ready(restore())
      restore_s.append(time.perf_counter() - start)
  return {
    "arrays": len(leaves),
    "mib": sum(x.size * x.dtype.itemsize for x in leaves) / 2**20,
    "devices": len(mesh.devices.flat),
    "save_s": times,
    "restore_s": restore_s,
  }


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  if args.child is not None:
    print(json.dumps(_measure(args.child, args.scale, args.saves, args.restores)))
    return
  if args.restores < 1:
    raise app.UsageError("--restores: at least 1")
  if args.saves < 2:
    raise app.UsageError("--saves: at least 2 (the first save and those after it are reported apart)")
  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  rows = []
  for handler in HANDLERS:
    env = dict(os.environ)
    flags_ = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join([*flags_, f"--xla_force_host_platform_device_count={args.devices}"])
    command = [sys.executable, "-m", "bench.bench_checkpoint", f"--child={handler}", f"--scale={args.scale}"]
    command += [f"--saves={args.saves}", f"--restores={args.restores}"]
    out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
      raise SystemExit(f"error: the {handler!r} measurement failed:\n{out.stderr[-2000:]}")
    rows.append((handler, json.loads(out.stdout.strip().splitlines()[-1])))
  first = rows[0][1]
  print(
    f"SA-GAN state at the {args.scale} scale: {first['arrays']} arrays, {first['mib']:.1f} MiB, "
    f"replicated over {first['devices']} devices"
  )
  print("| handler | first save, s | later saves (mean), s | restores (mean), s |")
  print("|---|---|---|---|")
  for handler, r in rows:
    later = sum(r["save_s"][1:]) / len(r["save_s"][1:])
    restore = sum(r["restore_s"]) / len(r["restore_s"])
    print(f"| {handler} | {r['save_s'][0]:.2f} | {later:.2f} | {restore:.2f} |")


if __name__ == "__main__":
  app.run(main)
