"""What trivial translations score in the translation report (`sagan_jax.experiments.report`): the
figures a real translation's domain gap, identity kept and artifact energy are read against (a table).

    python -m bench.report_references --config=configs/cuhk01_viper.py --config.data.source.manual_dir=...
        --config.data.target.manual_dir=...

Trains the source's reference IDEs first if they are not cached yet (as the evaluate stage would), and
scores with their mean, as the report does (``eval.reference_repeats``). Two
rows change who the person is and should score low: every image replaced by another person's, and
(where the source has masks) the person's colours rotated (R, G, B → G, B, R inside the mask, the
background kept), the kind of change a translation must not make; what the reference says of the
second is how far its ``identity_kept`` can be trusted. On the synthetic benchmark the paired
ground truth of the source training images adds one row per true view: what an exact translation
scores, the ceiling a trained one is read against.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from absl import app

from sagan_jax import cli
from sagan_jax.data import builders, layouts
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import paired, report
from sagan_jax.experiments.run import Run

_CONFIG = cli.define_config_file("config", None, "experiment config file (configs/*.py)")


def other_person(pids: np.ndarray) -> np.ndarray:
  """For each row, a row of another identity: the first row of the next identity in sorted order."""
  order = np.argsort(pids, kind="stable")
  sorted_pids = pids[order]
  starts = np.flatnonzero(np.r_[True, sorted_pids[1:] != sorted_pids[:-1]])
  if len(starts) < 2:
    raise ValueError("another person's image needs at least two identities")
  first_of_next = np.roll(starts, -1)  # each identity's first row → the next identity's first row
  group = np.searchsorted(starts, np.arange(len(pids)), side="right") - 1
  out = np.empty(len(pids), np.int64)
  out[order] = order[first_of_next[group]]
  return out


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  cli.quiet_logging()
  with tempfile.TemporaryDirectory() as workdir:
    run = Run(config, workdir, config_lib.check(config), record_plan=False)
    # The report's own instrument: the mean over its eval.reference_repeats references.
    instruments = [report.Instrument(run, seed) for seed in config_lib.reference_seeds(config)]
  instrument = instruments[0]
  rows = instrument.source_positions(len(instrument.source))
  size = run.image_size
  images = report.images(instrument.source, rows, size)  # [-1, 1]
  pids = instrument.source_pids[rows]
  mean, sd = images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2))
  target = instrument.target_images
  y, x = np.mgrid[: size[0], : size[1]]
  board = ((y + x) % 2 * 2.0 - 1.0)[None, ..., None]
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  cases = {
    "the untranslated source": images,
    "a per-channel colour match to the target": (images - mean) / sd * target.std(axis=(0, 1, 2))
    + target.mean(axis=(0, 1, 2)),
    "brightness −0.1": images - 0.1,
    "a 3×3 box blur": sum(padded[:, i : i + size[0], j : j + size[1]] for i in range(3) for j in range(3)) / 9,
    "Gaussian noise, sd 0.05": images + 0.05 * np.random.default_rng(0).normal(size=images.shape),
    "a checkerboard, amplitude 0.05": images + 0.05 * board,
  }
  cases["white balance (gains 0.85, 1, 1.15)"] = np.clip((images + 1) * np.array([0.85, 1.0, 1.15]), 0, 2) - 1
  cases["gamma 1.4"] = ((images + 1) / 2) ** 1.4 * 2 - 1
  cases["another person's image (identity changed)"] = images[other_person(pids)]
  masks = report.person_masks(instrument.source, rows, size)
  if masks is not None:
    cases["the person's colours rotated, background kept (identity changed)"] = report.recolour_person(images, masks)
    cases["the person's red and blue swapped, background kept"] = report.recolour_person(images, masks, (2, 1, 0))
    cases["the person darkened ×0.5, background kept"] = masks * ((images + 1) * 0.5 - 1) + (1 - masks) * images
  own = np.arange(len(rows))
  cases = {name: (translated, pids, own) for name, translated in cases.items()}
  if run.datasets.synthetic_dir:
    truth = paired.load(run.datasets.synthetic_dir, size, "train")
    truth_pids = np.array([int(layouts.MARKET_NAME.match(os.path.basename(p)).group(1)) for p in truth.names])
    filenames = builders.read_labels(run.datasets.builder("source"), "train")["filename"][rows]
    position = {os.path.basename(f): i for i, f in enumerate(filenames)}
    truth_own = np.array([position.get(os.path.basename(n), -1) for n in truth.names])
    for k in range(truth.truth.shape[1]):
      cases[f"the true translation, target view {k} ({len(truth_pids)} paired images)"] = (
        truth.truth[:, k, ..., :3],
        truth_pids,
        truth_own,
      )
  seeds = ", ".join(str(i.seed) for i in instruments)
  print(
    f"Translation report of trivial translations: {len(rows)} source, {len(instrument.target_rows)} target images; "
    f"the mean over {len(instruments)} reference IDE(s), seeds {seeds}"
  )
  print("\n| translation | domain_gap | identity_kept | identity_rank1 | artifact_energy |\n|---|---|---|---|---|")
  fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
  for name, (translated, labels, own_rows) in cases.items():
    array = report.ArraySource(report.as_uint8(translated), labels)
    each = [i.score(rows, array, np.arange(len(labels)), labels, own_rows) for i in instruments]
    scores = report.mean_over_references(each)
    print(
      f"| {name} | {scores['domain_gap']:.1f} | {fmt(scores['identity_kept'])} | {fmt(scores['identity_rank1'])} "
      f"| {scores['artifact_energy']:.2f} |"
    )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
