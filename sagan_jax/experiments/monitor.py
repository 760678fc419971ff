"""What an experiment watches while an SA-GAN trains, handed to its trainer as `sagan_jax.loop.Hooks`:
fidelity scores against the synthetic benchmark's paired ground truth, and Fig. 4-style sample grids.

Only process 0 scores and draws. Workdir files: ``sagan[/<adaptation>]/fidelity.json`` (the final
scores) and ``sagan[/<adaptation>]/samples/step_NNNNNNN.png``; with several viewpoint groups
``sagan/fidelity.json`` scores every group's translator on its own share, as one set.
"""

from __future__ import annotations

import json
import os

import jax
from absl import logging

from sagan_jax import fileio, loop, parallel
from sagan_jax.data import pipeline
from sagan_jax.experiments import paired, samples
from sagan_jax.experiments import plan as plan_lib
from sagan_jax.experiments.run import Run
from sagan_jax.sagan.model import SAGAN

FIDELITY_FILE = "fidelity.json"
# What `detail_error` in a fidelity.json means; files written before the field scored plain SSIM
# windows, which read the scene beside the outline (`fidelity.detail_error_nearest`).
DETAIL_DEFINITION = "ssim_person_weighted"
DETAIL_BEFORE_FIELD = "ssim_windows"
# How the scored codes were chosen (`SAGAN.fixed_codes`): each categorical category in turn, or
# normal codes drawn once; files written before the field drew categorical codes at random too,
# which could leave a target camera unscored.
CODES_IN_TURN, CODES_DRAWN = "categories_in_turn", "drawn_once"


def code_draw(config) -> str:
  """The ``code_draw`` a fidelity.json written today has for experiment config ``config``."""
  return CODES_IN_TURN if config.sagan.code_distribution == "categorical" else CODES_DRAWN


def paired_set(run: Run, a: plan_lib.Adaptation | None = None, which: str = "heldout") -> paired.PairedSet | None:
  """The benchmark's paired set ``which`` at the GAN's size (only ``a``'s cameras when given), or None."""
  d = run.datasets
  if not d.synthetic_dir or run.config.variant == "original":
    return None
  if not paired.available(d.synthetic_dir):
    logging.warning(
      "%s has no held-out paired ground truth (made by an older version): no fidelity scores; "
      "regenerate it with python -m sagan_jax.data.synthetic --out DIR --overwrite",
      d.synthetic_dir,
    )
    return None
  full = paired.load(d.synthetic_dir, run.image_size, which)
  if a is None:
    return full
  return paired.subset(full, [n for n in full.names if paired.camera_of(n) in a.source_cameras])


def final_scores(run: Run, translators, key) -> dict:
  """``results.json`` ``fidelity``: held-out scores over `paired.FINAL_CODES` codes, ``train`` (in-sample)
  and ``references`` (trivial translations on the held-out set).

  The images scored are those the translate stage writes for the IDE: with
  ``config.translate.region`` other than ``"frame"`` (named in ``region``) or a
  ``config.translate.strength`` under 1 (named in ``strength``), the composite, and ``frame`` holds
  G1's whole output's held-out scores beside it.
  ``translators``: ``[(model, params, adaptation)]`` (one per viewpoint group, scored as one set).
  """
  region, strength = run.config.translate.region, float(run.config.translate.strength)
  out = {}
  for which in paired.SETS:
    sets = [(model, params, paired_set(run, a, which)) for model, params, a in translators]
    out[which] = paired.measure_groups(sets, key, paired.FINAL_CODES, region, strength)
  heldout = paired.join([paired_set(run, a) for _, _, a in translators])
  stats = paired.target_statistics(run.datasets.synthetic_dir, run.image_size)
  frame = {}
  if region != "frame" or strength != 1.0:
    sets = [(model, params, paired_set(run, a)) for model, params, a in translators]
    frame = {"frame": paired.measure_groups(sets, key, paired.FINAL_CODES)}
  return {
    **out["heldout"],
    "region": region,
    **({} if strength == 1.0 else {"strength": strength}),  # files scored before the option stay valid
    "train": out["train"],
    **frame,
    "references": paired.references(heldout, stats),
    "codes": paired.FINAL_CODES,
    "code_draw": code_draw(run.config),
    "detail_definition": DETAIL_DEFINITION,
  }


def _sample_batches(run: Run, a: plan_lib.Adaptation, pairs: paired.PairedSet | None, count: int = 4):
  """Fixed images for the grids, unflipped: the first paired source images with their ground truth
  when the benchmark has them, else the first source training images; target images."""
  first = lambda src, idx, n: next(
    pipeline.eval_batches(src, batch_size=n, image_size=run.image_size, indices=idx, masks=run.datasets.mask_mode)
  )[0]["image"]
  targets = first(run.plan.target_source, a.target_indices, 2 * count)
  if pairs is not None:  # the truth column shows the central view (the middle of the K)
    return pairs.source[:count], targets, pairs.truth[:count, pairs.truth.shape[1] // 2]
  return first(run.datasets.source_train(), a.source_indices, count), targets, None


def sagan_hooks(run: Run, a: plan_lib.Adaptation, model: SAGAN) -> loop.Hooks:
  """Held-out fidelity scores on log steps that are multiples of ``fidelity_every`` (and at steps 0
  and the last; the last also writes ``fidelity.json``, all of `final_scores`, once its metrics
  passed their check); a grid every ``sample_every``."""
  if not run.is_main:
    return loop.Hooks()
  t = run.config.sagan_train
  where = run.path(a.subdir("sagan"))
  pairs = paired_set(run, a)
  if pairs is not None and not len(pairs.names):
    pairs = None
  sample_x, sample_y, sample_truth = _sample_batches(run, a, pairs)
  sample_key, fidelity_key = jax.random.key(run.seed("sagan/samples")), jax.random.key(run.seed("sagan/fidelity"))

  def fidelity_scores(step, state):
    if pairs is None or not (step == 0 or step % t.fidelity_every == 0 or step == t.steps):
      return {}
    scores = paired.measure(model, parallel.local_copy(state.translation_params), pairs, fidelity_key, detail=False)
    return {f"fidelity/{k}": v for k, v in scores.items() if isinstance(v, float)}

  def after_step(step, state):
    if step == t.steps and pairs is not None:
      scores = final_scores(run, [(model, parallel.local_copy(state.translation_params), a)], fidelity_key)
      fileio.write_text_atomic(os.path.join(where, FIDELITY_FILE), json.dumps(scores, indent=1))
    if step % t.sample_every == 0 or step == t.steps:
      picture = samples.grid(
        model, parallel.local_copy(state.translation_params), sample_x, sample_y, sample_key, truth=sample_truth
      )
      samples.save(picture, os.path.join(where, "samples", f"step_{step:07d}.png"))

  return loop.Hooks(
    extra_metrics=fidelity_scores, after_step=after_step, extra_log_steps=lambda step: step % t.fidelity_every == 0
  )


def scored_as(run: Run) -> dict[str, str | float] | None:
  """How ``sagan/fidelity.json`` was scored: its ``region`` (``translate.region``), ``strength``, ``code_draw`` and
  ``detail_definition`` (the values files written before each field imply), or None when there is
  no such file."""
  path = run.path("sagan", FIDELITY_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    scores = json.load(f)
  return {
    "region": scores.get("region", "frame"),
    "strength": scores.get("strength", 1.0),
    "code_draw": scores.get("code_draw", CODES_DRAWN),
    "detail_definition": scores.get("detail_definition", DETAIL_BEFORE_FIELD),
  }


def rescore_if_stale(run: Run, translators) -> None:
  """Scores a finished run's ``sagan/fidelity.json`` again when it no longer describes what this
  version would write: the run is translated with another ``translate.region`` or ``strength`` than it was scored
  on, its categorical codes were drawn at random, or its ``detail_error`` has an older definition.
  So ``results.json`` ``fidelity`` always describes the images the IDE learns from, in today's
  units. ``translators`` as `write_joint_fidelity`'s; process 0 writes.
  """
  parallel.barrier("fidelity check")
  scored = scored_as(run)
  wanted = {
    "region": run.config.translate.region,
    "strength": float(run.config.translate.strength),
    "code_draw": code_draw(run.config),
    "detail_definition": DETAIL_DEFINITION,
  }
  if scored is None or scored == wanted:
    return
  restored = translators()
  if run.is_main:
    changed = ", ".join(f"{k} {scored[k]!r} -> {wanted[k]!r}" for k in wanted if scored[k] != wanted[k])
    logging.warning("sagan/fidelity.json was scored with another %s; scoring it again", changed)
    local = [(model, parallel.local_copy(params), a) for model, params, a in restored]
    scores = final_scores(run, local, jax.random.key(run.seed("sagan/fidelity")))
    fileio.write_text_atomic(run.path("sagan", FIDELITY_FILE), json.dumps(scores, indent=1))
  parallel.barrier("fidelity written")


def write_joint_fidelity(run: Run, translators) -> None:
  """With several viewpoint groups: every group's translator on its own share, scored as one set.

  ``translators()``: ``[(model, params, adaptation)]``, restored by every process (a collective);
  process 0 scores and writes.
  """
  d = run.datasets
  single = len(run.plan.adaptations) < 2 or d.target_protocol() is not None
  if single or not d.synthetic_dir or run.config.variant == "original":
    return
  path = run.path("sagan", FIDELITY_FILE)
  parallel.barrier("joint fidelity check")  # every process sees the same file state
  if os.path.isfile(path) or not paired.available(d.synthetic_dir):
    return
  restored = translators()
  if run.is_main:
    local = [(model, parallel.local_copy(params), a) for model, params, a in restored]
    scores = final_scores(run, local, jax.random.key(run.seed("sagan/fidelity")))
    fileio.write_text_atomic(path, json.dumps(scores, indent=1))
  parallel.barrier("joint fidelity written")
