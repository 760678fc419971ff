"""What a run adapts, trains and evaluates: its adaptations, IDE models and evaluations.

An *adaptation* is one SA-GAN trained from a set of source training images (one viewpoint group,
`sagan_jax.data.viewpoints`) towards a set of unlabelled target images, and the translation of
those source images by it. An *IDE model* trains on the union of its adaptations' translations (or
on the raw source images, for "Original"). An *evaluation* ranks one protocol split with one IDE
model.

Targets and their adaptation data:
* Market-1501 / DukeMTMC-reID: the target's training split (its ids are disjoint from the test ids).
* Two-camera targets (PRID2011, VIPeR, CUHK01: `sagan_jax.data.two_camera`),
  ``data.target_adaptation="per_split"`` (the paper configs): one adaptation per split on
  the images of that split's training ids, one IDE per split, each split evaluated with its own.
* The same, ``"one_split"`` (10× cheaper): one adaptation on split ``data.target_split``'s
  training ids; only the splits none of whose test ids it saw are evaluated, and the results say
  which were left out and why. No mode mixes the two.

`build` reads labels only (no images) from the prepared datasets. ``train.py --plan`` prints it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from sagan_jax.data import builders, layouts, two_camera, viewpoints
from sagan_jax.errors import ConfigError
from sagan_jax.experiments.datasets import Concat, Datasets


@dataclasses.dataclass(frozen=True)
class Adaptation:
  name: str  # "" when the run has one adaptation (workdir paths sagan/, translated/), else e.g. "low_split3"
  group: str  # viewpoint group, "all" when ungrouped
  source_cameras: tuple[int, ...]
  source_indices: np.ndarray  # into the source's training split
  target_indices: np.ndarray | None  # into `Plan.target_source` (None: all of it)
  target_images: int
  target_ids: tuple[int, ...]
  target_split: int | None  # the PRID split whose training ids it sees
  ide: str  # the IDE model its translation trains

  def subdir(self, kind: str) -> str:
    return os.path.join(kind, self.name) if self.name else kind


@dataclasses.dataclass(frozen=True)
class Evaluation:
  name: str  # "query_gallery", or "split3_a2b"
  split: int | None
  direction: str | None
  query_ids: tuple[int, ...]
  gallery_ids: tuple[int, ...]
  ide: str


@dataclasses.dataclass
class Plan:
  stages: tuple[str, ...]
  adaptations: list[Adaptation]
  ide_models: dict[str, list[str]]  # IDE name → its adaptations' names ([] for Original)
  evaluations: list[Evaluation]
  groups: dict[str, tuple[int, ...]]  # viewpoint groups of the source ({"all": every camera} when ungrouped)
  groups_source: str
  notes: list[str]
  source_images: int  # the source's training images: every IDE's epoch, whatever M is
  target_source: Any = None  # the random-access target images adaptations index (not in the JSON)

  def ide_subdir(self, name: str, repeat: int = 0) -> str:
    """IDE ``name``'s folder; training ``repeat`` > 0 of it (`eval.ide_repeats`) beside the first's."""
    root = f"ide_repeat{repeat}" if repeat else "ide"
    return os.path.join(root, name) if name else root

  def ide_steps_per_epoch(self, batch_size: int) -> int:
    """Updates per IDE epoch: one pass over the source images' count, so M does not change the budget."""
    return max(1, self.source_images // batch_size)

  def ide_steps(self, config) -> int:
    return config.ide.epochs * self.ide_steps_per_epoch(config.ide.batch_size)

  def evaluated_splits(self, ide_name: str | None = None) -> list[int]:
    return sorted({e.split for e in self.evaluations if e.split is not None and ide_name in (None, e.ide)})

  def as_json(self) -> dict:
    evaluated = {}
    for e in self.evaluations:
      evaluated.setdefault(e.ide, set()).add(e.split)
    return {
      "stages": list(self.stages),
      "viewpoint_groups": {"groups": {k: list(v) for k, v in self.groups.items()}, "source": self.groups_source},
      "adaptations": [
        {
          "name": a.name or "default",
          "group": a.group,
          "source_cameras": list(a.source_cameras),
          "source_images": len(a.source_indices),
          "target_images": a.target_images,
          "target_ids": list(a.target_ids),
          "target_split": a.target_split,
          "ide": a.ide or "default",
          "evaluated_splits": sorted(s for s in evaluated.get(a.ide, ()) if s is not None),
          "workdir": {"sagan": a.subdir("sagan"), "translated": a.subdir("translated")},
        }
        for a in self.adaptations
      ],
      "ide_models": [
        {"name": k or "default", "adaptations": [a or "default" for a in v], "workdir": self.ide_subdir(k)}
        for k, v in self.ide_models.items()
      ],
      "evaluations": [
        {
          "name": e.name,
          "split": e.split,
          "direction": e.direction,
          "query_ids": list(e.query_ids),
          "gallery_ids": list(e.gallery_ids),
          "ide": e.ide or "default",
        }
        for e in self.evaluations
      ],
      "notes": list(self.notes),
    }


class GroupsPending(ValueError):
  """The viewpoint groups are derived from masks the masks stage has not written yet."""


def source_groups(config, datasets: Datasets, labels: dict) -> tuple[dict[str, tuple[int, ...]], str]:
  """The source's viewpoint groups and where they come from."""
  spec = viewpoints.parse(config.data.viewpoint_groups)
  cameras = labels["camera_id"]
  name = datasets.names["source"]
  if spec == "none":
    return {"all": tuple(sorted({int(c) for c in cameras}))}, "ungrouped (config.data.viewpoint_groups='none')"
  if isinstance(spec, dict):
    viewpoints.check_cover(spec, cameras, name)
    return spec, "config.data.viewpoint_groups"
  if datasets.synthetic_dir:
    groups = viewpoints.synthetic_groups(datasets.synthetic_dir)
    viewpoints.check_cover(groups, cameras, "the synthetic source")
    return groups, "benchmark.json (the generator's camera heights)"
  entry = viewpoints.load_table()[name]
  if entry["groups"] != "derived":
    groups = {}
    for camera, group in entry["groups"].items():
      groups.setdefault(group, []).append(int(camera))
    groups = {g: tuple(c) for g, c in groups.items()}
    viewpoints.check_cover(groups, cameras, name)
    return groups, entry["source"]
  masks_dir = layouts.default_masks_dir(datasets.manual_dirs["source"])
  paths = [os.path.join(masks_dir, os.path.splitext(f)[0] + ".png") for f in labels["filename"]]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise GroupsPending(
      f"viewpoint groups of {name} are derived from its training masks, and {missing[0]!r} "
      f"({len(missing)} of {len(paths)}) is not written yet: the masks stage writes them"
    )
  groups, scores = viewpoints.derive_groups(paths, cameras)
  shown = ", ".join(f"c{c} {s:.3f}" for c, s in sorted(scores.items()))
  if len(groups) == 1:
    return groups, (
      f"derived from the training masks: one group, no two cameras' median top/bottom width ratios "
      f"{shown} differ by {viewpoints.MIN_GROUP_GAP} or more"
    )
  return groups, f"derived from the training masks (median top/bottom width ratio: {shown})"


def _ids(pids) -> tuple[int, ...]:
  return tuple(sorted({int(p) for p in pids}))


def build(config, datasets: Datasets, stages: tuple[str, ...]) -> Plan:
  """The run's plan, from the config and the prepared datasets' labels."""
  c = config
  source_labels = builders.read_labels(datasets.builder("source"), "train")
  target = datasets.builder("target")
  gan = c.variant != "original"
  notes: list[str] = []
  if gan:
    groups, groups_source = source_groups(c, datasets, source_labels)
  else:
    groups, groups_source = {"all": _ids(source_labels["camera_id"])}, "no adaptation (Original)"
  cameras = source_labels["camera_id"]

  def group_adaptations(suffix: str, target_indices, target_images, target_ids, split, ide_name):
    out = []
    for g, members in groups.items():
      name = "_".join(p for p in ((g if len(groups) > 1 else ""), suffix) if p)
      out.append(
        Adaptation(
          name,
          g,
          tuple(members),
          np.flatnonzero(np.isin(cameras, members)),
          target_indices,
          target_images,
          target_ids,
          split,
          ide_name,
        )
      )
    return out

  adaptations: list[Adaptation] = []
  evaluations: list[Evaluation] = []
  protocol = datasets.target_protocol()
  if protocol is None:
    labels = builders.read_labels(target, "train")
    if gan:
      adaptations = group_adaptations("", None, len(labels["person_id"]), _ids(labels["person_id"]), None, "")
    query, gallery = (builders.read_labels(target, s)["person_id"] for s in ("query", "gallery"))
    evaluations.append(Evaluation("query_gallery", None, None, _ids(query[query > 0]), _ids(gallery[gallery > 0]), ""))
    target_source = target.as_data_source("train")
    ide_models = {"": [a.name for a in adaptations]}
    plan = Plan(stages, adaptations, ide_models, evaluations, groups, groups_source, notes, len(cameras), target_source)
    check_leak_free(plan)
    return plan

  cam = {s: builders.read_labels(target, s)["person_id"] for s in ("cam_a", "cam_b")}
  splits = protocol.splits(cam["cam_a"], cam["cam_b"])
  target_source = Concat([target.as_data_source(s) for s in ("cam_a", "cam_b")])
  all_pids = np.concatenate([cam["cam_a"], cam["cam_b"]])

  def split_target(k):
    train = splits[k]["train"]
    indices = np.flatnonzero(np.isin(all_pids, train))
    return indices, _ids(all_pids[indices])

  def split_evaluations(k, ide_name):
    out = []
    for direction in two_camera.DIRECTIONS:
      idx = protocol.indices(cam["cam_a"], cam["cam_b"], splits[k], direction)
      q, g = (cam["cam_a"], cam["cam_b"]) if direction == "a2b" else (cam["cam_b"], cam["cam_a"])
      out.append(
        Evaluation(f"split{k}_{direction}", k, direction, _ids(q[idx["query"]]), _ids(g[idx["gallery"]]), ide_name)
      )
    return out

  mode = c.data.target_adaptation  # checked by config.check, which every entry point calls first
  ide_models: dict[str, list[str]] = {}
  if not gan:
    ide_models[""] = []
    # The splits the adapted rows of the same config evaluate, so every row is compared on the same queries.
    evaluated = range(len(splits)) if mode == "per_split" else [_checked_split(c, splits)]
    for k in evaluated:
      evaluations += split_evaluations(k, "")
    if mode != "per_split":
      notes.append(f"one_split: evaluated on split {evaluated[0]} only, as the adapted rows of this config are")
  elif mode == "per_split":
    for k in range(len(splits)):
      indices, ids = split_target(k)
      made = group_adaptations(f"split{k}", indices, len(indices), ids, k, f"split{k}")
      adaptations += made
      ide_models[f"split{k}"] = [a.name for a in made]
      evaluations += split_evaluations(k, f"split{k}")
  else:
    k0 = _checked_split(c, splits)
    indices, ids = split_target(k0)
    adaptations = group_adaptations("", indices, len(indices), ids, k0, "")
    ide_models[""] = [a.name for a in adaptations]
    left_out = []
    for k in range(len(splits)):
      seen = set(ids) & set(splits[k]["test"])
      if seen:
        left_out.append(f"split {k} ({len(seen)} test ids seen)")
      else:
        evaluations += split_evaluations(k, "")
    if left_out:
      notes.append(
        f"one_split: adapted on split {k0}'s training ids; not evaluated, as the adaptation saw their "
        f"test identities: {', '.join(left_out)}"
      )
  plan = Plan(stages, adaptations, ide_models, evaluations, groups, groups_source, notes, len(cameras), target_source)
  check_leak_free(plan)
  return plan


def _checked_split(c, splits) -> int:
  k0 = int(c.data.target_split)
  if not 0 <= k0 < len(splits):
    raise ConfigError(f"config.data.target_split={k0}: expected 0..{len(splits) - 1}")
  return k0


class LeakError(AssertionError):
  """A plan would evaluate an IDE on identities its adaptation saw: a bug, never a valid run."""


def check_leak_free(plan: Plan) -> None:
  """Raises `LeakError` if an adaptation saw a query or gallery identity of a split its IDE is evaluated on."""
  by_ide: dict[str, set[int]] = {}
  for a in plan.adaptations:
    by_ide.setdefault(a.ide, set()).update(a.target_ids)
  for e in plan.evaluations:
    seen = by_ide.get(e.ide, set()) & (set(e.query_ids) | set(e.gallery_ids))
    if seen:
      raise LeakError(f"evaluation {e.name} ranks identities {sorted(seen)[:5]} its adaptation saw")


def describe(plan: Plan, config) -> str:
  """The plan as text: stages, adaptations, IDE models, evaluations, notes."""
  j = plan.as_json()
  lines = [
    f"experiment {config.experiment or '(unnamed)'}, variant {config.variant}",
    f"stages: {', '.join(j['stages'])}",
    f"viewpoint groups: {', '.join(f'{g} = cameras {list(c)}' for g, c in plan.groups.items())} ({plan.groups_source})",
  ]
  lines.append(
    f"adaptations ({len(j['adaptations'])}):" if j["adaptations"] else "adaptations: none (IDE on the raw source)"
  )
  for a in j["adaptations"]:
    split = f", PRID split {a['target_split']}'s training ids" if a["target_split"] is not None else ""
    lines.append(
      f"  {a['name']}: source group {a['group']} (cameras {a['source_cameras']}, {a['source_images']} images)"
      f" → {a['target_images']} target images of {len(a['target_ids'])} ids{split}; "
      f"trains IDE {a['ide']}; {a['workdir']['sagan']}/"
    )
  for m in j["ide_models"]:
    trained = f"translations of {', '.join(m['adaptations'])}" if m["adaptations"] else "raw source images"
    lines.append(f"IDE {m['name']}: {trained}; {m['workdir']}/")
  lines.append(f"evaluations ({len(j['evaluations'])}):")
  for e in j["evaluations"]:
    where = f"split {e['split']} {e['direction']}" if e["split"] is not None else "query/gallery"
    lines.append(
      f"  {e['name']}: {where}, {len(e['query_ids'])} query ids, {len(e['gallery_ids'])} gallery ids, IDE {e['ide']}"
    )
  lines += [f"note: {n}" for n in j["notes"]]
  return "\n".join(lines)
