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
from sagan_jax.experiments.datasets import Concat
from sagan_jax.sagan import train as sagan_train
from sagan_jax.sagan.model import XY

_CONFIG = cli.define_config_file("config", None, "the finished run's config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "the finished run's workdir", required=True)
_IMAGES = flags.DEFINE_integer("images", 632, "at most this many images per set (seen, unseen, fake)")
_BATCH = 64


def _stack(source, rows, size, masks) -> tuple[np.ndarray, np.ndarray]:
  """``(images [N, H, W, 4], camera_ids [N])`` of examples ``rows`` of ``source``."""
  examples = [pipeline.preprocess(source[int(i)], size, masks, flip=False) for i in rows]
  return np.stack([e["image"] for e in examples]), np.array([int(e["camera_id"]) for e in examples], np.int32)


def real_scores(model, params, images: np.ndarray, cameras: np.ndarray | None = None) -> np.ndarray:
  """``[N]``: D1's scores of target ``images``; ``cameras`` (camera_critics): each image's camera index
  among the adaptation's, so a camera-conditioned D1 judges each image as its own camera."""
  judge = jax.jit(lambda b, c: model.judge(params, "D1", b[..., :3], b[..., 3:], c))
  batches = range(0, len(images), _BATCH)
  return np.concatenate(
    [np.asarray(judge(images[i : i + _BATCH], None if cameras is None else cameras[i : i + _BATCH])) for i in batches]
  )


def fake_scores(model, params, sources: np.ndarray, key: jax.Array) -> np.ndarray:
  """``[N]``: D1's scores of G1(S1(x)) for source images ``sources``. One critic: codes drawn per
  batch. Camera critics: source i takes code i mod K (`SAGAN.fixed_codes`, every camera in turn) and
  is judged as the camera that code names, as training pairs them."""

  @jax.jit
  def fake(b, z, cameras):
    out = model.adapt(params, XY, b[..., :3], model.masks_for_input(b[..., 3:]), z)
    return model.judge(params, "D1", out.adapted, out.mask, cameras)

  conditioned = model.num_cameras > 1
  codes = model.fixed_codes(key, len(sources)) if conditioned else None
  scores = []
  for i in range(0, len(sources), _BATCH):
    b = sources[i : i + _BATCH]
    if conditioned:
      z, cameras = codes[i : i + len(b)], np.arange(i, i + len(b)) % model.num_cameras
    else:
      z, cameras = model.spatial_codes(jax.random.fold_in(key, i), len(b)), None
    scores.append(np.asarray(fake(b, z, cameras)))
  return np.concatenate(scores)


def overfit_ratio(seen: np.ndarray, unseen: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
  """``(r, z)``: r = (E seen − E unseen) / (E seen − E fake), and seen − unseen in standard errors."""
  gap = seen.mean() - unseen.mean()
  standard_error = np.sqrt(seen.var() / len(seen) + unseen.var() / len(unseen))
  return float(gap / (seen.mean() - fake.mean())), float(gap / standard_error)


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
