"""The conductor of `train.py`: masks → SA-GAN → translation → IDE → evaluation, over the run's plan.

Each stage loops over its plan entries (viewpoint groups, PRID2011 splits) and hands each to the
trainer that owns it (`sagan_jax.masks.train`, `sagan_jax.sagan.train`, `sagan_jax.reid.train`),
to `translation` or to `evaluation`, wiring one stage's outputs into the next one's inputs. A
trainer skips a finished entry and resumes an unfinished one from its last checkpoint, so a killed
run continues where it stopped when the same command is run again. SIGTERM (preemption) makes the
running stage save a checkpoint and exit with status 143. Only process 0 writes logs, pictures and
results.

Workdir layout (with several adaptations or IDE models, one subfolder each, named in the plan)::

  config.json, plan.json     the config that made the workdir (another config is refused), the plan
  masks/unet/                the mask U-Net (masks themselves go to MANUAL_DIR/masks/)
  sagan/checkpoints/, sagan/metrics.jsonl, sagan/samples/, sagan/fidelity.json (synthetic)
  translated/                M adapted images per source image, inputs.json, labels.json
  ide/checkpoints/, ide/metrics.jsonl
  results.json, results.md   the evaluation, in the paper's layout
  tensorboard/               scalars of every stage
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from sagan_jax import loop, parallel, preemption, workdir
from sagan_jax.data import builders, pipeline
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import evaluation, monitor, source_ide, translation
from sagan_jax.experiments import plan as plan_lib
from sagan_jax.experiments.datasets import Concat
from sagan_jax.experiments.run import Run
from sagan_jax.masks import infer, sources
from sagan_jax.masks import train as unet_train
from sagan_jax.models.layers import Layers
from sagan_jax.preemption import Preempted
from sagan_jax.reid import train as ide_train
from sagan_jax.sagan import SAGAN
from sagan_jax.sagan import train as sagan_train


@contextlib.contextmanager
def _stopped_as_preempted(name: str):
  """A trainer's `loop.Stopped` (SIGTERM) as the run's `Preempted` exit."""
  try:
    yield
  except loop.Stopped as e:
    raise Preempted(name, e.step) from None


class Skipped(str):
  """What a stage returns when the config leaves it nothing to do: the reason, for its summary line."""


def stage_masks(run: Run) -> Skipped | None:
  c = run.config
  if not c.sagan.use_mask:
    return Skipped(f"config.sagan.use_mask=False: variant {c.variant!r} reads no masks")
  if c.data.masks != "unet":
    brought = "the datasets bring their own" if c.data.masks == "data" else "all-ones masks"
    return Skipped(f"config.data.masks={c.data.masks!r}: {brought}")
  run.datasets.ensure_synthetic()
  with _stopped_as_preempted("masks"):
    _, record = unet_train.train(
      c.masks,
      sources.training_source(c.masks),
      run.path("masks", "unet"),
      run.mesh,
      seed=run.seed("masks"),
      stop=run.stop,
      log_dir=run.tensorboard,
    )
  # Inference: each process masks its share of the images on its own devices.
  local_mesh = parallel.local_mesh()
  model, params, _ = unet_train.load(run.path("masks", "unet"), local_mesh)
  predict = unet_train.make_predict_fn(model, local_mesh)
  batch = max(local_mesh.size, 32 - 32 % local_mesh.size)
  for role in ("source", "target"):
    manual = run.datasets.manual_dirs[role]
    counts = infer.infer(
      lambda rgb: predict(params, rgb),
      manual,
      infer.default_out_dir(manual),
      run.image_size,
      batch,
      shard=(jax.process_index(), jax.process_count()),
      producer=infer.unet_producer({**record["config"], "seed": record["seed"]}),
    )
    logging.info("masks for %s (%s): %s (U-Net held-out IoU %.3f)", role, manual, counts, record["heldout_iou"])
  parallel.barrier("masks written")


def stage_sagan(run: Run) -> None:
  c = run.config
  make = lambda source, indices, stream: pipeline.TrainBatches(
    source,
    global_batch_size=c.sagan_train.batch_size,
    image_size=run.image_size,
    seed=run.seed(stream),
    indices=indices,
    masks=run.datasets.mask_mode,
    num_threads=c.data.num_threads,
  )
  source = run.datasets.source_train()
  teacher = source_ide.teacher_features(run) if SAGAN(c.sagan).uses_reid else None
  for a in run.plan.adaptations:
    name = f"sagan {a.name}" if a.name else "sagan"
    # The whole split is read without indices, as an ungrouped run reads it.
    indices = None if len(a.source_indices) == len(source) else a.source_indices
    with _stopped_as_preempted(name):
      sagan_train.train(
        c.sagan,
        c.sagan_train,
        make(source, indices, "sagan/source_batches"),
        make(run.plan.target_source, a.target_indices, "sagan/target_batches"),
        run.path(a.subdir("sagan")),
        run.mesh,
        seed=run.seed("sagan"),
        layers=run.layers,
        name=name,
        hooks=monitor.sagan_hooks(run, a, SAGAN(c.sagan, layers=run.layers)),
        stop=run.stop,
        log_dir=run.tensorboard,
        identity_features=teacher,
        target_cameras=target_cameras(run, a) if c.sagan.camera_critics else None,
      )
  monitor.write_joint_fidelity(run, lambda: [(*load_sagan(run, a), a) for a in run.plan.adaptations])


def target_cameras(run: Run, a: plan_lib.Adaptation) -> tuple[int, ...]:
  """The camera ids among adaptation ``a``'s target images (read from the examples: any target layout)."""
  source = run.plan.target_source
  rows = range(len(source)) if a.target_indices is None else a.target_indices
  return tuple(sorted({int(source[int(i)]["camera_id"]) for i in rows}))


def load_sagan(run: Run, a: plan_lib.Adaptation):
  """``(model, params)`` of adaptation ``a``'s finished SA-GAN."""
  where = run.path(a.subdir("sagan"))
  missing = f"no finished SA-GAN in {where!r}: run the sagan stage first (--config.stages=sagan)"
  return sagan_train.load(run.config.sagan, where, run.mesh, run.layers, missing)


def stage_translate(run: Run) -> None:
  for a in run.plan.adaptations:
    translation.translate(run, a, *load_sagan(run, a))
  rescore_stale_fidelity(run)


def rescore_stale_fidelity(run: Run) -> None:
  """`monitor.rescore_if_stale` for a run whose benchmark has paired truth (a no-op otherwise)."""
  if run.datasets.synthetic_dir and run.config.variant != "original":
    monitor.rescore_if_stale(run, lambda: [(*load_sagan(run, a), a) for a in run.plan.adaptations])


def stage_evaluate(run: Run, rank_vis: int = 0) -> dict:
  """`evaluation.evaluate`, after re-scoring a fidelity file an older version wrote."""
  rescore_stale_fidelity(run)
  return evaluation.evaluate(run, rank_vis=rank_vis)


def _ide_training_set(run: Run, ide_name: str):
  """The IDE's images and their person ids: raw source images (Original), or its adaptations' translations."""
  if run.config.variant == "original":
    return run.datasets.source_train(), builders.read_labels(run.datasets.builder("source"), "train")["person_id"]
  by_name = {a.name: a for a in run.plan.adaptations}
  parts = [
    translation.TranslatedSource(run.path(by_name[n].subdir("translated"))) for n in run.plan.ide_models[ide_name]
  ]
  if len(parts) == 1:
    return parts[0], parts[0].person_ids
  return Concat(parts), np.concatenate([p.person_ids for p in parts])


def ide_seed(run: Run, repeat: int) -> int:
  """Training ``repeat``'s seed; the first keeps the seed of runs made before `eval.ide_repeats`."""
  return run.seed("ide" if repeat == 0 else f"ide_repeat{repeat}")


def stage_ide(run: Run) -> None:
  c = run.config
  repeats = c.eval.ide_repeats
  for ide_name in run.plan.ide_models:
    source, person_ids = _ide_training_set(run, ide_name)
    for repeat in range(repeats):
      name = f"ide {ide_name}" if ide_name else "ide"
      name += f" repeat{repeat}" if repeat else ""  # also its TensorBoard folder
      with _stopped_as_preempted(name):
        ide_train.train(
          c.ide,
          source,
          person_ids,
          run.path(run.plan.ide_subdir(ide_name, repeat)),
          run.mesh,
          steps_per_epoch=run.plan.ide_steps_per_epoch(c.ide.batch_size),
          seed=ide_seed(run, repeat),
          layers=run.layers,
          num_threads=c.data.num_threads,
          name=name,
          stop=run.stop,
          log_dir=run.tensorboard,
        )


STAGE_FUNCTIONS = {
  "masks": stage_masks,
  "sagan": stage_sagan,
  "translate": stage_translate,
  "ide": stage_ide,
  "evaluate": stage_evaluate,
}


def _checked(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Joins a multi-host run, then checks the config against the run's devices; returns its stages."""
  d = config.distributed
  parallel.initialize_distributed(d.enabled, d.coordinator_address, d.num_processes, d.process_id)
  return config_lib.check(config, jax.device_count())


def train(
  config: ml_collections.ConfigDict, workdir_path: str, allow_config_change: bool = False, layers: Layers = Layers()
) -> None:
  """Runs the config's stages in order (each entry skipped when finished, resumed otherwise).

  ``layers``: what the networks are built from (`sagan_jax.cpu.setup` decides, in the entry points).
  The config is checked before anything runs; a run that fails before writing anything besides its
  own bookkeeping leaves no claimed workdir behind, so the corrected command is not refused.
  """
  stages = _checked(config)
  with (
    workdir.owned(config, workdir_path, allow_config_change),
    preemption.SigtermFlag(install=jax.process_count() == 1) as sigterm,
  ):
    run = Run(config, workdir_path, stages, sigterm, layers=layers)
    for stage in stages:
      began = time.perf_counter()
      try:
        outcome = STAGE_FUNCTIONS[stage](run)
      except Preempted as p:
        print(f"preempted (SIGTERM): {p.stage} {p.where}; rerun the same command to resume", file=sys.stderr)
        raise
      if run.is_main:
        took = f"done ({time.perf_counter() - began:.0f} s)"
        print(f"stage {stage}: {f'skipped ({outcome})' if isinstance(outcome, Skipped) else took}", flush=True)


@contextlib.contextmanager
def opened(config: ml_collections.ConfigDict, workdir_path: str, layers: Layers = Layers()):
  """A finished (or partly finished) run's workdir, for `evaluate.py`: its config must be the one recorded."""
  stages = _checked(config)
  with (
    workdir.owned(config, workdir_path, create=False),
    preemption.SigtermFlag(install=jax.process_count() == 1) as sigterm,
  ):
    yield Run(config, workdir_path, stages, sigterm, record_plan=False, layers=layers)


def show_plan(config: ml_collections.ConfigDict, workdir_path: str, fmt: str = "text") -> dict:
  """Prepares the datasets if needed and prints what `train` would do; writes nothing to the workdir."""
  stages = _checked(config)
  run = Run(config, workdir_path, stages, record_plan=False)
  with contextlib.redirect_stdout(sys.stderr):  # TFDS reports preparation on stdout; the plan owns it
    try:
      made = run.plan
    except plan_lib.GroupsPending as e:
      print(f"viewpoint groups: {e}; rerun --plan after the masks stage (--config.stages=masks)")
      with config.unlocked():
        config.data.viewpoint_groups = "none"
      made = plan_lib.build(config, run.datasets, stages)
      made.notes.append("viewpoint groups pending (derived from masks the masks stage writes): shown ungrouped")
  out = {"experiment": config.experiment, "variant": config.variant, "workdir": os.path.abspath(workdir_path)}
  out.update(made.as_json())
  if jax.process_index() == 0:
    print(json.dumps(out, indent=1) if fmt == "json" else plan_lib.describe(made, config))
  return out
