"""Whether D1 has memorised the target images it adapted on: its score on them against its score on
the same target's images it never saw, in units of its margin over the translations (a table).

    python -m bench.critic_overfit --config=configs/cuhk01_viper.py --workdir=runs/c2v [--config...]

The flags are the finished run's own (as for `evaluate.py`). ADA's overfitting heuristic (Karras et
al. 2020) in a WGAN critic's terms:

    r = (E D1(seen) − E D1(unseen)) / (E D1(seen) − E D1(fake))

r ≈ 0: D1 takes target images it never saw for as real as those it trained on; r ≈ 1: for as fake
as G1(S1(x)). The unseen images are a two-camera target's test ids, or another target's query and
gallery images when the adaptation took all its training images.
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
from sagan_jax.sagan.model import XY

_CONFIG = cli.define_config_file("config", None, "the finished run's config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "the finished run's workdir", required=True)
_IMAGES = flags.DEFINE_integer("images", 632, "at most this many images per set (seen, unseen, fake)")
_BATCH = 64


def _stack(source, rows, size, masks) -> np.ndarray:
  return np.stack([pipeline.preprocess(source[int(i)], size, masks, flip=False)["image"] for i in rows])


def _scores(fn, images: np.ndarray) -> np.ndarray:
  return np.concatenate([np.asarray(fn(images[i : i + _BATCH])) for i in range(0, len(images), _BATCH)])


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
      x = _stack(source, pick(np.asarray(a.source_indices)), size, masks)
      key = jax.random.key(0)
      judge = jax.jit(lambda b: model.judge(params, "D1", b[..., :3], b[..., 3:]))

      @jax.jit
      def fake(b, key):
        mx = model.masks_for_input(b[..., 3:])
        out = model.adapt(params, XY, b[..., :3], mx, model.spatial_codes(key, b.shape[0]))
        return model.judge(params, "D1", out.adapted, out.mask)

      fakes = np.concatenate(
        [np.asarray(fake(x[i : i + _BATCH], jax.random.fold_in(key, i))) for i in range(0, len(x), _BATCH)]
      )
      d_seen = _scores(judge, _stack(target, pick(seen), size, masks))
      d_unseen = _scores(judge, _stack(unseen_source, pick(unseen), size, masks))
      r = (d_seen.mean() - d_unseen.mean()) / (d_seen.mean() - fakes.mean())
      z = (d_seen.mean() - d_unseen.mean()) / np.sqrt(d_seen.var() / len(d_seen) + d_unseen.var() / len(d_unseen))
      print(
        f"| {a.name or 'sagan'} | {len(d_seen)} | {len(d_unseen)} | {len(fakes)} "
        f"| {d_seen.mean():.2f} ± {d_seen.std():.2f} | {d_unseen.mean():.2f} ± {d_unseen.std():.2f} "
        f"| {fakes.mean():.2f} ± {fakes.std():.2f} | {r:.2f} | {z:.1f} |"
      )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
