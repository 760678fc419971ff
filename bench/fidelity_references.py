"""Reference points of `pixel_error` on the synthetic benchmark's paired set: what the true colours
alone, the true warp alone, and both would score (a table).

    python -m bench.fidelity_references [--benchmark synthetic_benchmark] [--height 64 --width 32]
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from sagan_jax import fidelity
from sagan_jax.data import synthetic
from sagan_jax.experiments import paired

flags.DEFINE_string("benchmark", "synthetic_benchmark", "a generated benchmark with paired/")
flags.DEFINE_integer("height", 64, "image height")
flags.DEFINE_integer("width", 32, "image width")


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  pairs = paired.load(args.benchmark, (args.height, args.width))
  x, truth, mask = pairs.source[..., :3], pairs.truth[..., :3], pairs.truth[..., 3:]
  to_255, to_unit = (lambda a: (a + 1) * 127.5), (lambda a: a / 127.5 - 1)
  warped = np.stack([synthetic.warp_border(to_255(image), h) for image, h in zip(x, pairs.h_true)])
  rows = {
    "x itself": x,
    "true colours, no warp": to_unit(synthetic.target_colours(to_255(x))),
    "true warp, no colours": to_unit(warped),
    "true warp, then true colours": to_unit(synthetic.target_colours(warped)),
  }
  print("| translation | pixel_error |\n|---|---|")
  for name, image in rows.items():
    print(f"| {name} | {float(fidelity.pixel_error(image, truth, x, mask)):.3f} |")


if __name__ == "__main__":
  app.run(main)
