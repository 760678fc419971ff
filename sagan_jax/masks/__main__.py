"""``python -m sagan_jax.masks {train,infer,teacher} ...``: the mask U-Net's command line.

train    fit the U-Net:  --workdir=W --config.source=pairs --config.images_dir=DIR [--config.masks_dir=M]
                         (or --config.source=lip --config.images_dir=LIP_ROOT); any --config.<field>=value
infer    write masks:    --workdir=W --data_dir=MANUAL_DIR [--out=MANUAL_DIR/masks]
teacher  pseudo-labels:  --data_dir=DIR [--out=DIR/masks] [--model_dir=~/.cache/sagan_jax]
                         (needs requirements-masks.txt; downloads the mediapipe wheel once)
"""

from __future__ import annotations

import os
import sys

import jax
from absl import app, flags

from sagan_jax import cli, loop, parallel, preemption, workdir
from sagan_jax.masks import infer, sources, teacher
from sagan_jax.masks import train as unet_train

_CONFIG = cli.define_config_file(
  "config", os.path.join(os.path.dirname(__file__), "config.py"), "the U-Net training config"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "U-Net checkpoint directory (train, infer)")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "directory of images to mask (infer, teacher)")
_OUT = flags.DEFINE_string("out", None, "mask tree to write (default DATA_DIR/masks)")
_MODEL_DIR = flags.DEFINE_string(
  "model_dir",
  os.path.join(os.path.expanduser("~"), ".cache", "sagan_jax"),
  "where the teacher's model file is kept (teacher)",
)
_BATCH = flags.DEFINE_integer("batch_size", 32, "images per U-Net forward pass (infer)")

COMMANDS = ("train", "infer", "teacher")


def _required(flag, command):
  if not flag.value:
    raise app.UsageError(f"`{command}` needs --{flag.name}")
  return flag.value


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"usage: python -m sagan_jax.masks {{{','.join(COMMANDS)}}} [flags]\n{__doc__}")
  cli.cpu_setup()  # the U-Net keeps flax's layers; the host allocator settings apply
  cli.quiet_logging()
  cli.exit_on_user_error(_run, argv[1])


def _run(command: str) -> None:
  if command == "train":
    config = _CONFIG.value
    where = _required(_WORKDIR, command)
    workdir.check_path(where)
    with preemption.SigtermFlag() as sigterm:
      try:
        _, record = unet_train.train(
          config,
          sources.training_source(config),
          where,
          seed=config.seed,
          log_dir=os.path.join(where, "tensorboard"),
          stop=lambda: sigterm.raised,
        )
      except loop.Stopped as e:
        print(f"preempted (SIGTERM): U-Net saved at step {e.step}; rerun the same command to resume", file=sys.stderr)
        sys.exit(preemption.PREEMPTED_EXIT)
    print(f"U-Net trained: held-out IoU {record['heldout_iou']:.3f} on {record['num_heldout']} masks")
  elif command == "infer":
    data_dir = _required(_DATA_DIR, command)
    out = _OUT.value or infer.default_out_dir(data_dir)
    mesh = parallel.make_mesh()
    model, params, record = unet_train.load(_required(_WORKDIR, command), mesh)
    predict = unet_train.make_predict_fn(model, mesh)
    batch = _BATCH.value - _BATCH.value % mesh.size or mesh.size
    counts = infer.infer(
      lambda rgb: predict(params, rgb),
      data_dir,
      out,
      tuple(record["config"]["image_size"]),
      batch,
      producer=infer.unet_producer({**record["config"], "seed": record["seed"]}),
    )
    print(f"masks in {out}: {counts['written']} written, {counts['skipped']} already there")
  else:
    data_dir = _required(_DATA_DIR, command)
    out = _OUT.value or infer.default_out_dir(data_dir)
    model = teacher.SelfieTeacher(teacher.fetch_model(_MODEL_DIR.value))
    counts = teacher.label(model, data_dir, out)
    print(f"teacher masks in {out}: {counts['written']} written, {counts['skipped']} already there")
  jax.effects_barrier()


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
