"""The stages `train.py` runs: masks → SA-GAN → translation → IDE → evaluation.

Each stage keeps its outputs under the workdir and is skipped when they are complete; otherwise
it resumes from its last checkpoint (a killed run continues where it stopped when the same
command is run again). SIGTERM (preemption) makes the running stage save a checkpoint and exit
with status 143. A non-finite loss stops the stage with `NonFiniteLossError`, before any
checkpoint of the bad state is written. Only process 0 writes logs, pictures and results.

Workdir layout::

  config.json                the config that made the workdir (another config is refused)
  masks/unet/                the mask U-Net (masks themselves go to MANUAL_DIR/masks/)
  sagan/checkpoints/, sagan/samples/step_NNNNNNN.png, sagan/metrics.jsonl, sagan/fidelity.json (synthetic)
  translated/                M adapted images per source image + labels.json
  ide/checkpoints/, ide/metrics.jsonl
  results.json, results.md   the evaluation, in the paper's layout
  tensorboard/               scalars of every stage
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from sagan_jax import checkpoint, fileio, parallel, progress
from sagan_jax.data import builders, pipeline
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import paired, results, samples, translated
from sagan_jax.experiments.datasets import Datasets
from sagan_jax.reid import convert_torchvision, ide
from sagan_jax.sagan import SAGAN, make_steps
from sagan_jax.sagan import steps as sagan_steps

CONFIG_FILE = "config.json"
FIDELITY_FILE = "fidelity.json"  # under sagan/: the final fidelity scores, when the benchmark has ground truth
PREEMPTED_EXIT = 143  # 128 + SIGTERM, as a shell reports a process ended by it
# Fields that change how a run is driven or reported, not what it computes: a workdir may be
# resumed with other values. The gradient implementations compute the same function (they differ
# in float32 rounding only), so a run started on a CPU may go on with XLA's gradients on a GPU.
_FREE_FIELDS = ("stages", "distributed", "distributed.", "data.num_threads", "data.data_dir", "sagan_train.log_every",
                "sagan_train.sample_every", "sagan_train.checkpoint_every", "sagan_train.fidelity_every",
                "ide.log_every", "ide.checkpoint_every", "eval.", "translate.batch_size", "sagan.gradient_impl",
                "ide.gradient_impl")


class WorkdirMismatchError(ValueError):
  """The workdir was made by another config."""


class Preempted(SystemExit):
  def __init__(self, stage: str, step: int):
    super().__init__(PREEMPTED_EXIT)
    self.stage, self.step = stage, step


# --------------------------------------------------------------------------------------------------
# Run context.


class _SigtermFlag:
  """Turns SIGTERM into a flag the training loops poll after every step."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    def handler(signum, frame):
      del signum, frame
      self.raised = True
      logging.warning("SIGTERM received: saving a checkpoint after the current step, then exiting")

    try:
      self._previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class Run:
  """What every stage needs: config, workdir, mesh, datasets, the SIGTERM flag."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, sigterm: _SigtermFlag):
    self.config, self.workdir, self.sigterm = config, os.path.abspath(workdir), sigterm
    self.mesh = parallel.make_mesh()
    self.datasets = Datasets(config)
    self.is_main = jax.process_index() == 0
    self.tensorboard = os.path.join(self.workdir, "tensorboard")

  def preempted(self) -> bool:
    """Whether SIGTERM reached this process or, on several hosts, any process (polled after every step).

    Every process gets the same answer at the same step, so all of them save the same checkpoint
    (a collective) and exit together even when the scheduler signals only some hosts.
    """
    if jax.process_count() == 1:
      return self.sigterm.raised
    flags = multihost_utils.process_allgather(np.int32(self.sigterm.raised))
    return bool(np.any(flags))

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def log_metrics(self, stage: str, step: int, metrics: dict) -> None:
    if self.is_main:
      with open(self.path(stage, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")

  @property
  def image_size(self) -> tuple[int, int]:
    return tuple(self.config.sagan.image_size)


# --------------------------------------------------------------------------------------------------
# Workdir ownership.


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def _comparable(config_dict: dict) -> dict[str, Any]:
  flat = _flatten(json.loads(json.dumps(config_dict)))
  return {k: v for k, v in flat.items() if not any(k == f or (f.endswith(".") and k.startswith(f)) for f in _FREE_FIELDS)}


def claim_workdir(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False,
                  create: bool = True) -> None:
  """Records the config in a new workdir; refuses a workdir made by a config that computes otherwise.

  With ``create=False`` (evaluation) a workdir without a recorded config is an error, not a new run.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not create and not os.path.isfile(path):
    raise FileNotFoundError(f"{workdir!r} holds no run ({CONFIG_FILE} missing): train one with "
                            f"python train.py --config=... --workdir={workdir}")
  current = json.loads(config.to_json_best_effort())
  if os.path.isfile(path):
    with open(path) as f:
      previous = json.load(f)
    old, new = _comparable(previous), _comparable(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed and not allow_config_change:
      shown = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in changed[:6])
      raise WorkdirMismatchError(
          f"workdir {workdir!r} was made by another config ({len(changed)} fields differ: {shown}"
          f"{'; ...' if len(changed) > 6 else ''}). Use a new --workdir, or pass --allow_config_change to "
          "continue this one with the new config")
    if not changed:
      return
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    fileio.write_text_atomic(path, json.dumps(current, indent=1, sort_keys=True))


# --------------------------------------------------------------------------------------------------
# Stage: masks.


def stage_masks(run: Run) -> None:
  from sagan_jax.masks import infer, sources, training  # noqa: PLC0415

  c = run.config
  if c.data.masks != "unet" or not c.sagan.use_mask:
    logging.info("masks stage: nothing to do (data.masks=%r)", c.data.masks)
    return
  if not c.masks.images_dir:
    raise ValueError("config.masks.images_dir is empty: the masks stage trains the U-Net on LIP "
                     "(config.masks.source='lip', images_dir=LIP root) or on images with a mirrored mask tree "
                     "(source='pairs'); or set config.data.masks='data' if MANUAL_DIR/masks/ exist")
  run.datasets.ensure_synthetic()
  mask_config = ml_collections.ConfigDict(c.masks.to_dict())
  with mask_config.unlocked():
    mask_config.image_size = tuple(c.sagan.image_size)
  _, record = training.train(mask_config, sources.training_source(mask_config), run.path("masks", "unet"),
                             run.mesh, log_dir=run.tensorboard)
  # Inference: each process masks its share of the images on its own devices.
  local_mesh = parallel.local_mesh()
  model, params, _ = training.load(run.path("masks", "unet"), local_mesh)
  predict = training.make_predict_fn(model, local_mesh)
  batch = max(local_mesh.size, 32 - 32 % local_mesh.size)
  for role in ("source", "target"):
    manual = run.datasets.manual_dirs[role]
    counts = infer.infer(lambda rgb: predict(params, rgb), manual, infer.default_out_dir(manual),
                         run.image_size, batch, shard=(jax.process_index(), jax.process_count()))
    logging.info("masks for %s (%s): %s (U-Net held-out IoU %.3f)", role, manual, counts, record["heldout_iou"])
  parallel.barrier("masks written")


# --------------------------------------------------------------------------------------------------
# Stage: SA-GAN.


def _gan_batch(x: dict, y: dict, mesh) -> dict[str, jax.Array]:
  x, y = pipeline.to_global_batch({"image": x["image"]}, mesh)["image"], pipeline.to_global_batch({"image": y["image"]}, mesh)["image"]
  return {"x": x[..., :3], "x_mask": x[..., 3:], "y": y[..., :3], "y_mask": y[..., 3:]}


def _sample_batches(run: Run, paired_set, count: int = 4):
  """Fixed images for the progress pictures, unflipped: the first paired source images with their
  ground truth when the benchmark has them, else the first source training images; target images."""
  size = run.image_size
  x_source, x_idx = run.datasets.source_train()
  y_source, y_idx = run.datasets.target_adaptation()
  first = lambda src, idx, n: next(pipeline.eval_batches(src, batch_size=n, image_size=size, indices=idx,
                                                         masks=run.datasets.mask_mode))[0]["image"]
  targets = first(y_source, y_idx, 2 * count)
  if paired_set is not None:
    return paired_set.source[:count], targets, paired_set.truth[:count]
  return first(x_source, x_idx, count), targets, None


def _paired_set(run: Run):
  """The benchmark's paired ground truth at the GAN's size, or None (real datasets, older benchmarks)."""
  d = run.datasets
  if not d.synthetic_dir or run.config.variant == "original":
    return None
  # Called by process 0 alone, after the stage read the datasets (which generated the benchmark).
  if not paired.available(d.synthetic_dir):
    logging.warning("%s has no paired ground truth (made by an older version): no fidelity scores; "
                    "regenerate it with python -m sagan_jax.data.synthetic --out DIR --overwrite", d.synthetic_dir)
    return None
  return paired.load(d.synthetic_dir, run.image_size)


def sagan_model(config) -> SAGAN:
  return SAGAN(config.sagan)


def stage_sagan(run: Run) -> None:
  c, t = run.config, run.config.sagan_train
  model = sagan_model(c)
  parallel.check_batch_divisible(t.batch_size, run.mesh)
  state = sagan_steps.create_state(model, c.seed, run.mesh)
  with checkpoint.StageCheckpoints(run.path("sagan", "checkpoints")) as ckpt:
    state, record = ckpt.resume(state)
    if record.get("complete"):
      logging.info("SA-GAN: complete at step %d, skipped", int(state.step))
      return
    per_step = c.sagan.n_critic + 1  # batches drawn per generator update (a fresh batch per critic update)
    x_source, x_idx = run.datasets.source_train()
    y_source, y_idx = run.datasets.target_adaptation()
    make = lambda src, idx, seed: pipeline.TrainBatches(
        src, global_batch_size=t.batch_size, image_size=run.image_size, seed=seed, indices=idx,
        masks=run.datasets.mask_mode, num_threads=c.data.num_threads)
    start = int(state.step)
    xs = make(x_source, x_idx, c.seed).iterate(start * per_step)
    ys = make(y_source, y_idx, c.seed + 1).iterate(start * per_step)
    critic_step, generator_step = make_steps(model, run.mesh)
    paired_set = _paired_set(run) if run.is_main else None
    sample_x, sample_y, sample_truth = _sample_batches(run, paired_set) if run.is_main else (None, None, None)
    sample_key, fidelity_key = jax.random.key(c.seed + 2), jax.random.key(c.seed + 4)

    def fidelity_scores():
      if paired_set is None:
        return {}
      return paired.measure(model, parallel.local_copy(state.params), paired_set, fidelity_key)

    os.makedirs(run.path("sagan"), exist_ok=True)
    with progress.Progress("sagan", t.steps, start, t.batch_size * per_step, run.tensorboard) as bar:
      if start == 0 and paired_set is not None:  # the untrained translator's scores, for comparison
        scores = fidelity_scores()
        bar.update(0, scores)
        run.log_metrics("sagan", 0, scores)
      for step in range(start + 1, t.steps + 1):
        for _ in range(c.sagan.n_critic):
          state, critic_metrics = critic_step(state, _gan_batch(next(xs), next(ys), run.mesh))
        state, metrics = generator_step(state, _gan_batch(next(xs), next(ys), run.mesh))
        checkpointing = step % t.checkpoint_every == 0 or step == t.steps
        scored = step % t.fidelity_every == 0 or step == t.steps
        logged = step % t.log_every == 0 or checkpointing or scored
        if logged:
          scores = fidelity_scores() if scored else {}
          _report(run, "sagan", bar, step, {**critic_metrics, **metrics, **scores})
          if step == t.steps and scores and run.is_main:
            fileio.write_text_atomic(run.path("sagan", FIDELITY_FILE), json.dumps(paired.as_result(scores), indent=1))
        if run.is_main and (step % t.sample_every == 0 or step == t.steps):
          picture = samples.grid(model, parallel.local_copy(state.params), sample_x, sample_y, sample_key,
                                 truth=sample_truth)
          samples.save(picture, run.path("sagan", "samples", f"step_{step:07d}.png"))
        if run.preempted():  # polled last: a SIGTERM that came during this step is honoured at its end
          if not logged:
            _report(run, "sagan", bar, step, {**critic_metrics, **metrics})
          ckpt.save(step, state, {"complete": False}, force=True)
          ckpt.wait()
          raise Preempted("sagan", step)
        if checkpointing:
          ckpt.save(step, state, {"complete": step == t.steps}, force=step == t.steps)
    ckpt.wait()


def _report(run: Run, stage: str, bar: progress.Progress, step: int, metrics: dict) -> None:
  """Fetches a step's metrics, stops on a non-finite one, shows and logs them."""
  metrics = jax.device_get(metrics)
  progress.check_finite({"sagan": "SA-GAN", "ide": "IDE"}[stage], step, metrics)
  bar.update(step, metrics)
  run.log_metrics(stage, step, metrics)


def load_sagan_params(run: Run):
  model = sagan_model(run.config)
  like = sagan_steps.create_state(model, run.config.seed, run.mesh)
  with checkpoint.StageCheckpoints(run.path("sagan", "checkpoints")) as ckpt:
    if ckpt.latest_step() is None or not ckpt.read_record().get("complete"):
      raise FileNotFoundError(f"no complete SA-GAN in {run.path('sagan')!r}: run the sagan stage first")
    state, _ = ckpt.restore(like)
  return model, state.params


# --------------------------------------------------------------------------------------------------
# Stage: translation.


def stage_translate(run: Run) -> None:
  root = run.path("translated")
  if translated.is_complete(root):
    logging.info("translation: complete, skipped")
    return
  c = run.config
  model, params = load_sagan_params(run)
  params = parallel.local_copy(params)
  x_source, x_idx = run.datasets.source_train()
  # Labels without decoding: a process decodes only the batches it translates and has not written yet.
  labels = builders.read_labels(run.datasets.builder("source"), "train")
  indices = np.arange(len(x_source)) if x_idx is None else np.asarray(x_idx)
  num_codes = c.sagan.num_codes
  batch = c.translate.batch_size
  base_key = jax.random.key(c.seed + 3)
  count = len(indices)
  names = [translated.image_name(i, m) for i in range(count) for m in range(num_codes)]
  pids = np.repeat(labels["person_id"][indices], num_codes)
  cams = np.repeat(labels["camera_id"][indices], num_codes)
  starts = list(range(0, count, batch))
  with progress.Progress("translate", len(starts), 0, batch * num_codes) as bar:
    for k, begin in enumerate(starts):
      batch_names = names[begin * num_codes:(begin + batch) * num_codes]
      done = all(os.path.isfile(os.path.join(root, n)) for n in batch_names)
      if k % jax.process_count() == jax.process_index() and not done:
        images, valid = next(pipeline.eval_batches(x_source, batch_size=batch, image_size=run.image_size,
                                                   indices=indices[begin:begin + batch], masks=run.datasets.mask_mode))
        adapted, masks, _ = sagan_steps.translate(model, params, jnp.asarray(images["image"][..., :3]),
                                                  jnp.asarray(images["image"][..., 3:]), num_codes,
                                                  jax.random.fold_in(base_key, k))
        adapted, masks = np.asarray(adapted), np.asarray(masks)
        for i in range(valid):
          for m in range(num_codes):
            translated.write_image(root, translated.image_name(begin + i, m), adapted[i, m], masks[i, m])
      bar.update(k + 1)
  parallel.barrier("translation written")
  if run.is_main:
    translated.write_labels(root, names, pids, cams, {"num_codes": num_codes, "source_images": count,
                                                      "variant": c.variant})
  parallel.barrier("translation labels written")  # the IDE stage of every process reads them next


# --------------------------------------------------------------------------------------------------
# Stage: IDE.


def _ide_training_set(run: Run):
  if run.config.variant == "original":
    source, idx = run.datasets.source_train()
    pids = builders.read_labels(run.datasets.builder("source"), "train")["person_id"]
    return source, idx, pids
  source = translated.TranslatedSource(run.path("translated"))
  return source, None, source.person_ids


def _ide_config(run: Run):
  cfg = ml_collections.ConfigDict(run.config.ide.to_dict())
  with cfg.unlocked():
    cfg.image_size = tuple(run.config.ide.image_size)
  return cfg


def _pretrained(cfg):
  return convert_torchvision.load(cfg.pretrained) if cfg.pretrained else None


def stage_ide(run: Run) -> None:
  cfg = _ide_config(run)
  source, idx, pids = _ide_training_set(run)
  classes = np.unique(pids)
  parallel.check_batch_divisible(cfg.batch_size, run.mesh)
  batches = pipeline.TrainBatches(source, global_batch_size=cfg.batch_size, image_size=cfg.image_size,
                                  seed=cfg.seed, indices=idx, masks="unused", flip=cfg.flip,
                                  num_threads=run.config.data.num_threads)
  total = cfg.epochs * batches.steps_per_epoch
  model = ide.make_model(cfg, num_classes=len(classes))
  optimizer = ide.make_optimizer(cfg, batches.steps_per_epoch)
  state = ide.create_state(model, optimizer, cfg.image_size, cfg.seed, run.mesh, pretrained_backbone=_pretrained(cfg))
  with checkpoint.StageCheckpoints(run.path("ide", "checkpoints")) as ckpt:
    state, record = ckpt.resume(state)
    if record.get("complete"):
      logging.info("IDE: complete at step %d, skipped", int(state.step))
      return
    train_step = ide.make_train_step(model, optimizer, run.mesh)
    start = int(state.step)
    os.makedirs(run.path("ide"), exist_ok=True)
    with progress.Progress("ide", total, start, cfg.batch_size, run.tensorboard) as bar:
      for step, local in zip(range(start + 1, total + 1), batches.iterate(start)):
        labels = np.searchsorted(classes, local["person_id"]).astype(np.int32)
        batch = pipeline.to_global_batch({"image": local["image"], "label": labels}, run.mesh)
        state, metrics = train_step(state, batch["image"], batch["label"])
        checkpointing = step % run.config.ide.checkpoint_every == 0 or step == total
        logged = step % run.config.ide.log_every == 0 or checkpointing
        if logged:
          _report(run, "ide", bar, step, metrics)
        if run.preempted():
          if not logged:
            _report(run, "ide", bar, step, metrics)
          ckpt.save(step, state, {"complete": False, "num_classes": len(classes)}, force=True)
          ckpt.wait()
          raise Preempted("ide", step)
        if checkpointing:
          ckpt.save(step, state, {"complete": step == total, "num_classes": len(classes)}, force=step == total)
      bar.log(f"done: {total} steps, {len(classes)} identities, {batches.num_examples} images")
    ckpt.wait()


def load_ide(run: Run):
  """(model, state, config) of the workdir's completed IDE."""
  cfg = _ide_config(run)
  missing = FileNotFoundError(f"no complete IDE model in {run.path('ide')!r}: run the ide stage first "
                              f"(python train.py --config=... --workdir={run.workdir})")
  if not os.path.isdir(run.path("ide", "checkpoints")):
    raise missing
  with checkpoint.StageCheckpoints(run.path("ide", "checkpoints")) as ckpt:
    if ckpt.latest_step() is None or not ckpt.read_record().get("complete"):
      raise missing
    num_classes = ckpt.read_record()["num_classes"]
    model = ide.make_model(cfg, num_classes)
    optimizer = ide.make_optimizer(cfg, 1)
    like = ide.create_state(model, optimizer, cfg.image_size, cfg.seed, run.mesh)
    state, _ = ckpt.restore(like)
  return model, state, cfg


# --------------------------------------------------------------------------------------------------
# Stage: evaluation.


def evaluate(run: Run, rank_vis: int = 0) -> dict:
  """Ranks the target protocol with the workdir's IDE; writes results.json/.md (process 0); returns them."""
  c = run.config
  model, state, cfg = load_ide(run)
  # Each process extracts its share of the batches on its own devices; the features are then gathered.
  local_mesh = parallel.local_mesh()
  feature_fn = ide.make_feature_fn(model, local_mesh, c.eval.normalize_features, c.eval.flip_average)
  state = parallel.local_copy(state)
  builder = run.datasets.builder("target")
  batch = c.eval.batch_size - c.eval.batch_size % local_mesh.size or local_mesh.size

  def features(split):
    return ide.extract_split(feature_fn, state, builder.as_data_source(split), batch_size=batch,
                             image_size=cfg.image_size)

  if run.datasets.target_is_prid():
    tables = ide.prid_tables(features("cam_a"), features("cam_b"), c.eval.ap_mode, c.eval.backend)
    protocol = "prid2011"
  else:
    query, gallery = features("query"), features("gallery")
    tables = {"query_gallery": ide.rank_table(query, gallery, c.eval.ap_mode, backend=c.eval.backend)}
    protocol = "query_gallery"
    if rank_vis and run.is_main:
      from sagan_jax.experiments import rankvis  # noqa: PLC0415

      rankvis.write(run.path("rank_vis"), builder, query, gallery, rank_vis)
  result = {
      "experiment": c.experiment, "variant": c.variant, "protocol": protocol,
      "target": run.datasets.names["target"], "tables": tables,
      "settings": {"normalize_features": c.eval.normalize_features, "flip_average": c.eval.flip_average,
                   "ap_mode": c.eval.ap_mode, "num_codes": c.sagan.num_codes if c.variant != "original" else 0},
  }
  fidelity_path = run.path("sagan", FIDELITY_FILE)
  if c.variant != "original" and os.path.isfile(fidelity_path):
    with open(fidelity_path) as f:
      result["fidelity"] = json.load(f)
  if run.is_main:
    results.write(run.workdir, result)
    print(results.markdown([result], f"{c.experiment}: {results.method_name(result)}"))
  return result


def stage_evaluate(run: Run) -> None:
  evaluate(run)


STAGE_FUNCTIONS = {"masks": stage_masks, "sagan": stage_sagan, "translate": stage_translate, "ide": stage_ide,
                   "evaluate": stage_evaluate}


@contextlib.contextmanager
def started(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False, create: bool = True):
  """Checks and claims the workdir, installs the SIGTERM handler; yields the `Run`."""
  d = config.distributed
  parallel.initialize_distributed(d.enabled, d.coordinator_address, d.num_processes, d.process_id)
  claim_workdir(config, workdir, allow_config_change, create)
  with _SigtermFlag() as sigterm:
    yield Run(config, workdir, sigterm)


def train(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False) -> None:
  """Runs the config's stages in order (each skipped when complete, resumed otherwise)."""
  stages = config_lib.stages_of(config)
  with started(config, workdir, allow_config_change) as run:
    for stage in stages:
      logging.info("stage %s", stage)
      try:
        STAGE_FUNCTIONS[stage](run)
      except Preempted as p:
        print(f"preempted (SIGTERM): {p.stage} saved at step {p.step}; rerun the same command to resume",
              file=sys.stderr)
        raise
