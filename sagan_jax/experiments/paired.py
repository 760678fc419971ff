"""The synthetic benchmark's paired ground truth, and SA-GAN's fidelity scores against it.

`load` reads the source images that have a paired ground truth (``DIR/paired/``, listed in
``benchmark.json``) at the GAN's image size; `measure` translates them with a fixed set of spatial
codes and scores the result with `sagan_jax.fidelity`.
"""

from __future__ import annotations

import functools
import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from sagan_jax import fidelity, geometry
from sagan_jax.data import layouts, pipeline, synthetic
from sagan_jax.models import stm as stm_lib
from sagan_jax.sagan.model import SAGAN, XY

# Spatial codes scored per image: enough for code_diversity's pairs, few enough to cost under a second.
NUM_CODES = 4


class PairedSet(NamedTuple):
  source: np.ndarray  # [N, H, W, 4] RGB in [-1, 1] + mask in {0, 1}: x as the SA-GAN stage reads it
  truth: np.ndarray  # [N, H, W, 4] the ideal translation, RGB + its person mask
  h_true: np.ndarray  # [3, 3] the true T_xy (target → source frame, normalised)
  names: tuple[str, ...]


def available(benchmark_dir: str) -> bool:
  meta = os.path.join(benchmark_dir, "benchmark.json")
  if not os.path.isfile(meta):
    return False
  with open(meta) as f:
    return "paired" in json.load(f)


def load(benchmark_dir: str, image_size: tuple[int, int]) -> PairedSet:
  """The paired subset at ``image_size``, resized as the input pipeline resizes training images."""
  with open(os.path.join(benchmark_dir, "benchmark.json")) as f:
    meta = json.load(f)
  paired = meta["paired"]
  split = os.path.join(benchmark_dir, "source", layouts.MARKET_ROOT, paired["source_split"])
  masks = os.path.join(benchmark_dir, "source", layouts.MASKS_ROOT, layouts.MARKET_ROOT, paired["source_split"])
  sources, truths = [], []
  for name in paired["images"]:
    stem = os.path.splitext(name)[0]
    example = {"image": np.asarray(Image.open(os.path.join(split, name)).convert("RGB")),
               "mask": np.asarray(Image.open(os.path.join(masks, stem + ".png")).convert("L"))[..., None],
               "person_id": 0, "camera_id": 0}
    sources.append(pipeline.preprocess(example, image_size, "data", flip=False)["image"])
    rgba = np.asarray(Image.open(os.path.join(benchmark_dir, paired["dir"], synthetic.paired_name(name))))
    truths.append(pipeline.preprocess({"image": rgba[..., :3], "mask": rgba[..., 3:], "person_id": 0, "camera_id": 0},
                                      image_size, "data", flip=False)["image"])
  return PairedSet(np.stack(sources), np.stack(truths), np.asarray(meta["view_homography"], np.float32),
                   tuple(paired["images"]))


def _warp_corners(model: SAGAN, p: jax.Array) -> jax.Array:
  """``[..., 4, 2]``: where each predicted warp sends the image corners."""
  if model.transform == "tps":
    h, w = model.config.image_size
    offsets = p.reshape(-1, *model.tps_control_hw, 2)
    grid = geometry.tps_grid(offsets, (h, w))
    corners = jnp.stack([grid[:, 0, 0], grid[:, 0, -1], grid[:, -1, -1], grid[:, -1, 0]], axis=1)
    return corners.reshape(*p.shape[:-1], 4, 2)
  return fidelity.map_corners(stm_lib.transform_matrices(p, model.transform))


@functools.partial(jax.jit, static_argnames=("model",))
def _translate_fixed_codes(model: SAGAN, params, images, masks, codes):
  """``(adapted [M, B, H, W, 3], corners [M, B, 4, 2])`` for codes ``[M, Z]`` shared by every image."""
  masks = model.masks_for_input(masks)

  def one_code(z):
    a = model.adapt(params, XY, images, masks, jnp.broadcast_to(z, (images.shape[0], z.shape[-1])))
    if a.transform is None:
      corners = jnp.broadcast_to(jnp.asarray(fidelity.CORNERS, jnp.float32), (images.shape[0], 4, 2))
    else:
      corners = _warp_corners(model, a.transform)
    return a.adapted, corners

  return jax.lax.map(one_code, codes)


def measure(model: SAGAN, params, paired: PairedSet, key: jax.Array, num_codes: int = NUM_CODES,
            batch_size: int = 64) -> dict[str, float]:
  """``fidelity/pixel_error``, ``fidelity/viewpoint_error`` (mean and per code ``_code{k}``), ``fidelity/code_diversity``.

  The codes are drawn once from ``key`` and shared by every image, so "code k" names one warp
  policy; pass the same key at every call to follow the same codes through training. ``params``
  must be addressable from this process (`parallel.local_copy`).
  """
  codes = model.spatial_codes(key, num_codes)
  adapted, corners = [], []
  for start in range(0, len(paired.source), batch_size):
    chunk = paired.source[start:start + batch_size]
    a, c = _translate_fixed_codes(model, params, jnp.asarray(chunk[..., :3]), jnp.asarray(chunk[..., 3:]), codes)
    adapted.append(np.asarray(a))
    corners.append(np.asarray(c))
  adapted, corners = np.concatenate(adapted, axis=1), np.concatenate(corners, axis=1)  # [M, N, ...]
  truth, mask, source = paired.truth[..., :3], paired.truth[..., 3:], paired.source[..., :3]
  pixel = fidelity.pixel_error(adapted.reshape(-1, *adapted.shape[2:]), np.tile(truth, (num_codes, 1, 1, 1)),
                               np.tile(source, (num_codes, 1, 1, 1)), np.tile(mask, (num_codes, 1, 1, 1)))
  true_corners = fidelity.map_corners(jnp.asarray(paired.h_true))
  per_code = np.asarray(jnp.mean(fidelity.corner_viewpoint_error(jnp.asarray(corners), true_corners), axis=1))
  out = {"fidelity/pixel_error": float(pixel), "fidelity/viewpoint_error": float(np.mean(per_code)),
         "fidelity/code_diversity": float(fidelity.corner_code_diversity(jnp.swapaxes(jnp.asarray(corners), 0, 1)))}
  out.update({f"fidelity/viewpoint_error_code{k}": float(v) for k, v in enumerate(per_code)})
  return out


def as_result(metrics: dict[str, float]) -> dict:
  """The ``fidelity`` entry of ``results.json``: the three scores, plus the per-code viewpoint errors."""
  strip = lambda k: k.split("/", 1)[1]
  out = {strip(k): v for k, v in metrics.items() if not k.startswith("fidelity/viewpoint_error_code")}
  out["viewpoint_error_per_code"] = [v for k, v in sorted(metrics.items()) if k.startswith("fidelity/viewpoint_error_code")]
  return out
