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
  h_true: np.ndarray  # [N, 3, 3] each image's true T_xy (target → source frame, normalised)
  names: tuple[str, ...]
  # The distance that scores viewpoint_error 1: how far the benchmark's view homography moves the
  # corners. Shared by every subset, so a group whose true warp is the identity is scored in it too.
  reference: float


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
    example = {
      "image": np.asarray(Image.open(os.path.join(split, name)).convert("RGB")),
      "mask": np.asarray(Image.open(os.path.join(masks, stem + ".png")).convert("L"))[..., None],
      "person_id": 0,
      "camera_id": 0,
    }
    sources.append(pipeline.preprocess(example, image_size, "data", flip=False)["image"])
    rgba = np.asarray(Image.open(os.path.join(benchmark_dir, paired["dir"], synthetic.paired_name(name))))
    truths.append(
      pipeline.preprocess(
        {"image": rgba[..., :3], "mask": rgba[..., 3:], "person_id": 0, "camera_id": 0}, image_size, "data", flip=False
      )["image"]
    )
  # A high source camera already sees the target's viewpoint: its true warp is the identity.
  viewpoints = paired.get("viewpoints", ["low"] * len(paired["images"]))
  h_view = np.asarray(meta["view_homography"], np.float32)
  h_true = np.stack([h_view if v == "low" else np.eye(3, dtype=np.float32) for v in viewpoints])
  reference = float(fidelity.corner_distance(jnp.asarray(h_view), jnp.eye(3)))
  return PairedSet(np.stack(sources), np.stack(truths), h_true, tuple(paired["images"]), reference)


def subset(paired_set: PairedSet, names) -> PairedSet:
  """The images of ``paired_set`` whose names are in ``names`` (one viewpoint group's share)."""
  keep = np.asarray([n in set(names) for n in paired_set.names])
  return PairedSet(
    paired_set.source[keep],
    paired_set.truth[keep],
    paired_set.h_true[keep],
    tuple(n for n, k in zip(paired_set.names, keep) if k),
    paired_set.reference,
  )


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


def translate_fixed(
  model: SAGAN, params, paired: PairedSet, key: jax.Array, num_codes: int = NUM_CODES, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
  """``(adapted [M, N, H, W, 3], corners [M, N, 4, 2])`` of the paired images under ``num_codes`` fixed codes.

  The codes are drawn once from ``key`` and shared by every image, so "code k" names one warp
  policy; pass the same key at every call to follow the same codes through training. ``params``
  must be addressable from this process (`parallel.local_copy`).
  """
  codes = model.spatial_codes(key, num_codes)
  adapted, corners = [], []
  for start in range(0, len(paired.source), batch_size):
    chunk = paired.source[start : start + batch_size]
    a, c = _translate_fixed_codes(model, params, jnp.asarray(chunk[..., :3]), jnp.asarray(chunk[..., 3:]), codes)
    adapted.append(np.asarray(a))
    corners.append(np.asarray(c))
  return np.concatenate(adapted, axis=1), np.concatenate(corners, axis=1)


def score(paired: PairedSet, adapted: np.ndarray, corners: np.ndarray) -> dict[str, float]:
  """``fidelity/pixel_error``, ``fidelity/viewpoint_error`` (mean, and per code ``_code{k}``) and
  ``fidelity/code_diversity``."""
  num_codes = adapted.shape[0]
  truth, mask, source = paired.truth[..., :3], paired.truth[..., 3:], paired.source[..., :3]
  pixel = fidelity.pixel_error(
    adapted.reshape(-1, *adapted.shape[2:]),
    np.tile(truth, (num_codes, 1, 1, 1)),
    np.tile(source, (num_codes, 1, 1, 1)),
    np.tile(mask, (num_codes, 1, 1, 1)),
  )
  true_corners = fidelity.map_corners(jnp.asarray(paired.h_true))  # [N, 4, 2]
  per_code = np.asarray(
    jnp.mean(fidelity.corner_viewpoint_error(jnp.asarray(corners), true_corners, paired.reference), axis=1)
  )
  out = {
    "fidelity/pixel_error": float(pixel),
    "fidelity/viewpoint_error": float(np.mean(per_code)),
    "fidelity/code_diversity": float(fidelity.corner_code_diversity(jnp.swapaxes(jnp.asarray(corners), 0, 1))),
  }
  out.update({f"fidelity/viewpoint_error_code{k}": float(v) for k, v in enumerate(per_code)})
  return out


def measure(
  model: SAGAN, params, paired: PairedSet, key: jax.Array, num_codes: int = NUM_CODES, batch_size: int = 64
) -> dict[str, float]:
  """`score` of `translate_fixed`: one translator's fidelity on the paired images."""
  return score(paired, *translate_fixed(model, params, paired, key, num_codes, batch_size))


def measure_groups(translators, key: jax.Array, num_codes: int = NUM_CODES) -> dict[str, float]:
  """The fidelity of several translators, each on its own share of the paired images, scored as one set.

  ``translators``: ``(model, params, paired_subset)`` triples (one per viewpoint group).
  """
  parts = [(subset, *translate_fixed(model, params, subset, key, num_codes)) for model, params, subset in translators]
  parts = [p for p in parts if len(p[0].names)]
  joined = PairedSet(
    *(np.concatenate([getattr(p[0], f) for p in parts]) for f in ("source", "truth", "h_true")),
    tuple(n for p in parts for n in p[0].names),
    parts[0][0].reference,
  )
  return score(joined, np.concatenate([p[1] for p in parts], axis=1), np.concatenate([p[2] for p in parts], axis=1))


def as_result(metrics: dict[str, float]) -> dict:
  """The ``fidelity`` entry of ``results.json``: the three scores, plus the per-code viewpoint errors."""
  strip = lambda k: k.split("/", 1)[1]
  out = {strip(k): v for k, v in metrics.items() if not k.startswith("fidelity/viewpoint_error_code")}
  out["viewpoint_error_per_code"] = [
    v for k, v in sorted(metrics.items()) if k.startswith("fidelity/viewpoint_error_code")
  ]
  return out
