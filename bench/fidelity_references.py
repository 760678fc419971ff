"""What trivial translations score on the synthetic benchmark's paired sets: the figures a translation
must beat (`sagan_jax.experiments.paired.references`), plus x itself and the perfect pair of the true
warp followed by the true colours, for held-out and in-sample images (a table).

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


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  size = (args.height, args.width)
  stats = paired.target_statistics(args.benchmark, size)
  print("| paired set | translation | pixel_error | detail_error | coverage_error |\n|---|---|---|---|---|")
  for which in paired.SETS:
    pairs = paired.load(args.benchmark, size, which)
    x = pairs.source[..., :3]
    both = paired.warp_each((x + 1) * 127.5, pairs.h_central)
    rows = {
      "x itself": paired.image_scores(pairs, x[None]),
      **paired.references(pairs, stats),
      "true warp, then true colours (central view)": paired.image_scores(
        pairs, (synthetic.target_colours(both) / 127.5 - 1)[None].astype(np.float32)
      ),
    }
    for name, scores in rows.items():
      cells = [f"{scores[k]:.3f}" if k in scores else "–" for k in ("pixel_error", "detail_error", "coverage_error")]
      print(f"| {which} ({len(pairs.names)}) | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
