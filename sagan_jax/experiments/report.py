"""The translation report, for every adaptation on any dataset: ``results.json`` ``translation``.

Real datasets have no paired truth, so the translated source set is judged against the data
itself (`sagan_jax.translation_metrics`), in one fixed feature space: the pool5 features of a
*reference IDE*, trained on the untranslated source images with the experiment's IDE settings, a
fixed seed and camera augmentation (`sagan_jax.reid.augment`: a random colour response and
viewpoint per image), never by the networks being judged. The augmentation makes its features
hold a person's identity across camera-like changes, which a correct translation makes: without
it an exact translation of the synthetic benchmark kept only 6–25 % of identities. It is trained
once per source (its folder is keyed to the source's files and the IDE settings) and cached beside
the prepared datasets (``DATA_DIR/reference_ide/<key>/``, `sagan_jax.experiments.source_ide`), so
every variant and seed of an experiment is measured by the same network; it is never the re-ID
teacher that ``sagan.lambda_reid`` trains G1 with.

* ``domain_gap``: the Fréchet distance between the translated source and the target images the
  adaptation saw; ``domain_gap_raw``: the same for the untranslated source. A translation that
  works makes the first clearly smaller.
* ``identity_kept``: rank-1 retrieval of each translated image's identity among the untranslated
  source images (its own source image included: an identity translation scores 1.0).
* ``artifact_energy``: the translated images' share of spectral power on the period-2 lines (a
  stride-2 upsampling's checkerboard, in light or in colour: `translation_metrics.checkerboard_fraction`)
  over the target images' share (1.0: as clean as the target); ``artifact_energy_raw`` is the
  untranslated source's.

At most ``eval.report_images`` source images (spread evenly over each adaptation's, with every
code's translation of each) and as many target images are used. With several IDE models (one per
split of a two-camera target) the report covers the first one's adaptations.
"""

from __future__ import annotations

import numpy as np

from sagan_jax import parallel
from sagan_jax import translation_metrics as metrics
from sagan_jax.data import builders, pipeline
from sagan_jax.experiments import source_ide, translation
from sagan_jax.experiments.config import CAMERA_AUGMENT, REFERENCE_SEED, reference_config
from sagan_jax.experiments.datasets import Concat
from sagan_jax.experiments.run import Run
from sagan_jax.reid import ide


def _reference_dir(run: Run) -> str:
  return source_ide.folder(run, "reference_ide", reference_config(run.config), REFERENCE_SEED)


def reference_ide(run: Run):
  """``(model, state)`` of the source's reference IDE, trained here the first time it is asked for."""
  return source_ide.trained(run, "reference_ide", reference_config(run.config), REFERENCE_SEED, "reference ide")


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

  def __init__(self, run: Run):
    c = run.config
    self.run, self.cap = run, c.eval.report_images
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
    model, state = reference_ide(run)
    local_mesh = parallel.local_mesh()
    self._feature_fn = ide.make_feature_fn(model, local_mesh, normalize=False, flip_average=False)
    self._state = parallel.local_copy(state)
    self._batch = max(local_mesh.size, 64 - 64 % local_mesh.size)
    self.target_features = self.features(run.plan.target_source, self.target_rows)
    self.target_images = images(run.plan.target_source, self.target_rows, run.image_size)

  def source_positions(self, count: int) -> np.ndarray:
    """Which of an adaptation's ``count`` source images are sampled."""
    return _spread(count, max(1, self.cap // len(self.adaptations)))

  def features(self, source, rows) -> np.ndarray:
    """Reference pool5 features of ``source[rows]`` (anything with ``image`` examples), at the IDE's size."""
    batches = pipeline.eval_batches(
      source, batch_size=self._batch, image_size=tuple(self.run.config.ide.image_size), indices=rows, masks="unused"
    )
    return ide.extract(self._feature_fn, self._state, batches)[0]

  def score(self, source_rows, translated, translated_rows, translated_pids) -> dict:
    """The report's figures for translations ``translated[translated_rows]`` of ``source[source_rows]``."""
    unit = lambda f: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    f_source = self.features(self.source, source_rows)
    f_translated = self.features(translated, translated_rows)
    size = self.run.image_size
    return {
      "domain_gap": metrics.frechet_distance(f_translated, self.target_features),
      "domain_gap_raw": metrics.frechet_distance(f_source, self.target_features),
      "identity_kept": metrics.identity_kept(
        unit(f_translated), translated_pids, unit(f_source), self.source_pids[source_rows]
      ),
      "artifact_energy": metrics.artifact_energy(images(translated, translated_rows, size), self.target_images),
      "artifact_energy_raw": metrics.artifact_energy(images(self.source, source_rows, size), self.target_images),
      "images": {"source": len(source_rows), "translated": len(translated_rows), "target": len(self.target_rows)},
      "feature_space": (
        f"pool5 of a reference IDE trained on the untranslated source with {CAMERA_AUGMENT} augmentation "
        f"(seed {REFERENCE_SEED})"
      ),
    }


def translation_report(run: Run) -> dict:
  """The ``translation`` entry of ``results.json`` (module docstring)."""
  instrument = Instrument(run)
  source_rows, parts, translated_rows, translated_pids = [], [], [], []
  offset = 0
  for a in instrument.adaptations:
    translated = translation.TranslatedSource(run.path(a.subdir("translated")))
    codes = int(translated.meta["num_codes"])
    positions = instrument.source_positions(len(a.source_indices))
    source_rows.append(np.asarray(a.source_indices)[positions])
    rows = (positions[:, None] * codes + np.arange(codes)[None, :]).reshape(-1)
    parts.append(translated)
    translated_rows.append(rows + offset)
    translated_pids.append(translated.person_ids[rows])
    offset += len(translated)
  out = instrument.score(
    np.concatenate(source_rows), Concat(parts), np.concatenate(translated_rows), np.concatenate(translated_pids)
  )
  return {**out, "adaptations": [a.name or "default" for a in instrument.adaptations]}
