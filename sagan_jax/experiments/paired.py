"""The synthetic benchmark's paired ground truth, and SA-GAN's fidelity scores against it.

`load` reads one of the two paired sets at the GAN's image size: ``"heldout"`` (source *test*
images, never a GAN input: what ``results.json`` ``fidelity`` reports) or ``"train"`` (the GAN's own
inputs: ``fidelity.train``). Each source image has one truth per target view. `measure` translates
them with a fixed set of spatial codes and scores the result with `sagan_jax.fidelity`;
`references` scores what trivial translations achieve on the same set (the figures a translation
must beat to count as one).
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
from sagan_jax.sagan import steps as sagan_steps
from sagan_jax.sagan.model import SAGAN, XY

# Spatial codes scored during training (cheap) and for the final figures (coverage needs several).
TRAINING_CODES = 4
FINAL_CODES = 10
SETS = ("heldout", "train")
# What the final scores are called in results.json (`fidelity.*`), in the order tables show them.
FINAL_SCORES = (
  "pixel_error",
  "detail_error",
  "viewpoint_error",
  "coverage_error",
  "coverage_error_one_code",
  "precision_error",
  "code_diversity",
)


class PairedSet(NamedTuple):
  source: np.ndarray  # [N, H, W, 4] RGB in [-1, 1] + mask in {0, 1}: x as the SA-GAN stage reads it
  truth: np.ndarray  # [N, K, H, W, 4] the ideal translation into each of K target views, RGB + person mask
  h_true: np.ndarray  # [N, K, 3, 3] each image's true T_xy into each view (target → source frame, normalised)
  h_central: np.ndarray  # [N, 3, 3] its true T_xy into the central view (the views' mean tilt)
  names: tuple[str, ...]  # folder/name of each source image
  # The distance that scores viewpoint errors 1: how far the central view moves the corners. Shared
  # by every subset, so a group whose central truth is the identity is scored in the same unit.
  reference: float


def available(benchmark_dir: str) -> bool:
  meta = os.path.join(benchmark_dir, "benchmark.json")
  if not os.path.isfile(meta):
    return False
  with open(meta) as f:
    return "heldout" in json.load(f).get("paired", {})


def _read(path: str, mode: str) -> np.ndarray:
  return np.asarray(Image.open(path).convert(mode))


@functools.lru_cache(maxsize=4)
def load(benchmark_dir: str, image_size: tuple[int, int], which: str = "heldout") -> PairedSet:
  """Paired set ``which`` at ``image_size``, resized as the input pipeline resizes training images.

  Cached (a stage reads each set several times); the arrays are shared, never to be written to.
  """
  if which not in SETS:
    raise ValueError(f"paired set {which!r}: expected one of {SETS}")
  with open(os.path.join(benchmark_dir, "benchmark.json")) as f:
    meta = json.load(f)
  paired = meta["paired"]
  root = os.path.join(benchmark_dir, paired["root"])
  masks = os.path.join(benchmark_dir, "source", layouts.MASKS_ROOT, layouts.MARKET_ROOT)
  prepare = lambda rgb, mask: pipeline.preprocess(
    {"image": rgb, "mask": mask, "person_id": 0, "camera_id": 0}, image_size, "data", flip=False
  )["image"]
  views = len(meta["view_homographies"])
  sources, truths = [], []
  for path in paired[which]:
    stem = os.path.splitext(path)[0]
    sources.append(
      prepare(_read(os.path.join(root, path), "RGB"), _read(os.path.join(masks, stem + ".png"), "L")[..., None])
    )
    rgba = [
      _read(os.path.join(benchmark_dir, paired["dir"], synthetic.paired_name(path, k)), "RGBA") for k in range(views)
    ]
    truths.append(np.stack([prepare(t[..., :3], t[..., 3:]) for t in rgba]))
  spec = synthetic.BenchmarkSpec(**meta["spec"])
  high = [v == "high" for v in paired["viewpoints"][which]]
  h_true = np.stack([np.stack(synthetic.true_homographies(spec, h)) for h in high]).astype(np.float32)
  central = np.asarray(meta["central_homography"], np.float32)
  h_central = np.stack([np.eye(3, dtype=np.float32) if h else central for h in high])
  reference = float(fidelity.corner_distance(jnp.asarray(central), jnp.eye(3)))
  empty = np.zeros((0, *image_size, 4), np.float32)
  return PairedSet(
    np.stack(sources) if sources else empty,
    np.stack(truths) if truths else empty[:, None],
    h_true.reshape(len(high), views, 3, 3),
    h_central.reshape(len(high), 3, 3),
    tuple(paired[which]),
    reference,
  )


def subset(paired_set: PairedSet, names) -> PairedSet:
  """The images of ``paired_set`` whose names are in ``names`` (one viewpoint group's share)."""
  keep = np.asarray([n in set(names) for n in paired_set.names], bool)
  return PairedSet(
    paired_set.source[keep],
    paired_set.truth[keep],
    paired_set.h_true[keep],
    paired_set.h_central[keep],
    tuple(n for n, k in zip(paired_set.names, keep) if k),
    paired_set.reference,
  )


def camera_of(name: str) -> int:
  return int(layouts.MARKET_NAME.match(name.rsplit("/", maxsplit=1)[-1]).group(2))


def warp_corners(model: SAGAN, p: jax.Array) -> jax.Array:
  """``[..., 4, 2]``: where each predicted warp sends the image corners."""
  if model.transform == "tps":
    h, w = model.config.image_size
    offsets = p.reshape(-1, *model.tps_control_hw, 2)
    grid = geometry.tps_grid(offsets, (h, w))
    corners = jnp.stack([grid[:, 0, 0], grid[:, 0, -1], grid[:, -1, -1], grid[:, -1, 0]], axis=1)
    return corners.reshape(*p.shape[:-1], 4, 2)
  return fidelity.map_corners(stm_lib.transform_matrices(p, model.transform))


@functools.partial(jax.jit, static_argnames=("model", "region", "strength"))
def _translate_fixed_codes(model: SAGAN, params, images, masks, codes, region: str = "frame", strength: float = 1.0):
  """``(adapted [M, B, H, W, 3], corners [M, B, 4, 2])`` for codes ``[M, Z]`` shared by every image;
  ``region`` and ``strength`` as the translate stage's (`sagan_steps.keep_region`)."""
  masks = model.masks_for_input(masks)

  def one_code(z):
    a = model.adapt(params, XY, images, masks, jnp.broadcast_to(z, (images.shape[0], z.shape[-1])))
    if a.transform is None:
      corners = jnp.broadcast_to(jnp.asarray(fidelity.CORNERS, jnp.float32), (images.shape[0], 4, 2))
    else:
      corners = warp_corners(model, a.transform)
    return sagan_steps.keep_region(a, region, strength), corners

  return jax.lax.map(one_code, codes)


def translate_fixed(
  model: SAGAN,
  params,
  paired: PairedSet,
  key: jax.Array,
  num_codes: int = TRAINING_CODES,
  batch_size: int = 64,
  region: str = "frame",
  strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
  """``(adapted [M, N, H, W, 3], corners [M, N, 4, 2])`` of the paired images under ``num_codes`` fixed codes.

  The codes (`SAGAN.fixed_codes`: drawn once from ``key``, or every category in turn for categorical
  codes) are shared by every image, so "code k" names one warp policy; pass the same key at every
  call to follow the same codes through training. ``params`` must be addressable from this process
  (`parallel.local_copy`). ``region``: where G1's pixels are kept, as in the translate stage
  (`config.translate.region`), and ``strength`` the share of G1's change kept there
  (`config.translate.strength`), so the images scored are the ones the IDE learns from.
  """
  codes = model.fixed_codes(key, num_codes)
  adapted, corners = [], []
  for start in range(0, len(paired.source), batch_size):
    chunk = paired.source[start : start + batch_size]
    a, c = _translate_fixed_codes(
      model, params, jnp.asarray(chunk[..., :3]), jnp.asarray(chunk[..., 3:]), codes, region, strength
    )
    adapted.append(np.asarray(a))
    corners.append(np.asarray(c))
  return np.concatenate(adapted, axis=1), np.concatenate(corners, axis=1)


def _true_corners(paired: PairedSet) -> jax.Array:
  return fidelity.map_corners(jnp.asarray(paired.h_true))  # [N, K, 4, 2]


def image_scores(paired: PairedSet, adapted: np.ndarray, person_windows: bool = True) -> dict[str, float]:
  """``pixel_error`` and ``detail_error`` of translations ``[M, N, H, W, 3]``, each against its nearest truth
  (``person_windows`` as `fidelity.detail_error_nearest`'s)."""
  truth, masks, source = paired.truth[..., :3], paired.truth[..., 3:], paired.source[..., :3]
  return {
    "pixel_error": fidelity.pixel_error_nearest(adapted, truth, source, masks),
    "detail_error": fidelity.detail_error_nearest(adapted, truth, source, masks, person_windows),
  }


def score(paired: PairedSet, adapted: np.ndarray, corners: np.ndarray, detail: bool = True) -> dict[str, float]:
  """Every fidelity score of translations ``adapted [M, N, ...]`` whose warps send the corners to ``corners``.

  ``viewpoint_error``: each code's corner error to the central view (1 = no better than not
  warping); ``coverage_error`` / ``precision_error`` / ``coverage_error_one_code``: against the set
  of true views (`sagan_jax.fidelity`); ``detail_error`` is left out with ``detail=False`` (training logs).
  """
  errors = fidelity.corner_errors(jnp.asarray(corners), _true_corners(paired), paired.reference)
  central = fidelity.map_corners(jnp.asarray(paired.h_central))
  per_code = np.asarray(
    jnp.mean(fidelity.corner_viewpoint_error(jnp.asarray(corners), central, paired.reference), axis=1)
  )
  out = (
    image_scores(paired, adapted)
    if detail
    else {
      "pixel_error": fidelity.pixel_error_nearest(
        adapted, paired.truth[..., :3], paired.source[..., :3], paired.truth[..., 3:]
      )
    }
  )
  out.update(
    {
      "viewpoint_error": float(np.mean(per_code)),
      "coverage_error": float(fidelity.coverage_error(errors)),
      "coverage_error_one_code": float(fidelity.coverage_error(errors[:1])),
      "precision_error": float(fidelity.precision_error(errors)),
      "code_diversity": float(fidelity.corner_code_diversity(jnp.swapaxes(jnp.asarray(corners), 0, 1))),
      "viewpoint_error_per_code": [float(v) for v in per_code],
      "images": len(paired.names),
    }
  )
  return out


class CodePlacement(NamedTuple):
  """Where one fixed code's warps land among an image set's true views (`code_placements`)."""

  index: int | None  # a categorical code's one-hot index (the camera it names under camera_critics)
  norm: float  # ‖z‖
  nearest_error: float  # corner error to each image's nearest true view, averaged over the images
  per_view: tuple[float, ...]  # corner error to each view k, averaged over the images
  offset: float  # for the view nearest on average: the displacement the images share
  spread: float  # and the images' scatter around it


def code_placements(
  codes: np.ndarray, corners: np.ndarray, true_corners: np.ndarray, reference: float, categorical: bool
) -> list[CodePlacement]:
  """Per code, where its warps land: ``codes`` ``[M, Z]``, ``corners`` ``[M, N, 4, 2]`` (its warp of each
  image), ``true_corners`` ``[N, K, 4, 2]``; errors in `viewpoint_error`'s unit (``reference``)."""
  codes, corners, true_corners = np.asarray(codes), np.asarray(corners), np.asarray(true_corners)
  errors = np.asarray(fidelity.corner_errors(jnp.asarray(corners), jnp.asarray(true_corners), reference))  # [M, N, K]
  out = []
  for k in range(len(corners)):
    per_view = np.mean(errors[k], axis=0)
    offset, spread = fidelity.offset_and_spread(corners[k], true_corners[:, int(np.argmin(per_view))])
    out.append(
      CodePlacement(
        int(np.argmax(codes[k])) if categorical else None,
        float(np.linalg.norm(codes[k])),
        float(np.mean(np.min(errors[k], axis=-1))),
        tuple(float(v) for v in per_view),
        offset / reference,
        spread / reference,
      )
    )
  return out


def measure(
  model: SAGAN, params, paired: PairedSet, key: jax.Array, num_codes: int = TRAINING_CODES, detail: bool = True
) -> dict:
  """`score` of `translate_fixed`: one translator's fidelity on the paired images."""
  return score(paired, *translate_fixed(model, params, paired, key, num_codes), detail=detail)


def join(parts: list[PairedSet]) -> PairedSet:
  """Several groups' paired subsets as one set."""
  parts = [p for p in parts if len(p.names)]
  return PairedSet(
    *(np.concatenate([getattr(p, f) for p in parts]) for f in ("source", "truth", "h_true", "h_central")),
    tuple(n for p in parts for n in p.names),
    parts[0].reference,
  )


def measure_groups(
  translators, key: jax.Array, num_codes: int = FINAL_CODES, region: str = "frame", strength: float = 1.0
) -> dict:
  """The fidelity of several translators, each on its own share of the paired images, scored as one set.

  ``translators``: ``(model, params, paired_subset)`` triples (one per viewpoint group); ``region``
  and ``strength`` as `translate_fixed`'s.
  """
  parts = [
    (s, *translate_fixed(m, p, s, key, num_codes, region=region, strength=strength))
    for m, p, s in translators
    if len(s.names)
  ]
  joined = join([p[0] for p in parts])
  return score(joined, np.concatenate([p[1] for p in parts], axis=1), np.concatenate([p[2] for p in parts], axis=1))


def target_statistics(benchmark_dir: str, image_size: tuple[int, int]) -> dict[str, np.ndarray]:
  """Unpaired colour statistics the references use: per-channel mean/std of the source and target
  training images, and the target's mean image (RGB in [-1, 1] at ``image_size``)."""
  out = {}
  for domain in ("source", "target"):
    folder = os.path.join(benchmark_dir, domain, layouts.MARKET_ROOT, "bounding_box_train")
    names = sorted(os.listdir(folder))
    images = np.stack(
      [
        pipeline.preprocess(
          {"image": _read(os.path.join(folder, n), "RGB"), "person_id": 0, "camera_id": 0},
          image_size,
          "unused",
          flip=False,
        )["image"][..., :3]
        for n in names
      ]
    )
    out[f"{domain}_mean"], out[f"{domain}_std"] = images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2))
    if domain == "target":
      out["target_image"] = images.mean(axis=0)
  return out


def box_blur(images: np.ndarray, size: int = 9) -> np.ndarray:
  pad = size // 2
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
  rows = sum(padded[:, i : i + images.shape[1]] for i in range(size)) / size
  return sum(rows[:, :, i : i + images.shape[2]] for i in range(size)) / size


def true_colours(images: np.ndarray) -> np.ndarray:
  """The target's colour pipeline (`synthetic.target_colours`) on RGB in [-1, 1]: the truth's colours."""
  return synthetic.target_colours((images + 1) * 127.5) / 127.5 - 1


def warp_each(images: np.ndarray, homographies: np.ndarray) -> np.ndarray:
  """Each of ``images[N, H, W, C]`` warped by its ``homographies[N, 3, 3]`` as the truth is made
  (`synthetic.warp_border`: bilinear, edges repeated)."""
  return np.stack([synthetic.warp_border(image, h) for image, h in zip(images, homographies)])


def references(paired: PairedSet, stats: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """What trivial translations score on ``paired`` (one "code" each), to read the model's scores against.

  * ``flat_colour``: every pixel the image's mean colour, mapped by the unpaired per-channel mean/std
    match of the source's colours to the target's: all detail thrown away;
  * ``flat_colour_blur``: the colour-matched image under a 9×9 box blur;
  * ``constant``: the target's mean image, for every input;
  * ``true_colours``: the target's colour pipeline applied to x, no warp;
  * ``true_warp``: x warped into the central view, no colour change;
  * ``best_single_warp``: one warp per image, the nearest to all its true views (`fidelity.best_single_warp`):
    the ``coverage_error`` floor of any M = 1 translator.
  """
  x = paired.source[..., :3]
  matched = (x - stats["source_mean"]) / stats["source_std"] * stats["target_std"] + stats["target_mean"]
  warped = warp_each((x + 1) * 127.5, paired.h_central) / 127.5 - 1  # in [0, 255], as the truths were made
  candidates = {
    "flat_colour": np.broadcast_to(np.clip(matched.mean(axis=(1, 2), keepdims=True), -1, 1), x.shape),
    "flat_colour_blur": np.clip(box_blur(matched), -1, 1),
    "constant": np.broadcast_to(stats["target_image"], x.shape),
    "true_colours": true_colours(x),
    "true_warp": warped,
  }
  out = {name: image_scores(paired, np.asarray(images, np.float32)[None]) for name, images in candidates.items()}
  single = jnp.asarray(fidelity.best_single_warp(np.asarray(_true_corners(paired))), jnp.float32)
  errors = fidelity.corner_errors(single[None], _true_corners(paired), paired.reference)
  out["best_single_warp"] = {"coverage_error": float(fidelity.coverage_error(errors))}
  return out
