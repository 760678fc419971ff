"""The translation report, for every adaptation on any dataset: ``results.json`` ``translation``.

Real datasets have no paired truth, so the translated source set is judged against the data
itself (`sagan_jax.translation_metrics`), in one fixed feature space: the pool5 features of a
*reference IDE*, trained on the untranslated source images with the experiment's IDE settings, a
fixed seed, ``eval.reference_epochs_factor`` times its epochs and camera augmentation
(`sagan_jax.reid.augment`, ``"camera_gains"``: per-channel gains, a tone curve and a viewpoint per
image), never by the networks being judged. The augmentation makes its features hold a person's
identity across camera-like changes, which a correct translation makes (without it an exact
translation of the synthetic benchmark kept only 6–25 % of identities); gains, since a full channel
mix taught it to ignore hue (a gains reference may still barely see it: ``identity_kept_recoloured``
below says, per run). It is trained
once per source (its folder is keyed to the source's files and the IDE settings) and cached beside
the prepared datasets (``DATA_DIR/reference_ide/<key>/``, `sagan_jax.experiments.source_ide`), so
every variant and seed of an experiment is measured by the same network; it is never the re-ID
teacher that ``sagan.lambda_reid`` trains G1 with.

* ``domain_gap``: the Fréchet distance between the translated source and the target images the
  adaptation saw; ``domain_gap_raw``: the same for the untranslated source. A translation that
  works makes the first clearly smaller.
* ``identity_rank1``: rank-1 retrieval of each translated image's identity among the untranslated
  source images, its own untranslated image left out (`translation_metrics.identity_rank1`);
  ``identity_rank1_raw``: the same for the untranslated images; ``identity_kept``: the first over
  the second (1.0: every identity the reference tells apart is kept, as an identity translation
  keeps them; 0: none; null when no sampled person has two images). Leaving the own image out makes
  it a question about the person: with it in, a translation that kept the background and pose
  found its own image first, whatever it did to the person (BENCHMARKS.md §7).
* ``identity_kept_recoloured``: the same figure for the untranslated source with each person's
  colours rotated (R, G, B → G, B, R inside the mask, the background kept), when the source has
  masks: what this reference says of a change that makes another person. A from-scratch reference
  may barely see it (one training did, another of the same recipe did not: BENCHMARKS.md §7), and
  where it scores near 1, ``identity_kept`` cannot tell a kept identity from repainted clothes.
* ``artifact_energy``: the translated images' share of spectral power on the period-2 lines (a
  stride-2 upsampling's checkerboard, in light or in colour: `translation_metrics.checkerboard_fraction`)
  over the target images' share (1.0: as clean as the target); ``artifact_energy_raw`` is the
  untranslated source's.
* ``framing_gap``: where the person sits in the frame and how much of it they fill
  (`translation_metrics.framing`: the person mask's area, centroid and spread), the Fréchet distance
  between the translated images' masks (S1's warp of the source mask, the translated PNG's alpha) and
  the target images' own; ``framing_gap_raw``: the same for the untranslated source's masks. A spatial
  translation towards the target makes the first smaller; null where the source or target has no masks.

One reference is one training's draw, and another seed of the same recipe moves ``identity_kept`` and
the gap's ratio to its raw figure by several hundredths (docs/fidelity.md): ``eval.reference_repeats``
= N scores the translations with N references (seeds 0 … N − 1, each cached), reports the mean of each
figure a reference enters and keeps each reference's under ``per_reference``.

At most ``eval.report_images`` source images (spread evenly over each adaptation's, with every
code's translation of each) and as many target images are used. With several IDE models (one per
split of a two-camera target) the report covers the first one's adaptations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sagan_jax import parallel
from sagan_jax import translation_metrics as metrics
from sagan_jax.data import builders, pipeline
from sagan_jax.experiments import source_ide, translation
from sagan_jax.experiments.config import REFERENCE_SEED, reference_config, reference_seeds
from sagan_jax.experiments.datasets import Concat
from sagan_jax.experiments.run import Run
from sagan_jax.reid import ide


def _reference_dir(run: Run, seed: int = REFERENCE_SEED) -> str:
  return source_ide.folder(run, "reference_ide", reference_config(run.config), seed)


def reference_ide(run: Run, seed: int = REFERENCE_SEED):
  """``(model, state)`` of the source's reference IDE of ``seed``, trained here the first time it is asked for."""
  name = "reference ide" if seed == REFERENCE_SEED else f"reference ide {seed}"
  return source_ide.trained(run, "reference_ide", reference_config(run.config), seed, name)


class ArraySource(Sequence):
  """Images in memory (uint8 [N, H, W, 3]) as a random-access source the pipeline reads."""

  def __init__(self, images: np.ndarray, person_ids: np.ndarray):
    self.images, self.person_ids = images, person_ids

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i):
    return {"image": self.images[int(i)], "person_id": self.person_ids[int(i)], "camera_id": 0}


def as_uint8(images: np.ndarray) -> np.ndarray:
  """RGB in [-1, 1] → uint8, clipped."""
  return np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)


def person_masks(source, rows, size) -> np.ndarray | None:
  """``[N, H, W, 1]`` person masks of ``source[rows]``, or None when the source has none."""
  try:
    batches = pipeline.eval_batches(source, batch_size=64, image_size=size, indices=rows, masks="data")
    return np.concatenate([batch["image"][:valid, ..., 3:] for batch, valid in batches])
  except KeyError:
    return None


def recolour_person(images: np.ndarray, masks: np.ndarray, channels=(1, 2, 0)) -> np.ndarray:
  """Each person's colour channels reordered (by default rotated, R, G, B → G, B, R) inside the mask,
  the background kept."""
  return masks * images[..., list(channels)] + (1 - masks) * images


def _spread(count: int, cap: int) -> np.ndarray:
  return np.unique(np.linspace(0, count - 1, min(count, cap)).round().astype(np.int64))


def images(source, indices, size) -> np.ndarray:
  """``[N, H, W, 3]`` RGB in [-1, 1] of ``source[indices]`` at ``size``, unflipped."""
  out = []
  for batch, valid in pipeline.eval_batches(source, batch_size=64, image_size=size, indices=indices, masks="unused"):
    out.append(batch["image"][:valid, ..., :3])
  return np.concatenate(out)


class Instrument:
  """The report's fixed pieces for one run: the reference IDE's features, the source and target
  images it compares (sampled as the module docstring says), and their features."""

  def __init__(self, run: Run, seed: int = REFERENCE_SEED):
    c = run.config
    self.run, self.cap, self.seed = run, c.eval.report_images, seed
    self._source_controls = {}  # per sample of the source: (recoloured rank-1, framing gap)
    ide_name = next(iter(run.plan.ide_models))
    by_name = {a.name: a for a in run.plan.adaptations}
    self.adaptations = [by_name[n] for n in run.plan.ide_models[ide_name]] or [None]
    self.source = run.datasets.source_train()
    self.source_pids = builders.read_labels(run.datasets.builder("source"), "train")["person_id"]
    first = self.adaptations[0]
    target_indices = first.target_indices if first is not None else None
    target_count = len(run.plan.target_source) if target_indices is None else len(target_indices)
    self.target_rows = _spread(target_count, self.cap)
    if target_indices is not None:
      self.target_rows = np.asarray(target_indices)[self.target_rows]
    model, state = reference_ide(run, seed)
    local_mesh = parallel.local_mesh()
    self._feature_fn = ide.make_feature_fn(model, local_mesh, normalize=False, flip_average=False)
    self._state = parallel.local_copy(state)
    self._batch = max(local_mesh.size, 64 - 64 % local_mesh.size)
    self.target_features = self.features(run.plan.target_source, self.target_rows)
    self.target_images = images(run.plan.target_source, self.target_rows, run.image_size)
    self.target_masks = person_masks(run.plan.target_source, self.target_rows, run.image_size)

  def source_positions(self, count: int) -> np.ndarray:
    """Which of an adaptation's ``count`` source images are sampled."""
    return _spread(count, max(1, self.cap // len(self.adaptations)))

  def features(self, source, rows) -> np.ndarray:
    """Reference pool5 features of ``source[rows]`` (anything with ``image`` examples), at the IDE's size."""
    batches = pipeline.eval_batches(
      source, batch_size=self._batch, image_size=tuple(self.run.config.ide.image_size), indices=rows, masks="unused"
    )
    return ide.extract(self._feature_fn, self._state, batches)[0]

  def score(self, source_rows, translated, translated_rows, translated_pids, own) -> dict:
    """The report's figures for translations ``translated[translated_rows]`` of ``source[source_rows]``;
    ``own[i]``: the position in ``source_rows`` of translation ``i``'s own source image (−1: none)."""
    unit = lambda f: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    f_source = self.features(self.source, source_rows)
    f_translated = self.features(translated, translated_rows)
    size = self.run.image_size
    source_pids = self.source_pids[source_rows]
    source_images = images(self.source, source_rows, size)
    u_source, itself = unit(f_source), np.arange(len(source_rows))
    rank1 = metrics.identity_rank1(unit(f_translated), translated_pids, u_source, source_pids, own)
    rank1_raw = metrics.identity_rank1(u_source, source_pids, u_source, source_pids, itself)
    kept = lambda r: None if r is None or not rank1_raw else r / rank1_raw
    key = np.asarray(source_rows).tobytes()
    if key not in self._source_controls:  # one figure per sample of the source: the bench scores many cases on one
      masks, self._source_controls[key] = person_masks(self.source, source_rows, size), (None, None)
      if masks is not None:
        array = ArraySource(as_uint8(recolour_person(source_images, masks)), source_pids)
        f_recoloured = unit(self.features(array, itself))
        rank1_recoloured = metrics.identity_rank1(f_recoloured, source_pids, u_source, source_pids, itself)
        self._source_controls[key] = (rank1_recoloured, self._framing_gap(masks))
    recoloured, framing_raw = self._source_controls[key]
    return {
      "domain_gap": metrics.frechet_distance(f_translated, self.target_features),
      "domain_gap_raw": metrics.frechet_distance(f_source, self.target_features),
      "identity_kept": kept(rank1),
      "identity_rank1": rank1,
      "identity_rank1_raw": rank1_raw,
      "identity_kept_recoloured": kept(recoloured),
      "artifact_energy": metrics.artifact_energy(images(translated, translated_rows, size), self.target_images),
      "artifact_energy_raw": metrics.artifact_energy(source_images, self.target_images),
      "framing_gap": self._framing_gap(person_masks(translated, translated_rows, size)),
      "framing_gap_raw": framing_raw,
      "images": {"source": len(source_rows), "translated": len(translated_rows), "target": len(self.target_rows)},
      "feature_space": feature_space(self.run.config, [self.seed]),
      "reference_seeds": [self.seed],
    }

  def _framing_gap(self, masks: np.ndarray | None) -> float | None:
    if masks is None or self.target_masks is None:
      return None
    return metrics.framing_gap(masks, self.target_masks)


def feature_space(c, seeds: Sequence[int]) -> str:
  """The report's words for its feature space: which reference IDEs, trained how."""
  which = f"seed {seeds[0]}" if len(seeds) == 1 else f"the mean over {len(seeds)}, seeds {', '.join(map(str, seeds))}"
  return (
    f"pool5 of a reference IDE trained on the untranslated source with {c.eval.reference_augment} augmentation "
    f"({which}, {c.eval.reference_epochs_factor}× the IDE's epochs)"
  )


# The figures each reference IDE gives its own value of; the artefact figures read pixels only.
PER_REFERENCE = ("domain_gap", "domain_gap_raw", "identity_kept", "identity_rank1", "identity_rank1_raw")
PER_REFERENCE += ("identity_kept_recoloured",)


def translation_report(run: Run) -> dict:
  """The ``translation`` entry of ``results.json`` (module docstring): one reference IDE's figures, or
  with ``eval.reference_repeats`` > 1 their mean over the references, each one's under ``per_reference``."""
  seeds = reference_seeds(run.config)
  draws = [_scored(run, Instrument(run, seed)) for seed in seeds]
  if len(draws) == 1:
    return draws[0]
  return {**mean_over_references(draws), "feature_space": feature_space(run.config, seeds)}


def mean_over_references(draws: Sequence[dict]) -> dict:
  """One report from several references' reports of the same translations: each `PER_REFERENCE` figure
  their mean (None where any reference has none), the rest the first's, and every reference's figures."""
  out = dict(draws[0])
  for key in PER_REFERENCE:
    values = [d[key] for d in draws]
    out[key] = None if any(v is None for v in values) else float(np.mean(values))
  out["per_reference"] = [{"seed": d["reference_seeds"][0], **{k: d[k] for k in PER_REFERENCE}} for d in draws]
  out["reference_seeds"] = [d["reference_seeds"][0] for d in draws]
  return out


def _scored(run: Run, instrument: Instrument) -> dict:
  """The report under one reference IDE."""
  source_rows, parts, translated_rows, translated_pids, own = [], [], [], [], []
  offset = sampled = 0
  for a in instrument.adaptations:
    translated = translation.TranslatedSource(run.path(a.subdir("translated")))
    codes = int(translated.meta["num_codes"])
    positions = instrument.source_positions(len(a.source_indices))
    source_rows.append(np.asarray(a.source_indices)[positions])
    rows = (positions[:, None] * codes + np.arange(codes)[None, :]).reshape(-1)
    parts.append(translated)
    translated_rows.append(rows + offset)
    translated_pids.append(translated.person_ids[rows])
    own.append(sampled + np.repeat(np.arange(len(positions)), codes))
    offset += len(translated)
    sampled += len(positions)
  out = instrument.score(
    np.concatenate(source_rows),
    Concat(parts),
    np.concatenate(translated_rows),
    np.concatenate(translated_pids),
    np.concatenate(own),
  )
  return {**out, "adaptations": [a.name or "default" for a in instrument.adaptations]}
