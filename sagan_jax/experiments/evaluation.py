"""The evaluate stage: the target protocol ranked with the workdir's IDE models → ``results.json``/``.md``.

A query/gallery target (Market-1501, DukeMTMC-reID, the synthetic benchmark) is ranked with the
one IDE; a two-camera target (PRID2011, VIPeR, CUHK01) split by split with each split's IDE, both
directions. Each process extracts its
share of the batches on its own devices; process 0 writes and prints the results.
"""

from __future__ import annotations

import json
import os

from sagan_jax import parallel
from sagan_jax.data import two_camera
from sagan_jax.experiments import monitor, rankvis, report, results
from sagan_jax.experiments.run import Run
from sagan_jax.preemption import Preempted
from sagan_jax.reid import ide
from sagan_jax.reid import train as ide_train


def load_ide(run: Run, ide_name: str = "", repeat: int = 0):
  """``(model, state)`` of the workdir's finished IDE ``ide_name`` (its training ``repeat``)."""
  where = run.path(run.plan.ide_subdir(ide_name, repeat))
  missing = (
    f"no finished IDE model in {where!r}: run the ide stage first "
    f"(python train.py --config=... --workdir={run.workdir} --config.stages=ide)"
  )
  return ide_train.load(run.config.ide, where, run.mesh, run.layers, missing)


def _extractor(run: Run, ide_name: str, repeat: int, compiled: dict):
  """``features(split) → (features, pids, camids)`` of the target split with IDE ``ide_name``'s ``repeat``.

  ``compiled``: feature functions by IDE, shared by its trainings (one architecture, one compile)."""
  c = run.config
  local_mesh = parallel.local_mesh()
  batch = c.eval.batch_size - c.eval.batch_size % local_mesh.size or local_mesh.size
  model, state = load_ide(run, ide_name, repeat)
  if ide_name not in compiled:
    compiled[ide_name] = ide.make_feature_fn(model, local_mesh, c.eval.normalize_features, c.eval.flip_average)
  feature_fn = compiled[ide_name]
  state = parallel.local_copy(state)
  builder = run.datasets.builder("target")

  def features(split):
    try:
      return ide.extract_split(
        feature_fn,
        state,
        builder.as_data_source(split),
        batch_size=batch,
        image_size=tuple(c.ide.image_size),
        stop=run.stop,
      )
    except ide.Stopped:
      raise Preempted("evaluate", 0, "stopped before writing results") from None

  return features


def _tables(run: Run, repeat: int, rank_vis: int, compiled: dict) -> dict:
  """The target protocol's tables ranked with IDE training ``repeat`` of every model of the plan."""
  c = run.config
  target_protocol = run.datasets.target_protocol()
  if target_protocol is not None:
    merged = {d: {"splits": []} for d in two_camera.DIRECTIONS}
    for ide_name in run.plan.ide_models:
      splits = run.plan.evaluated_splits(ide_name)
      if not splits:
        continue
      features = _extractor(run, ide_name, repeat, compiled)
      cam_a, cam_b = features("cam_a"), features("cam_b")
      part = ide.two_camera_tables(target_protocol, cam_a, cam_b, c.eval.ap_mode, c.eval.backend, splits=splits)
      for d in two_camera.DIRECTIONS:
        merged[d]["splits"] += part[d]["splits"]
    return ide.split_mean(merged)
  features = _extractor(run, "", repeat, compiled)
  query, gallery = features("query"), features("gallery")
  if rank_vis and run.is_main and repeat == 0:
    rankvis.write(run.path("rank_vis"), run.datasets.builder("target"), query, gallery, rank_vis)
  return {"query_gallery": ide.rank_table(query, gallery, c.eval.ap_mode, backend=c.eval.backend)}


def evaluate(run: Run, rank_vis: int = 0) -> dict:
  """Ranks the target protocol with the workdir's IDE models; writes results.json/.md (process 0); returns them.

  With ``eval.ide_repeats`` > 1, ``tables`` is the mean over the trainings and ``tables_per_training``
  holds each one's."""
  c = run.config
  compiled = {}
  per_training = [_tables(run, r, rank_vis, compiled) for r in range(c.eval.ide_repeats)]
  tables = ide.training_mean(per_training)
  protocol = "two_camera" if run.datasets.target_protocol() is not None else "query_gallery"
  plan_json = run.plan.as_json()
  gan = c.variant != "original"
  result = {
    "experiment": c.experiment,
    "variant": c.variant,
    "protocol": protocol,
    "target": run.datasets.names["target"],
    "tables": tables,
    "settings": {
      "normalize_features": c.eval.normalize_features,
      "flip_average": c.eval.flip_average,
      "ap_mode": c.eval.ap_mode,
      "num_codes": c.sagan.num_codes if gan else 0,
      "ide_init": "from scratch" if c.ide.pretrained in ("", ide_train.PRETRAINED_NONE) else "imagenet",
      "ide_steps": run.plan.ide_steps(c),
      "ide_repeats": c.eval.ide_repeats,
      "viewpoint_groups": {g: list(v) for g, v in run.plan.groups.items()} if gan else {},
      "evaluated_splits": run.plan.evaluated_splits() if protocol == "two_camera" else None,
      "notes": plan_json["notes"],
    },
  }
  if len(per_training) > 1:
    result["tables_per_training"] = per_training
  fidelity_path = run.path("sagan", monitor.FIDELITY_FILE)
  if gan and os.path.isfile(fidelity_path):
    with open(fidelity_path) as f:
      result["fidelity"] = json.load(f)
  if gan and c.eval.translation_report:
    result["translation"] = report.translation_report(run)
  if run.is_main:
    results.write(run.workdir, result)
    print(results.markdown([result], f"{c.experiment}: {results.method_name(result)}"))
  return result
