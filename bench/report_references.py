"""What trivial translations score in the translation report (`sagan_jax.experiments.report`): the
figures a real translation's domain gap, identity kept and artifact energy are read against (a table).

    python -m bench.report_references --config=configs/cuhk01_viper.py --config.data.source.manual_dir=...
        --config.data.target.manual_dir=...

Trains the source's reference IDE first if it is not cached yet (as the evaluate stage would). On the
synthetic benchmark the paired ground truth of the source training images adds one row per true view:
what an exact translation scores, the ceiling a trained one is read against.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np
from absl import app

from sagan_jax import cli
from sagan_jax.data import layouts
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import paired, report
from sagan_jax.experiments.run import Run

_CONFIG = cli.define_config_file("config", None, "experiment config file (configs/*.py)")


class ArraySource(Sequence):
  """Images in memory (uint8 [N, H, W, 3]) as a random-access source the pipeline reads."""

  def __init__(self, images: np.ndarray, person_ids: np.ndarray):
    self.images, self.person_ids = images, person_ids

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i):
    return {"image": self.images[int(i)], "person_id": self.person_ids[int(i)], "camera_id": 0}


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  cli.quiet_logging()
  with tempfile.TemporaryDirectory() as workdir:
    run = Run(config, workdir, config_lib.check(config), record_plan=False)
    instrument = report.Instrument(run)
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
  cases = {name: (translated, pids) for name, translated in cases.items()}
  if run.datasets.synthetic_dir:
    truth = paired.load(run.datasets.synthetic_dir, size, "train")
    truth_pids = np.array([int(layouts.MARKET_NAME.match(os.path.basename(p)).group(1)) for p in truth.names])
    for k in range(truth.truth.shape[1]):
      cases[f"the true translation, target view {k} ({len(truth_pids)} paired images)"] = (
        truth.truth[:, k, ..., :3],
        truth_pids,
      )
  print(f"Translation report of trivial translations: {len(rows)} source, {len(instrument.target_rows)} target images")
  print("\n| translation | domain_gap | identity_kept | artifact_energy |\n|---|---|---|---|")
  for name, (translated, labels) in cases.items():
    as_uint8 = np.round((np.clip(translated, -1, 1) + 1) * 127.5).astype(np.uint8)
    scores = instrument.score(rows, ArraySource(as_uint8, labels), np.arange(len(labels)), labels)
    print(f"| {name} | {scores['domain_gap']:.1f} | {scores['identity_kept']:.3f} | {scores['artifact_energy']:.2f} |")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
