"""Viewpoint groups: which source cameras the paper adapts together (Section IV-B).

"We separate their training images into two sets according to the camera perspective and achieve
the adaptation of the two sets separately." The paper lists no cameras, so each dataset's table
(``viewpoint_groups.json``) says where its assignment comes from: the synthetic benchmark records
its cameras' heights; Market-1501 and DukeMTMC-reID publish none, so theirs is derived from the
training masks (`derive_groups`); PRID2011 is only a target and stays one group.

A config picks the grouping with ``data.viewpoint_groups``: ``"none"`` (one adaptation over every
camera), ``"table"`` (the dataset's table) or an explicit ``"low=1,2,6;high=3,4,5"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from sagan_jax.errors import ConfigError

TABLE_FILE = os.path.join(os.path.dirname(__file__), "viewpoint_groups.json")
MODES = ("none", "table")
# Bands of the mask's vertical extent compared by `mask_keystone`: head and shoulders, feet and shins.
_BAND = 0.25


def load_table() -> dict:
  with open(TABLE_FILE) as f:
    return json.load(f)


def parse(spec: str, field: str = "config.data.viewpoint_groups") -> dict[str, tuple[int, ...]] | str:
  """``"none"``/``"table"`` as given, or ``"low=1,2;high=3"`` → ``{"low": (1, 2), "high": (3,)}``."""
  spec = spec.strip()
  if spec in MODES:
    return spec
  groups = {}
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    name, _, cameras = part.partition("=")
    try:
      ids = tuple(int(c) for c in cameras.split(",") if c.strip())
    except ValueError:
      ids = ()
    if not name.strip() or not ids:
      raise ConfigError(f"{field}={spec!r}: expected 'none', 'table' or groups like 'low=1,2,6;high=3,4,5'")
    if name.strip() in groups:
      raise ConfigError(f"{field}={spec!r}: group {name.strip()!r} given twice")
    groups[name.strip()] = ids
  if not groups:
    raise ConfigError(f"{field}={spec!r}: expected 'none', 'table' or groups like 'low=1,2,6;high=3,4,5'")
  return groups


def mask_keystone(mask: np.ndarray) -> float:
  """Mean mask width in the top quarter of the person over that in the bottom quarter.

  A camera mounted higher enlarges the head and shoulders and foreshortens the legs, which raises
  the ratio. NaN for an empty mask.
  """
  rows = np.flatnonzero(np.any(mask > 0, axis=1))
  if rows.size == 0:
    return float("nan")
  top, bottom = rows[0], rows[-1] + 1
  band = max(1, round(_BAND * (bottom - top)))
  widths = np.sum(mask > 0, axis=1).astype(np.float64)
  return float(np.mean(widths[top : top + band]) / max(np.mean(widths[bottom - band : bottom]), 1.0))


# The smallest gap between two cameras' keystone ratios that separates two viewpoint groups (our
# choice). On the synthetic benchmark with two heights the ratios read 1.44, 1.45 (low) and 1.49,
# 1.52 (high): a gap of 0.043 between the heights, at most 0.025 within one.
MIN_GROUP_GAP = 0.03


def split_at_largest_gap(scores: Mapping[int, float], min_gap: float = MIN_GROUP_GAP) -> dict[str, tuple[int, ...]]:
  """Cameras sorted by score, cut where consecutive scores differ most: ``{"low": ..., "high": ...}``;
  ``{"all": every camera}`` when no gap reaches ``min_gap`` (one viewpoint)."""
  order = sorted(scores, key=lambda c: (scores[c], c))
  values = np.asarray([scores[c] for c in order])
  gaps = np.diff(values)
  if len(scores) < 2 or float(np.max(gaps)) < min_gap:
    return {"all": tuple(sorted(order))}
  cut = int(np.argmax(gaps)) + 1
  return {"low": tuple(sorted(order[:cut])), "high": tuple(sorted(order[cut:]))}


def derive_groups(
  mask_paths: Sequence[str], camera_ids: Sequence[int], per_camera: int = 400
) -> tuple[dict[str, tuple[int, ...]], dict[int, float]]:
  """Groups from masks: each camera's median `mask_keystone` over (at most) ``per_camera`` of its masks.

  Returns the groups and the per-camera scores (printed by the plan, so the user can check them).
  """
  camera_ids = np.asarray(camera_ids)
  scores = {}
  for camera in sorted({int(c) for c in camera_ids}):
    rows = np.flatnonzero(camera_ids == camera)
    picks = rows[np.linspace(0, len(rows) - 1, min(per_camera, len(rows))).round().astype(int)]
    values = [mask_keystone(np.asarray(Image.open(mask_paths[i]).convert("L"))) for i in picks]
    values = [v for v in values if np.isfinite(v)]
    if not values:
      raise ConfigError(
        f"camera {camera}: every sampled mask is empty (e.g. {mask_paths[picks[0]]!r}); "
        "viewpoint groups cannot be derived; set config.data.viewpoint_groups by hand"
      )
    scores[camera] = float(np.median(values))
  return split_at_largest_gap(scores), scores


def synthetic_groups(benchmark_dir: str) -> dict[str, tuple[int, ...]]:
  """The synthetic benchmark's recorded heights (``benchmark.json`` ``source_viewpoints``)."""
  with open(os.path.join(benchmark_dir, "benchmark.json")) as f:
    meta = json.load(f)
  # Written before heights were recorded: every camera was low.
  viewpoints = meta.get("source_viewpoints") or {str(c): "low" for c in range(1, meta["spec"]["num_cameras"] + 1)}
  groups: dict[str, list[int]] = {}
  for camera, group in sorted(viewpoints.items(), key=lambda kv: int(kv[0])):
    groups.setdefault(group, []).append(int(camera))
  return {g: tuple(groups[g]) for g in ("low", "high") if g in groups}


def check_cover(groups: Mapping[str, Sequence[int]], cameras: Sequence[int], dataset: str) -> None:
  """Every camera of ``cameras`` in exactly one group, no group empty of images."""
  owner = {}
  for name, members in groups.items():
    for c in members:
      if c in owner:
        raise ConfigError(f"viewpoint groups of {dataset}: camera {c} is in both {owner[c]!r} and {name!r}")
      owner[c] = name
  present = sorted({int(c) for c in cameras})
  missing = [c for c in present if c not in owner]
  if missing:
    raise ConfigError(
      f"viewpoint groups of {dataset} {dict(groups)} leave out cameras {missing}: "
      "add them to config.data.viewpoint_groups"
    )
  empty = [name for name, members in groups.items() if not set(members) & set(present)]
  if empty:
    raise ConfigError(
      f"viewpoint groups of {dataset}: {empty} hold no camera with training images (cameras present: {present})"
    )
