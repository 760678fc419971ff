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
import functools
import json
import os
import shutil
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from sagan_jax import checkpoint, fileio, loop, parallel, progress
from sagan_jax.data import builders, layouts, pipeline, prid
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import paired, results, samples, translated
from sagan_jax.experiments import plan as plan_lib
from sagan_jax.experiments.datasets import Concat, Datasets
from sagan_jax.models.layers import Layers
from sagan_jax.reid import convert_torchvision, ide
from sagan_jax.sagan import SAGAN, make_steps
from sagan_jax.sagan import steps as sagan_steps

CONFIG_FILE = "config.json"
PRETRAINED_NONE = "none"  # ide.pretrained: train the IDE from scratch on purpose (reported as such)
FIDELITY_FILE = "fidelity.json"  # under sagan/: the final fidelity scores, when the benchmark has ground truth
PREEMPTED_EXIT = 143  # 128 + SIGTERM, as a shell reports a process ended by it
# Fields that change how a run is driven or reported, not what it computes: a workdir may be
# resumed with other values.
_FREE_FIELDS = (
  "stages",
  "distributed",
  "distributed.",
  "data.num_threads",
  "data.data_dir",
  "sagan_train.log_every",
  "sagan_train.sample_every",
  "sagan_train.checkpoint_every",
  "sagan_train.fidelity_every",
  "ide.log_every",
  "ide.checkpoint_every",
  "masks.log_every",
  "masks.checkpoint_every",
  "eval.",
  "translate.batch_size",
)


# Fields added to the config since workdirs were first recorded, with the value that computes what
# those workdirs computed; and fields removed since, which no longer mean anything.
_ADDED_FIELDS = {
  "sagan.stm_head": "pool",
  "sagan.gan_loss": "wgan",
  "sagan.history_pool": 0,
  "sagan.lr_schedule": "constant",
  "data.synthetic_spec.source_high_cameras": 0,
  "data.viewpoint_groups": "none",
  "data.prid_adaptation": "per_split",
}
# The gradient implementations (now the entry points' --cpu_fast_path) computed the same function.
_REMOVED_FIELDS = ("ide.normalize_features", "ide.flip_average", "sagan.gradient_impl", "ide.gradient_impl")


class WorkdirMismatchError(ValueError):
  """The workdir was made by another config."""


class WorkdirLockedError(RuntimeError):
  """Another process is running in the workdir."""


LOCK_FILE = ".lock"


class WorkdirLock:
  """One run per workdir: an exclusive ``fcntl`` lock on ``WORKDIR/.lock``, naming its holder.

  The kernel drops the lock when its process dies, so a lock file left by a dead run is taken
  over (with a warning naming it). Only process 0 of a multi-host run holds it.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = None

  def __enter__(self):
    if jax.process_index() != 0:
      return self
    import fcntl  # noqa: PLC0415  (POSIX only)
    import socket  # noqa: PLC0415

    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise WorkdirLockedError(
        f"workdir {os.path.dirname(self.path)!r} is in use by {holder}: wait for it to end, or use another --workdir"
      ) from None
    self._file.seek(0)
    previous = self._file.read().strip()
    if previous:
      logging.warning("taking over the lock of %s in %s (that run is no longer alive)", previous, self.path)
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"PID {os.getpid()} on host {socket.gethostname()}")
    self._file.flush()
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()  # a clean exit leaves nothing to take over
      self._file.close()
      self._file = None


class Preempted(SystemExit):
  def __init__(self, stage: str, step: int, where: str | None = None):
    super().__init__(PREEMPTED_EXIT)
    self.stage, self.step = stage, step
    self.where = where or f"saved at step {step}"


# --------------------------------------------------------------------------------------------------
# Run context.


class SigtermFlag:
  """Turns SIGTERM into a flag the training loops poll after every step (one-process runs).

  ``install=False`` leaves SIGTERM alone: in a multi-process run JAX's distributed runtime catches
  it for its preemption sync point (`Run.preempted`), which a Python handler would shadow.
  """

  def __init__(self, install: bool = True):
    self.raised = False
    self._install = install
    self._previous = None

  def __enter__(self):
    def handler(signum, frame):
      del signum, frame
      self.raised = True
      logging.warning("SIGTERM received: saving a checkpoint after the current step, then exiting")

    if not self._install:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class Run:
  """What every stage needs: config, workdir, mesh, datasets, the SIGTERM flag, the networks' layers."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    workdir: str,
    sigterm: SigtermFlag | None,
    record_plan: bool = True,
    layers: Layers = Layers(),
  ):
    self.config, self.workdir, self.sigterm = config, os.path.abspath(workdir), sigterm
    self.record_plan, self.layers = record_plan, layers
    self._polls = 0
    self.mesh = parallel.make_mesh()
    self.datasets = Datasets(config)
    self.is_main = jax.process_index() == 0
    self.tensorboard = os.path.join(self.workdir, "tensorboard")

  @functools.cached_property
  def plan(self) -> plan_lib.Plan:
    """The run's adaptations, IDE models and evaluations (built on first use: after the masks
    stage, since viewpoint groups may be derived from the masks it writes)."""
    made = plan_lib.build(self.config, self.datasets, config_lib.stages_of(self.config))
    if self.record_plan and self.is_main:
      os.makedirs(self.workdir, exist_ok=True)
      fileio.write_text_atomic(self.path("plan.json"), json.dumps(made.as_json(), indent=1))
    return made

  def preempted(self) -> bool:
    """Whether SIGTERM reached this process or, on several hosts, any process (polled after every step).

    Several processes poll JAX's preemption sync point (what Orbax's ``reached_preemption`` reads):
    a notice on any host makes every process answer True at the same poll, so all save the same
    checkpoint (a collective) and exit together. Every process polls in lockstep, so the poll count
    is the sync point's step id.
    """
    if jax.process_count() == 1:
      return self.sigterm is not None and self.sigterm.raised
    self._polls += 1
    return multihost_utils.reached_preemption_sync_point(self._polls)

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def trim_metrics(self, where: str, step: int) -> None:
    """Drops the logged rows past ``step`` (a resumed stage logs them again from its checkpoint)."""
    path = self.path(where, "metrics.jsonl")
    if not self.is_main or not os.path.isfile(path):
      return
    with open(path) as f:
      rows = f.readlines()
    kept = [r for r in rows if r.strip() and json.loads(r)["step"] <= step]
    if len(kept) != len(rows):
      fileio.write_text_atomic(path, "".join(kept))

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
  return {
    k: v for k, v in flat.items() if not any(k == f or (f.endswith(".") and k.startswith(f)) for f in _FREE_FIELDS)
  }


def claim_workdir(
  config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False, create: bool = True
) -> None:
  """Records the config in a new workdir; refuses a workdir made by a config that computes otherwise.

  With ``create=False`` (evaluation) a workdir without a recorded config is an error, not a new run.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not create and not os.path.isfile(path):
    raise FileNotFoundError(
      f"{workdir!r} holds no run ({CONFIG_FILE} missing): train one with "
      f"python train.py --config=... --workdir={workdir}"
    )
  current = json.loads(config.to_json_best_effort())
  if os.path.isfile(path):
    with open(path) as f:
      previous = json.load(f)
    old, new = _comparable(previous), _comparable(current)
    # A workdir recorded before a field existed ran what the field's "as before" value runs.
    old = {**{k: v for k, v in _ADDED_FIELDS.items() if k in new}, **old}
    old = {k: v for k, v in old.items() if k not in _REMOVED_FIELDS}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed and not allow_config_change:
      shown = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in changed[:6])
      fix = (
        "use a new --workdir, or pass --allow_config_change to continue this one with the new config"
        if create
        else "evaluate it with the config that trained it (the same --config and --config.<field> values)"
      )
      raise WorkdirMismatchError(
        f"workdir {workdir!r} was made by another config ({len(changed)} fields differ: {shown}"
        f"{'; ...' if len(changed) > 6 else ''}): {fix}"
      )
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
    raise ValueError(
      "config.masks.images_dir is empty: the masks stage trains the U-Net on LIP "
      "(config.masks.source='lip', images_dir=LIP root) or on images with a mirrored mask tree "
      "(source='pairs'); or set config.data.masks='data' if MANUAL_DIR/masks/ exist"
    )
  run.datasets.ensure_synthetic()
  mask_config = ml_collections.ConfigDict(c.masks.to_dict())
  with mask_config.unlocked():
    mask_config.image_size = tuple(c.sagan.image_size)
    mask_config.seed = c.seed + c.masks.seed  # --config.seed reseeds every stage
  try:
    _, record = training.train(
      mask_config,
      sources.training_source(mask_config),
      run.path("masks", "unet"),
      run.mesh,
      log_dir=run.tensorboard,
      stop=run.preempted,
    )
  except loop.Stopped as e:
    raise Preempted("masks", e.step) from None
  # Inference: each process masks its share of the images on its own devices.
  local_mesh = parallel.local_mesh()
  model, params, _ = training.load(run.path("masks", "unet"), local_mesh)
  predict = training.make_predict_fn(model, local_mesh)
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
      producer=infer.unet_producer(mask_config.to_dict()),
    )
    logging.info("masks for %s (%s): %s (U-Net held-out IoU %.3f)", role, manual, counts, record["heldout_iou"])
  parallel.barrier("masks written")


# --------------------------------------------------------------------------------------------------
# Stage: SA-GAN.


def _gan_batch(x: dict, y: dict, mesh) -> dict[str, jax.Array]:
  x, y = (
    pipeline.to_global_batch({"image": x["image"]}, mesh)["image"],
    pipeline.to_global_batch({"image": y["image"]}, mesh)["image"],
  )
  return {"x": x[..., :3], "x_mask": x[..., 3:], "y": y[..., :3], "y_mask": y[..., 3:]}


def _source_indices(run: Run, a: plan_lib.Adaptation):
  """The adaptation's source images as pipeline indices (None when it takes the whole split, as ungrouped runs)."""
  total = len(run.datasets.source_train()[0])
  return None if len(a.source_indices) == total else a.source_indices


def _sample_batches(run: Run, a: plan_lib.Adaptation, paired_set, count: int = 4):
  """Fixed images for the progress pictures, unflipped: the first paired source images with their
  ground truth when the benchmark has them, else the first source training images; target images."""
  size = run.image_size
  x_source, _ = run.datasets.source_train()
  first = lambda src, idx, n: next(
    pipeline.eval_batches(src, batch_size=n, image_size=size, indices=idx, masks=run.datasets.mask_mode)
  )[0]["image"]
  targets = first(run.plan.target_source, a.target_indices, 2 * count)
  if paired_set is not None and len(paired_set.names):
    return paired_set.source[:count], targets, paired_set.truth[:count]
  return first(x_source, a.source_indices, count), targets, None


def _paired_set(run: Run, a: plan_lib.Adaptation | None = None):
  """The benchmark's paired ground truth at the GAN's size (only ``a``'s cameras when given), or None."""
  d = run.datasets
  if not d.synthetic_dir or run.config.variant == "original":
    return None
  # Called by process 0 alone, after the stage read the datasets (which generated the benchmark).
  if not paired.available(d.synthetic_dir):
    logging.warning(
      "%s has no paired ground truth (made by an older version): no fidelity scores; "
      "regenerate it with python -m sagan_jax.data.synthetic --out DIR --overwrite",
      d.synthetic_dir,
    )
    return None
  full = paired.load(d.synthetic_dir, run.image_size)
  if a is None:
    return full
  camera_of = lambda name: int(layouts.MARKET_NAME.match(name).group(2))
  return paired.subset(full, [n for n in full.names if camera_of(n) in a.source_cameras])


def sagan_model(run: Run) -> SAGAN:
  return SAGAN(run.config.sagan, train_steps=run.config.sagan_train.steps, layers=run.layers)


def stage_sagan(run: Run) -> None:
  for a in run.plan.adaptations:
    _train_sagan(run, a)
  _write_joint_fidelity(run)


def _train_sagan(run: Run, a: plan_lib.Adaptation) -> None:
  c, t = run.config, run.config.sagan_train
  where = a.subdir("sagan")
  label = f"SA-GAN {a.name}" if a.name else "SA-GAN"
  model = sagan_model(run)
  parallel.check_batch_divisible(t.batch_size, run.mesh)
  state = sagan_steps.create_state(model, c.seed, run.mesh)
  with checkpoint.StageCheckpoints(run.path(where, "checkpoints")) as ckpt:
    state, record = ckpt.resume(state)
    if record.get("complete"):
      logging.info("%s: complete at step %d, skipped", label, int(state.step))
      return
    per_step = c.sagan.n_critic + 1  # batches drawn per generator update (a fresh batch per critic update)
    x_source, _ = run.datasets.source_train()
    make = lambda src, idx, seed: pipeline.TrainBatches(
      src,
      global_batch_size=t.batch_size,
      image_size=run.image_size,
      seed=seed,
      indices=idx,
      masks=run.datasets.mask_mode,
      num_threads=c.data.num_threads,
    )
    start = int(state.step)
    run.trim_metrics(where, start)
    xs = make(x_source, _source_indices(run, a), c.seed).iterate(start * per_step)
    ys = make(run.plan.target_source, a.target_indices, c.seed + 1).iterate(start * per_step)
    critic_step, generator_step = make_steps(model, run.mesh)
    paired_set = _paired_set(run, a) if run.is_main else None
    if paired_set is not None and not len(paired_set.names):
      paired_set = None
    sample_x, sample_y, sample_truth = _sample_batches(run, a, paired_set) if run.is_main else (None, None, None)
    sample_key, fidelity_key = jax.random.key(c.seed + 2), jax.random.key(c.seed + 4)

    name = f"sagan {a.name}" if a.name else "sagan"
    final_scores = {}

    def fidelity_scores(step, state):
      if paired_set is None or not (step == 0 or step % t.fidelity_every == 0 or step == t.steps):
        return {}
      scores = paired.measure(model, parallel.local_copy(state.params), paired_set, fidelity_key)
      if step == t.steps:
        final_scores.update(scores)
      return scores

    def after_step(step, state):
      if step == t.steps and final_scores and run.is_main:  # written once the final metrics passed their check
        fileio.write_text_atomic(run.path(where, FIDELITY_FILE), json.dumps(paired.as_result(final_scores), indent=1))
      if run.is_main and (step % t.sample_every == 0 or step == t.steps):
        picture = samples.grid(
          model, parallel.local_copy(state.params), sample_x, sample_y, sample_key, truth=sample_truth
        )
        samples.save(picture, run.path(where, "samples", f"step_{step:07d}.png"))

    def step_fn(state, step):
      del step
      for _ in range(c.sagan.n_critic):
        state, critic_metrics = critic_step(state, _gan_batch(next(xs), next(ys), run.mesh))
      state, metrics = generator_step(state, _gan_batch(next(xs), next(ys), run.mesh))
      return state, {**critic_metrics, **metrics}

    os.makedirs(run.path(where), exist_ok=True)
    training = loop.Loop(
      name,
      label,
      t.steps,
      t.log_every,
      t.checkpoint_every,
      t.batch_size * per_step,
      log_dir=run.tensorboard,
      should_stop=run.preempted,
      log_metrics=lambda step, m: run.log_metrics(where, step, m),
      extra_metrics=fidelity_scores,
      after_step=after_step,
      extra_log_steps=lambda step: step % t.fidelity_every == 0,
    )
    try:
      training.run(state, start, step_fn, ckpt)
    except loop.Stopped as e:
      raise Preempted(name, e.step) from None


def _write_joint_fidelity(run: Run) -> None:
  """With several viewpoint groups: every group's translator on its own share, scored as one set.

  Every process takes part in restoring the translators (a collective); process 0 scores and writes.
  """
  d = run.datasets
  if len(run.plan.adaptations) < 2 or d.target_is_prid() or not d.synthetic_dir or run.config.variant == "original":
    return
  path = run.path("sagan", FIDELITY_FILE)
  parallel.barrier("joint fidelity check")  # every process sees the same file state
  if os.path.isfile(path) or not paired.available(d.synthetic_dir):
    return
  translators = [(*load_sagan_params(run, a), a) for a in run.plan.adaptations]
  if run.is_main:
    scores = paired.measure_groups(
      [(model, parallel.local_copy(params), _paired_set(run, a)) for model, params, a in translators],
      jax.random.key(run.config.seed + 4),
    )
    fileio.write_text_atomic(path, json.dumps(paired.as_result(scores), indent=1))
  parallel.barrier("joint fidelity written")


def load_sagan_params(run: Run, a: plan_lib.Adaptation):
  model = sagan_model(run)
  like = jax.eval_shape(lambda: sagan_steps.create_state(model, run.config.seed))
  like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(run.mesh)), like)
  where = a.subdir("sagan")
  with checkpoint.StageCheckpoints(run.path(where, "checkpoints")) as ckpt:
    missing = FileNotFoundError(f"no complete SA-GAN in {run.path(where)!r}: run the sagan stage first")
    if ckpt.latest_step() is None:
      raise missing
    state, record = ckpt.restore(like)
    if not record.get("complete"):  # also when the complete checkpoint could not be read
      raise missing
  return model, state.params


# --------------------------------------------------------------------------------------------------
# Stage: translation.


def stage_translate(run: Run) -> None:
  for a in run.plan.adaptations:
    _translate(run, a)


def _translate(run: Run, a: plan_lib.Adaptation) -> None:
  root = run.path(a.subdir("translated"))
  if translated.is_complete(root):
    logging.info("translation %s: complete, skipped", a.name or "")
    return
  c = run.config
  model, params = load_sagan_params(run, a)
  params = parallel.local_copy(params)
  x_source, _ = run.datasets.source_train()
  # Labels without decoding: a process decodes only the batches it translates and has not written yet.
  labels = builders.read_labels(run.datasets.builder("source"), "train")
  indices = np.asarray(a.source_indices)
  num_codes = c.sagan.num_codes
  batch = c.translate.batch_size
  base_key = jax.random.key(c.seed + 3)
  count = len(indices)
  names = [translated.image_name(i, m) for i in range(count) for m in range(num_codes)]
  pids = np.repeat(labels["person_id"][indices], num_codes)
  cams = np.repeat(labels["camera_id"][indices], num_codes)
  starts = list(range(0, count, batch))
  name = f"translate {a.name}" if a.name else "translate"
  with progress.Progress(name, len(starts), 0, batch * num_codes) as bar:
    for k, begin in enumerate(starts):
      batch_names = names[begin * num_codes : (begin + batch) * num_codes]
      done = all(os.path.isfile(os.path.join(root, n)) for n in batch_names)
      if k % jax.process_count() == jax.process_index() and not done:
        images, valid = next(
          pipeline.eval_batches(
            x_source,
            batch_size=batch,
            image_size=run.image_size,
            indices=indices[begin : begin + batch],
            masks=run.datasets.mask_mode,
          )
        )
        adapted, masks, _ = sagan_steps.translate(
          model,
          params,
          jnp.asarray(images["image"][..., :3]),
          jnp.asarray(images["image"][..., 3:]),
          num_codes,
          jax.random.fold_in(base_key, k),
        )
        adapted, masks = np.asarray(adapted), np.asarray(masks)
        for i in range(valid):
          for m in range(num_codes):
            translated.write_image(root, translated.image_name(begin + i, m), adapted[i, m], masks[i, m])
      bar.update(k + 1)
      if run.preempted():
        raise Preempted(name, k + 1, f"stopped after batch {k + 1} of {len(starts)} (its images are kept)")
  parallel.barrier("translation written")
  if run.is_main:
    translated.write_labels(
      root,
      names,
      pids,
      cams,
      {
        "num_codes": num_codes,
        "source_images": count,
        "variant": c.variant,
        "adaptation": a.name,
        "source_cameras": list(a.source_cameras),
      },
    )
  parallel.barrier("translation labels written")  # the IDE stage of every process reads them next


# --------------------------------------------------------------------------------------------------
# Stage: IDE.


def _ide_training_set(run: Run, ide_name: str):
  if run.config.variant == "original":
    source, idx = run.datasets.source_train()
    pids = builders.read_labels(run.datasets.builder("source"), "train")["person_id"]
    return source, idx, pids
  by_name = {a.name: a for a in run.plan.adaptations}
  parts = [
    translated.TranslatedSource(run.path(by_name[n].subdir("translated"))) for n in run.plan.ide_models[ide_name]
  ]
  if len(parts) == 1:
    return parts[0], None, parts[0].person_ids
  return Concat(parts), None, np.concatenate([p.person_ids for p in parts])


def _ide_config(run: Run):
  cfg = ml_collections.ConfigDict(run.config.ide.to_dict())
  with cfg.unlocked():
    cfg.image_size = tuple(run.config.ide.image_size)
    cfg.seed = run.config.seed + run.config.ide.seed  # --config.seed reseeds every stage
  return cfg


def _pretrained(cfg):
  return convert_torchvision.load(cfg.pretrained) if cfg.pretrained not in ("", PRETRAINED_NONE) else None


def stage_ide(run: Run) -> None:
  for name in run.plan.ide_models:
    _train_ide(run, name)


def _train_ide(run: Run, ide_name: str) -> None:
  cfg = _ide_config(run)
  where = run.plan.ide_subdir(ide_name)
  label = f"IDE {ide_name}" if ide_name else "IDE"
  source, idx, pids = _ide_training_set(run, ide_name)
  classes = np.unique(pids)
  parallel.check_batch_divisible(cfg.batch_size, run.mesh)
  batches = pipeline.TrainBatches(
    source,
    global_batch_size=cfg.batch_size,
    image_size=cfg.image_size,
    seed=cfg.seed,
    indices=idx,
    masks="unused",
    flip=cfg.flip,
    num_threads=run.config.data.num_threads,
  )
  total = cfg.epochs * batches.steps_per_epoch
  model = ide.make_model(cfg, len(classes), run.layers)
  optimizer = ide.make_optimizer(cfg, batches.steps_per_epoch)
  state = ide.create_state(model, optimizer, cfg.image_size, cfg.seed, run.mesh, pretrained_backbone=_pretrained(cfg))
  with checkpoint.StageCheckpoints(run.path(where, "checkpoints")) as ckpt:
    state, record = ckpt.resume(state)
    if record.get("complete"):
      logging.info("%s: complete at step %d, skipped", label, int(state.step))
      return
    train_step = ide.make_train_step(model, optimizer, run.mesh)
    start = int(state.step)
    run.trim_metrics(where, start)
    os.makedirs(run.path(where), exist_ok=True)
    name = f"ide {ide_name}" if ide_name else "ide"
    local_batches = batches.iterate(start)

    def step_fn(state, step):
      del step
      local = next(local_batches)
      labels = np.searchsorted(classes, local["person_id"]).astype(np.int32)
      batch = pipeline.to_global_batch({"image": local["image"], "label": labels}, run.mesh)
      return train_step(state, batch["image"], batch["label"])

    training = loop.Loop(
      name,
      label,
      total,
      run.config.ide.log_every,
      run.config.ide.checkpoint_every,
      cfg.batch_size,
      record=lambda step, complete: {"complete": complete, "num_classes": len(classes)},
      log_dir=run.tensorboard,
      should_stop=run.preempted,
      log_metrics=lambda step, m: run.log_metrics(where, step, m),
      done_message=lambda: f"done: {total} steps, {len(classes)} identities, {batches.num_examples} images",
    )
    try:
      training.run(state, start, step_fn, ckpt)
    except loop.Stopped as e:
      raise Preempted(name, e.step) from None


def load_ide(run: Run, ide_name: str = ""):
  """(model, state, config) of the workdir's completed IDE ``ide_name``."""
  cfg = _ide_config(run)
  where = run.plan.ide_subdir(ide_name)
  missing = FileNotFoundError(
    f"no complete IDE model in {run.path(where)!r}: run the ide stage first "
    f"(python train.py --config=... --workdir={run.workdir})"
  )
  if not os.path.isdir(run.path(where, "checkpoints")):
    raise missing
  with checkpoint.StageCheckpoints(run.path(where, "checkpoints")) as ckpt:
    if ckpt.latest_step() is None or not ckpt.read_record().get("complete"):
      raise missing
    num_classes = ckpt.read_record()["num_classes"]
    model = ide.make_model(cfg, num_classes, run.layers)
    optimizer = ide.make_optimizer(cfg, 1)
    like = jax.eval_shape(lambda: ide.create_state(model, optimizer, cfg.image_size, cfg.seed))
    like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=parallel.replicated(run.mesh)), like)
    state, record = ckpt.restore(like)
    if not record.get("complete"):  # the complete checkpoint could not be read
      raise missing
  return model, state, cfg


# --------------------------------------------------------------------------------------------------
# Stage: evaluation.


def evaluate(run: Run, rank_vis: int = 0) -> dict:
  """Ranks the target protocol with the workdir's IDE models; writes results.json/.md (process 0); returns them."""
  c = run.config
  builder = run.datasets.builder("target")
  local_mesh = parallel.local_mesh()
  batch = c.eval.batch_size - c.eval.batch_size % local_mesh.size or local_mesh.size

  def extractor(ide_name):
    # Each process extracts its share of the batches on its own devices; the features are then gathered.
    model, state, cfg = load_ide(run, ide_name)
    feature_fn = ide.make_feature_fn(model, local_mesh, c.eval.normalize_features, c.eval.flip_average)
    state = parallel.local_copy(state)

    def features(split):
      try:
        return ide.extract_split(
          feature_fn,
          state,
          builder.as_data_source(split),
          batch_size=batch,
          image_size=cfg.image_size,
          stop=run.preempted,
        )
      except ide.Stopped:
        raise Preempted("evaluate", 0, "stopped before writing results") from None

    return features

  if run.datasets.target_is_prid():
    merged = {d: {"splits": []} for d in prid.DIRECTIONS}
    for ide_name in run.plan.ide_models:
      splits = run.plan.evaluated_splits(ide_name)
      if not splits:
        continue
      features = extractor(ide_name)
      part = ide.prid_tables(features("cam_a"), features("cam_b"), c.eval.ap_mode, c.eval.backend, splits=splits)
      for d in prid.DIRECTIONS:
        merged[d]["splits"] += part[d]["splits"]
    tables = ide.prid_mean(merged)
    protocol = "prid2011"
  else:
    features = extractor("")
    query, gallery = features("query"), features("gallery")
    tables = {"query_gallery": ide.rank_table(query, gallery, c.eval.ap_mode, backend=c.eval.backend)}
    protocol = "query_gallery"
    if rank_vis and run.is_main:
      from sagan_jax.experiments import rankvis  # noqa: PLC0415

      rankvis.write(run.path("rank_vis"), builder, query, gallery, rank_vis)
  plan_json = run.plan.as_json()
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
      "num_codes": c.sagan.num_codes if c.variant != "original" else 0,
      "ide_init": "imagenet" if c.ide.pretrained not in ("", PRETRAINED_NONE) else "from scratch",
      "viewpoint_groups": {g: list(v) for g, v in run.plan.groups.items()} if c.variant != "original" else {},
      "evaluated_splits": run.plan.evaluated_splits() if protocol == "prid2011" else None,
      "notes": plan_json["notes"],
    },
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


STAGE_FUNCTIONS = {
  "masks": stage_masks,
  "sagan": stage_sagan,
  "translate": stage_translate,
  "ide": stage_ide,
  "evaluate": stage_evaluate,
}


@contextlib.contextmanager
def started(
  config: ml_collections.ConfigDict,
  workdir: str,
  allow_config_change: bool = False,
  create: bool = True,
  layers: Layers = Layers(),
):
  """Checks and claims the workdir, installs the SIGTERM handler; yields the `Run`."""
  d = config.distributed
  parallel.initialize_distributed(d.enabled, d.coordinator_address, d.num_processes, d.process_id)
  claim_workdir(config, workdir, allow_config_change, create)
  with SigtermFlag(install=jax.process_count() == 1) as sigterm:
    yield Run(config, workdir, sigterm, layers=layers)


def show_plan(config: ml_collections.ConfigDict, workdir: str, fmt: str = "text") -> dict:
  """Prepares the datasets if needed and prints what `train` would do; writes nothing to ``workdir``."""
  stages = config_lib.stages_of(config)
  d = config.distributed
  parallel.initialize_distributed(d.enabled, d.coordinator_address, d.num_processes, d.process_id)
  run = Run(config, workdir, None, record_plan=False)
  with contextlib.redirect_stdout(sys.stderr):  # TFDS reports preparation on stdout; the plan owns it
    try:
      made = run.plan
    except plan_lib.GroupsPending as e:
      print(f"viewpoint groups: {e}; rerun --plan after the masks stage (--config.stages=masks)")
      with config.unlocked():
        config.data.viewpoint_groups = "none"
      made = plan_lib.build(config, run.datasets, stages)
      made.notes.append("viewpoint groups pending (derived from masks the masks stage writes): shown ungrouped")
  out = made.as_json()
  out = {"experiment": config.experiment, "variant": config.variant, "workdir": os.path.abspath(workdir), **out}
  if jax.process_index() == 0:
    print(json.dumps(out, indent=1) if fmt == "json" else plan_lib.describe(made, config))
  return out


def train(
  config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False, layers: Layers = Layers()
) -> None:
  """Runs the config's stages in order (each skipped when complete, resumed otherwise).

  ``layers``: what the networks are built from (`sagan_jax.cpu.setup` decides, in the entry points).

  The config is checked before anything runs; a run that fails before writing anything besides its
  own bookkeeping leaves no claimed workdir behind, so the corrected command is not refused.
  """
  stages = config_lib.stages_of(config)
  d = config.distributed
  parallel.initialize_distributed(d.enabled, d.coordinator_address, d.num_processes, d.process_id)
  config_lib.check_numbers(config, stages, jax.device_count())  # once the run's devices are known
  existed = os.path.isfile(os.path.join(workdir, CONFIG_FILE))
  created_dir = not os.path.exists(workdir)
  with WorkdirLock(workdir):
    try:
      with started(config, workdir, allow_config_change, layers=layers) as run:
        for stage in stages:
          began = time.perf_counter()
          try:
            STAGE_FUNCTIONS[stage](run)
            if run.is_main:
              print(f"stage {stage}: done ({time.perf_counter() - began:.0f} s)", flush=True)
          except Preempted as p:
            print(f"preempted (SIGTERM): {p.stage} {p.where}; rerun the same command to resume", file=sys.stderr)
            raise
    except BaseException:
      if not existed and jax.process_index() == 0:
        _unclaim(workdir, created_dir)
      raise


_BOOKKEEPING = (CONFIG_FILE, "plan.json", LOCK_FILE)


def _unclaim(workdir: str, remove_dir: bool) -> None:
  """Removes a new workdir's bookkeeping when nothing else was written in it."""
  written = [os.path.join(d, f) for d, _, fs in os.walk(workdir) for f in fs]
  if any(os.path.relpath(p, workdir) not in _BOOKKEEPING for p in written):
    return
  for name in _BOOKKEEPING:
    if name != LOCK_FILE and os.path.isfile(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))
  if remove_dir:
    # The lock file goes last, after the lock is released by the caller's exit; an empty tree is removed.
    try:
      os.remove(os.path.join(workdir, LOCK_FILE))
      shutil.rmtree(workdir)
    except OSError:
      pass
