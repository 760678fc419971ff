"""Input-pipeline throughput: images/s decoded, resized, flipped, masked and batched.

Generates a synthetic benchmark of stored size ``--height``×``--width`` (JPEG images + PNG masks, the
Market-1501 layout) in a temporary directory, prepares it with the TFDS builder (as ``train.py``
does), then times, for each output size and thread count:

  * ``random access``: ``source[i]`` alone (TFDS array-record read + JPEG/PNG decode), one thread;
  * ``TrainBatches``: the training iterator (shuffle, decode, resize, random flip, mask channel,
    batching), ``num_threads`` grain threads prefetching ahead.

Compare the last column with the consumers: the IDE step and SA-GAN iteration images/s of
``bench_ide_step.py`` / ``bench_sagan_step.py`` on the same machine.

Usage: python -m bench.bench_pipeline [--height 256 --width 128 --ids 40 --batch 32 --batches 20]
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import app, flags

from bench import _common
from sagan_jax.data import builders, pipeline, synthetic

flags.DEFINE_integer("height", 256, "stored image height (Market-1501's crops: 128×64)")
flags.DEFINE_integer("width", 128, "image width")
flags.DEFINE_integer("ids", 40, "training identities of the generated benchmark")
flags.DEFINE_integer("batch", 32, "images per batch")
flags.DEFINE_integer("batches", 20, "timed batches per row, after the first")
flags.DEFINE_string("threads", "1,2", "comma list of decoding thread counts")
flags.DEFINE_string("sizes", "256x128,64x32", "output sizes (the IDE's, the synthetic config's)")


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  allocator = _common.apply(args)
  with tempfile.TemporaryDirectory() as root:
    spec = synthetic.BenchmarkSpec(
      height=args.height, width=args.width, train_ids=args.ids, test_ids=2, num_cameras=4, distractors=0, junk=0
    )
    start = time.perf_counter()
    synthetic.generate(root, spec)
    builder = builders.prepare("market1501", os.path.join(root, "source"), os.path.join(root, "tfds"), with_masks=True)
    setup_s = time.perf_counter() - start
    source = builder.as_data_source("train")
    n = len(source)

    start = time.perf_counter()
    for i in range(n):
      source[i]
    rows = [("random access (decode only)", f"{args.height}×{args.width}", 1, n / (time.perf_counter() - start))]
    for size_text in args.sizes.split(","):
      size = tuple(int(v) for v in size_text.split("x"))
      for threads in (int(t) for t in args.threads.split(",")):
        batches = pipeline.TrainBatches(
          source, global_batch_size=args.batch, image_size=size, seed=0, masks="data", num_threads=threads
        )
        it = batches.iterate(0)
        next(it)  # the threads start and the prefetch buffer fills
        start = time.perf_counter()
        for _ in range(args.batches):
          next(it)
        rows.append(
          (
            "TrainBatches (shuffle, decode, resize, flip, mask, batch)",
            f"{size[0]}×{size[1]}",
            threads,
            args.batch * args.batches / (time.perf_counter() - start),
          )
        )
  print(
    f"Input pipeline on {n} stored {args.height}×{args.width} JPEG images with PNG masks "
    f"(generated and prepared in {setup_s:.0f} s); batch {args.batch}, {args.batches} timed batches"
  )
  print(f"device: {_common.device_line()}; {os.cpu_count()} CPU cores; {allocator}")
  print()
  print("| what | output size | threads | images/s |")
  print("|---|---|---|---|")
  for what, size, threads, rate in rows:
    print(f"| {what} | {size} | {threads} | {rate:.0f} |")


if __name__ == "__main__":
  app.run(main)
