"""Whether D1 has memorised the target images it adapted on: its score on them against its score on
the same target's images it never saw, in units of its margin over the translations (a table).

    python -m bench.critic_overfit --config=configs/cuhk01_viper.py --workdir=runs/c2v [--config...]

The flags are the finished run's own (as for `evaluate.py`). ADA's overfitting heuristic (Karras et
al. 2020) in a WGAN critic's terms:

    r = (E D1(seen) − E D1(unseen)) / (E D1(seen) − E D1(fake))

r ≈ 0: D1 takes target images it never saw for as real as those it trained on; r ≈ 1: for as fake
as G1(S1(x)). The unseen images are a two-camera target's test ids, or another target's query and
gallery images when the adaptation took all its training images. A camera-conditioned D1
(`sagan.camera_critics`) judges each target image as its own camera and each translation as the
camera its code names, as in training.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import app, flags

from sagan_jax import cli
from sagan_jax.data import pipeline
from sagan_jax.errors import ConfigError
from sagan_jax.experiments import stages
from sagan_jax.experiments.critic_overfit import fake_scores, overfit_ratio, real_scores
from sagan_jax.experiments.datasets import Concat
from sagan_jax.sagan import train as sagan_train

_CONFIG = cli.define_config_file("config", None, "the finished run's config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "the finished run's workdir", required=True)
_IMAGES = flags.DEFINE_integer("images", 632, "at most this many images per set (seen, unseen, fake)")


def _stack(source, rows, size, masks) -> tuple[np.ndarray, np.ndarray]:
  """``(images [N, H, W, 4], camera_ids [N])`` of examples ``rows`` of ``source``."""
  examples = [pipeline.preprocess(source[int(i)], size, masks, flip=False) for i in rows]
  return np.stack([e["image"] for e in examples]), np.array([int(e["camera_id"]) for e in examples], np.int32)


def _camera_indices(camera_ids: np.ndarray, cameras) -> np.ndarray:
  try:
    return sagan_train.camera_indices(camera_ids, cameras)
  except ValueError as e:  # an unseen image from a camera the camera-conditioned D1 never learnt
    raise ConfigError(f"{e}: D1 has no score for it; compare on images of the adapted cameras") from None


def main(argv) -> None:
  del argv
  layers = cli.cpu_setup()
  cli.quiet_logging()
  cli.exit_on_user_error(measure, _CONFIG.value, _WORKDIR.value, layers)


def measure(config, workdir: str, layers) -> None:
  rng = np.random.default_rng(0)
  pick = lambda rows: np.sort(rng.choice(rows, min(len(rows), _IMAGES.value), replace=False))
  print(
    "\n| adaptation | seen | unseen | fake | D1 seen | D1 unseen | D1 fake | r | seen − unseen in standard errors |"
    "\n|---|---|---|---|---|---|---|---|---|"
  )
  with stages.opened(config, workdir, layers=layers) as run:
    size, masks = run.image_size, run.datasets.mask_mode
    source, target = run.datasets.source_train(), run.plan.target_source
    for a in run.plan.adaptations:
      seen = np.arange(len(target)) if a.target_indices is None else np.asarray(a.target_indices)
      unseen, unseen_source = np.setdiff1d(np.arange(len(target)), seen), target
      if not len(unseen) and run.datasets.target_protocol() is None:  # its query and gallery are unseen
        builder = run.datasets.builder("target")
        unseen_source = Concat([builder.as_data_source(split) for split in ("query", "gallery")])
        unseen = np.arange(len(unseen_source))
      if not len(unseen):
        raise ConfigError(f"{a.name or 'sagan'} adapts on every target image: there are no unseen ones to compare")
      model, params = stages.load_sagan(run, a)
      cameras = stages.target_cameras(run, a) if model.num_cameras > 1 else None
      index = lambda ids: None if cameras is None else _camera_indices(ids, cameras)
      x, _ = _stack(source, pick(np.asarray(a.source_indices)), size, masks)
      fakes = fake_scores(model, params, x, jax.random.key(0))
      seen_images, seen_cameras = _stack(target, pick(seen), size, masks)
      unseen_images, unseen_cameras = _stack(unseen_source, pick(unseen), size, masks)
      d_seen = real_scores(model, params, seen_images, index(seen_cameras))
      d_unseen = real_scores(model, params, unseen_images, index(unseen_cameras))
      r, z = overfit_ratio(d_seen, d_unseen, fakes)
      print(
        f"| {a.name or 'sagan'} | {len(d_seen)} | {len(d_unseen)} | {len(fakes)} "
        f"| {d_seen.mean():.2f} ± {d_seen.std():.2f} | {d_unseen.mean():.2f} ± {d_unseen.std():.2f} "
        f"| {fakes.mean():.2f} ± {fakes.std():.2f} | {r:.2f} | {z:.1f} |"
      )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
