"""Converts a torchvision ResNet-50 state dict to this project's ResNet variables.

    python -m sagan_jax.reid.convert_torchvision resnet50.pth OUT_DIR

writes an Orbax checkpoint with ``{"params", "batch_stats"}`` of `sagan_jax.reid.resnet.ResNet`
(the IDE backbone); an IDE config loads it with ``config.reid.pretrained = OUT_DIR``. torchvision's
``fc`` (the 1000 ImageNet classes) is dropped: IDE replaces it. torch is imported only by `main`,
to read the ``.pth`` file; `convert_state_dict` works on numpy arrays.

Layouts: convolution weights OIHW → HWIO; batch norm ``weight``/``bias``/``running_mean``/
``running_var`` → ``scale``/``bias`` (params) and ``mean``/``var`` (batch_stats);
``num_batches_tracked`` is unused (momentum is fixed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import app

from sagan_jax.errors import ConfigError
from sagan_jax.reid.resnet import RESNET50_STAGES

COMMAND = "python -m sagan_jax.reid.convert_torchvision resnet50.pth OUT_DIR"


def _torch_prefixes(stage_sizes: Sequence[int]):
  """(torch module prefix, our module path, kind) for every conv and batch norm of the backbone."""
  yield "conv1", ("conv1",), "conv"
  yield "bn1", ("bn1",), "bn"
  for stage, blocks in enumerate(stage_sizes):
    for i in range(blocks):
      ours, theirs = f"layer{stage + 1}_{i}", f"layer{stage + 1}.{i}"
      for k in (1, 2, 3):
        yield f"{theirs}.conv{k}", (ours, f"conv{k}"), "conv"
        yield f"{theirs}.bn{k}", (ours, f"bn{k}"), "bn"
      if i == 0:
        yield f"{theirs}.downsample.0", (ours, "downsample_conv"), "conv"
        yield f"{theirs}.downsample.1", (ours, "downsample_bn"), "bn"


def _put(tree: dict, path: tuple[str, ...], key: str, value: np.ndarray) -> None:
  for p in path:
    tree = tree.setdefault(p, {})
  tree[key] = value


def convert_state_dict(state_dict: Mapping[str, np.ndarray], stage_sizes: Sequence[int] = RESNET50_STAGES) -> dict:
  """torchvision ``resnet50().state_dict()`` (as numpy) → ``{"params": ..., "batch_stats": ...}``.

  Every backbone tensor must be present and used; unexpected keys other than ``fc.*`` and
  ``*.num_batches_tracked`` are an error naming them (a different architecture was given).
  """
  params, stats, used = {}, {}, set()

  def take(name: str) -> np.ndarray:
    if name not in state_dict:
      raise KeyError(f"state dict has no {name!r}: not a torchvision ResNet with stages {tuple(stage_sizes)}")
    used.add(name)
    return np.asarray(state_dict[name], np.float32)

  for prefix, path, kind in _torch_prefixes(stage_sizes):
    if kind == "conv":
      _put(params, path, "kernel", np.transpose(take(f"{prefix}.weight"), (2, 3, 1, 0)))
    else:
      _put(params, path, "scale", take(f"{prefix}.weight"))
      _put(params, path, "bias", take(f"{prefix}.bias"))
      _put(stats, path, "mean", take(f"{prefix}.running_mean"))
      _put(stats, path, "var", take(f"{prefix}.running_var"))
  unexpected = sorted(
    k for k in state_dict if k not in used and not k.startswith("fc.") and not k.endswith("num_batches_tracked")
  )
  if unexpected:
    raise KeyError(
      f"unexpected tensors {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}: not a torchvision "
      f"ResNet with stages {tuple(stage_sizes)}"
    )
  return {"params": params, "batch_stats": stats}


def save(variables: dict, out_dir: str) -> None:
  with ocp.StandardCheckpointer() as checkpointer:  # leaving the block waits for the asynchronous write
    checkpointer.save(os.path.abspath(out_dir), variables)


def check(path: str, field: str = "config.ide.pretrained") -> None:
  """Refuses a ``path`` that holds no converted backbone, naming ``field`` and how to make one."""
  if not os.path.isdir(path):
    raise ConfigError(f"{field}={path!r} is not a folder: make it with {COMMAND}")
  if not os.path.isfile(os.path.join(path, "_METADATA")):
    raise ConfigError(f"{field}={path!r} holds no converted ResNet-50 (no _METADATA file): make it with {COMMAND}")


def load(path: str) -> dict:
  """Reads a converted backbone (numpy pytree) written by `save`."""
  check(path)
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(os.path.abspath(path))


def main(argv: Sequence[str]) -> None:
  if len(argv) != 3:
    raise app.UsageError(f"usage: {COMMAND}")
  try:
    import torch  # noqa: PLC0415  (only the converter needs torch, to read the .pth file)
  except ImportError as e:
    raise SystemExit("reading a .pth file needs torch: pip install torch (CPU wheel); the core never imports it") from e
  state = torch.load(argv[1], map_location="cpu", weights_only=True)
  if "state_dict" in state:
    state = state["state_dict"]
  variables = convert_state_dict({k: v.numpy() for k, v in state.items()})
  save(variables, argv[2])
  count = sum(np.size(v) for v in jax.tree_util.tree_leaves(variables))
  print(f"wrote {argv[2]}: {count:,} backbone values (fc dropped)")


if __name__ == "__main__":
  app.run(main)
