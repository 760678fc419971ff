"""What trivial translations score on the synthetic benchmark's paired sets: the figures a translation
must beat (`sagan_jax.experiments.paired.references`), plus x itself, the perfect pair of the true
warp followed by the true colours, and the controls `detail_error`'s person-weighted windows were
adopted on (docs/fidelity.md), for held-out and in-sample images (a table; beside `detail_error`, the
definition before 2026-12-05 with unweighted windows, where the images are at hand).

    python -m bench.fidelity_references [--benchmark synthetic_benchmark] [--height 64 --width 32]
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from sagan_jax.data import synthetic
from sagan_jax.experiments import paired

flags.DEFINE_string("benchmark", "synthetic_benchmark", "a generated benchmark with paired/")
flags.DEFINE_integer("height", 64, "image height")
flags.DEFINE_integer("width", 32, "image width")


def _controls(pairs: paired.PairedSet, stats: dict, exact: np.ndarray) -> dict[str, np.ndarray]:
  """What `detail_error` must and must not see: the central view's truth with its person on other
  scenes (0 when only the person counts), and the exact translation blurred, everywhere or inside
  the person only (the loss of detail it exists to read)."""
  central = pairs.truth.shape[1] // 2
  truth, mask = pairs.truth[:, central, ..., :3], pairs.truth[:, central, ..., 3:]
  flat = np.broadcast_to(truth.mean(axis=(1, 2), keepdims=True), truth.shape)
  scenes = {
    "another image's truth": np.roll(truth, 1, axis=0),
    "grey": np.zeros_like(truth),
    "the target's mean image": np.broadcast_to(stats["target_image"], truth.shape),
    "another image's flat colour": np.roll(flat, 1, axis=0),
  }
  rows = {
    f"the truth's person on {name} (central view)": mask * truth + (1 - mask) * scene for name, scene in scenes.items()
  }
  rows["exact, 3×3 blur"] = paired.box_blur(exact, 3)
  rows["exact, 5×5 blur"] = paired.box_blur(exact, 5)
  rows["the truth, its person 3×3 blurred (central view)"] = mask * paired.box_blur(truth, 3) + (1 - mask) * truth
  return rows


def _scores(pairs: paired.PairedSet, images: np.ndarray) -> dict[str, float]:
  """`paired.image_scores` of one "code", with the unweighted windows' detail_error beside it."""
  images = np.asarray(images, np.float32)[None]
  unweighted = paired.image_scores(pairs, images, person_windows=False)["detail_error"]
  return {**paired.image_scores(pairs, images), "detail_error_unweighted": unweighted}


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  size = (args.height, args.width)
  stats = paired.target_statistics(args.benchmark, size)
  columns = ("pixel_error", "detail_error", "detail_error_unweighted", "coverage_error")
  print("| paired set | translation | " + " | ".join(columns) + " |\n|---|---|---|---|---|---|")
  for which in paired.SETS:
    pairs = paired.load(args.benchmark, size, which)
    x = pairs.source[..., :3]
    both = paired.warp_each((x + 1) * 127.5, pairs.h_central)
    exact = (synthetic.target_colours(both) / 127.5 - 1).astype(np.float32)
    rows = {
      "x itself": _scores(pairs, x),
      **paired.references(pairs, stats),
      "true warp, then true colours (central view)": _scores(pairs, exact),
      **{name: _scores(pairs, images) for name, images in _controls(pairs, stats, exact).items()},
    }
    for name, scores in rows.items():
      cells = [f"{scores[k]:.3f}" if k in scores else "–" for k in columns]
      print(f"| {which} ({len(pairs.names)}) | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
