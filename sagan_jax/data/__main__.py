"""``python -m sagan_jax.data --dataset NAME --manual_dir DIR --data_dir OUT``: build a dataset, print its splits.

(The command lives here, not in builders.py: TFDS builders must be imported from a package, never run as ``__main__``.)
"""

from absl import app, flags

from sagan_jax import cli
from sagan_jax.data import builders

_DATASET = flags.DEFINE_enum("dataset", None, sorted(builders.BUILDERS), "the dataset to build")
_MANUAL_DIR = flags.DEFINE_string(
  "manual_dir", None, "folder holding the extracted dataset (see its MANUAL_DOWNLOAD_INSTRUCTIONS)"
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "where the prepared dataset is written")
_MASKS = flags.DEFINE_bool("masks", False, "build the 'masked' config (masks under MANUAL_DIR/masks/)")
_SKIP_CORRUPT = flags.DEFINE_bool("skip_corrupt", False, "leave out images PIL cannot decode (and report how many)")
flags.mark_flags_as_required(["dataset", "manual_dir", "data_dir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  cli.quiet_logging()
  builder = cli.exit_on_user_error(
    builders.prepare,
    _DATASET.value,
    _MANUAL_DIR.value,
    _DATA_DIR.value,
    with_masks=_MASKS.value,
    skip_corrupt=_SKIP_CORRUPT.value,
  )
  for split, info in builder.info.splits.items():
    labels = builders.read_labels(builder, split)
    ids = set(labels["person_id"].tolist()) - {-1, 0}
    print(
      f"{split:8s} {info.num_examples:6d} images  {len(ids):5d} ids  "
      f"cameras {sorted(set(labels['camera_id'].tolist()))}"
    )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
