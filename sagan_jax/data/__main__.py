"""``python -m sagan_jax.data --dataset NAME --manual_dir DIR --data_dir OUT``: build a dataset, print its splits.

(The command lives here, not in builders.py: TFDS builders must be imported from a package, never run as ``__main__``.)
"""

from sagan_jax.data import builders


def main(argv=None) -> None:
  import argparse  # noqa: PLC0415  (the command's own import, not the builders')

  parser = argparse.ArgumentParser(
    description="Build a re-ID dataset from its manual directory (array_record, no TensorFlow)."
  )
  parser.add_argument("--dataset", required=True, choices=sorted(builders.BUILDERS))
  parser.add_argument(
    "--manual_dir", required=True, help="folder holding the extracted dataset (see MANUAL_DOWNLOAD_INSTRUCTIONS)"
  )
  parser.add_argument("--data_dir", required=True, help="where the prepared dataset is written")
  parser.add_argument("--masks", action="store_true", help="build the 'masked' config (masks under MANUAL_DIR/masks/)")
  parser.add_argument(
    "--skip_corrupt", action="store_true", help="leave out images PIL cannot decode (and report how many)"
  )
  args = parser.parse_args(argv)
  from sagan_jax import cli  # noqa: PLC0415

  builder = cli.exit_on_user_error(
    builders.prepare,
    args.dataset,
    args.manual_dir,
    args.data_dir,
    with_masks=args.masks,
    skip_corrupt=args.skip_corrupt,
  )
  for split, info in builder.info.splits.items():
    labels = builders.read_labels(builder, split)
    ids = set(labels["person_id"].tolist()) - {-1, 0}
    print(
      f"{split:8s} {info.num_examples:6d} images  {len(ids):5d} ids  "
      f"cameras {sorted(set(labels['camera_id'].tolist()))}"
    )


if __name__ == "__main__":
  main()
