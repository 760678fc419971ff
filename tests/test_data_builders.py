"""Dataset layouts and TFDS builders on tiny generated trees: labels, errors, odd files, provenance."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sagan_jax.data import builders, layouts

from helpers import DUKE_FILES, MARKET_FILES, ROOT, make_prid_tree, make_tree, market_tree, write_image


def _labels(split):
  return {(r.person_id, r.camera_id) for r in split}


def test_market_scan_keeps_junk_and_distractors(tmp_path):
  make_tree(str(tmp_path), layouts.MARKET_ROOT, MARKET_FILES)
  splits = layouts.scan_market1501(str(tmp_path))
  assert {k: len(v) for k, v in splits.items()} == {"train": 3, "query": 2, "gallery": 5}
  assert _labels(splits["gallery"]) == {(3, 3), (3, 1), (-1, 1), (0, 2), (4, 5)}
  gallery = splits["gallery"]
  assert len(gallery) == 5 and len({r.person_id for r in gallery} - {-1, 0}) == 2
  assert [r.person_id for r in gallery].count(-1) == 1 and [r.person_id for r in gallery].count(0) == 1
  assert len({r.camera_id for r in gallery}) == 4
  assert splits["train"][2].filename == "Market-1501-v15.09.15/bounding_box_train/0007_c3s2_010101_02.jpg"


def test_market_and_duke_builders(tmp_path):
  manual, data = str(tmp_path / "manual"), str(tmp_path / "data")
  make_tree(manual, layouts.MARKET_ROOT, MARKET_FILES, masks=True)
  make_tree(manual, layouts.DUKE_ROOT, DUKE_FILES)
  market = builders.prepare("market1501", manual, data, with_masks=True)
  assert {k: v.num_examples for k, v in market.info.splits.items()} == {"train": 3, "query": 2, "gallery": 5}
  gallery = market.as_data_source("gallery")
  by_name = {gallery[i]["filename"].decode(): gallery[i] for i in range(len(gallery))}
  junk = by_name["Market-1501-v15.09.15/bounding_box_test/-1_c1s1_000001_00.jpg"]
  assert (junk["person_id"], junk["camera_id"]) == (-1, 1)
  assert junk["image"].shape == (8, 4, 3) and junk["mask"].shape == (8, 4, 1) and junk["mask"].min() == 255
  # JPEG bytes are stored unchanged: the decoded image equals PIL's decoding of the file.
  path = os.path.join(manual, "Market-1501-v15.09.15/bounding_box_test/-1_c1s1_000001_00.jpg")
  np.testing.assert_array_equal(junk["image"], np.asarray(Image.open(path)))
  labels = builders.read_labels(market, "gallery")
  assert sorted(labels["person_id"].tolist()) == [-1, 0, 3, 3, 4]
  duke = builders.prepare("dukemtmc_reid", manual, data)
  assert {k: v.num_examples for k, v in duke.info.splits.items()} == {"train": 2, "query": 1, "gallery": 2}
  assert sorted(builders.read_labels(duke, "gallery")["camera_id"].tolist()) == [7, 8]
  assert "mask" not in duke.info.features


def test_preparing_prints_one_summary_line_and_none_of_tfds_own_output(tmp_path, capsys):
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.utils import tqdm_utils

  manual, data = str(tmp_path / "manual"), str(tmp_path / "data")
  make_tree(manual, layouts.MARKET_ROOT, MARKET_FILES, masks=True)
  switch = tqdm_utils._active
  builders.prepare("market1501", manual, data, with_masks=True)
  out, err = capsys.readouterr()
  lines = out.splitlines()
  assert len(lines) == 1 and lines[0].startswith("prepared market1501 (masked): train 3, query 2, gallery 5 images in ")
  assert "Downloading" not in out + err and "Shuffling" not in err and "Generating" not in err
  assert "prepare market1501 gallery" in err  # our bar, one per split
  assert tqdm_utils._active is switch  # TFDS's own switch is put back as it was
  tfds.display_progress_bar(not switch)
  try:
    builders.prepare("market1501", manual, str(tmp_path / "again"), with_masks=True)
    assert tqdm_utils._active is (not switch)
  finally:
    tfds.display_progress_bar(switch)
  capsys.readouterr()
  builders.prepare("market1501", manual, data, with_masks=True)
  assert capsys.readouterr().out == ""  # reused: nothing to say
  with builders._tfds_quiet():
    print("Downloading and preparing dataset Unknown size (download: Unknown size) to /x/1.0.0...")
    print("\x1b[1mDataset market1501 downloaded and prepared to /x/1.0.0. Subsequent calls will reuse it.\x1b[0m")
    print("a warning printed meanwhile")
    assert capsys.readouterr().out == "a warning printed meanwhile\n"  # passed on when printed, not held
    print("a last line without its newline", end="")
  assert capsys.readouterr().out == "a last line without its newline"


def test_prid_builder(tmp_path):
  manual, data = str(tmp_path / "manual"), str(tmp_path / "data")
  make_prid_tree(manual)
  builder = builders.prepare("prid2011", manual, data)
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"cam_a": 385, "cam_b": 749}
  labels = builders.read_labels(builder, "cam_a")
  assert sorted(labels["person_id"].tolist()) == list(range(1, 386))


@pytest.mark.parametrize("case", ["missing_root", "missing_split", "misnamed", "bad_camera", "empty_split"])
def test_layout_errors_name_the_path(tmp_path, case):
  manual = str(tmp_path)
  if case != "missing_root":
    make_tree(manual, layouts.MARKET_ROOT, MARKET_FILES)
  root = os.path.join(manual, layouts.MARKET_ROOT)
  expected = {
    "missing_root": "Market-1501-v15.09.15",
    "missing_split": "query",
    "misnamed": "0002_c1_000451.jpg",
    "bad_camera": "0002_c9s1_000451_03.jpg",
    "empty_split": "query",
  }[case]
  if case == "missing_split":
    for name in os.listdir(os.path.join(root, "query")):
      os.remove(os.path.join(root, "query", name))
    os.rmdir(os.path.join(root, "query"))
  elif case == "misnamed":
    write_image(os.path.join(root, "bounding_box_train", "0002_c1_000451.jpg"))
  elif case == "bad_camera":
    write_image(os.path.join(root, "bounding_box_train", "0002_c9s1_000451_03.jpg"))
  elif case == "empty_split":
    for name in os.listdir(os.path.join(root, "query")):
      os.remove(os.path.join(root, "query", name))
  with pytest.raises(layouts.DatasetLayoutError, match=expected):
    layouts.scan_market1501(manual)


def _prepared_versions(data):
  """Completed dataset folders (TFDS renames the temporary folder only on success)."""
  found = []
  for dirpath, dirnames, _ in os.walk(data):
    found += [os.path.join(dirpath, d) for d in dirnames if d == "1.0.0"]
  return found


def test_corrupt_image_fails_the_build_without_output_or_is_skipped(tmp_path):
  manual, data = str(tmp_path / "manual"), str(tmp_path / "data")
  make_tree(manual, layouts.MARKET_ROOT, MARKET_FILES)
  bad = os.path.join(manual, layouts.MARKET_ROOT, "query", "0004_c2s1_000002_00.jpg")
  with open(bad, "wb") as f:
    f.write(b"\xff\xd8 this is not a jpeg")
  with pytest.raises(builders.CorruptImageError, match=re.escape("0004_c2s1_000002_00.jpg")):
    builders.prepare("market1501", manual, data)
  assert _prepared_versions(data) == []
  builder = builders.prepare("market1501", manual, str(tmp_path / "data2"), skip_corrupt=True)
  assert builder.info.splits["query"].num_examples == 1


def test_mask_errors(tmp_path):
  manual = str(tmp_path)
  make_tree(manual, layouts.MARKET_ROOT, MARKET_FILES, masks=True)
  missing = os.path.join(manual, "masks", layouts.MARKET_ROOT, "query", "0003_c1s1_000001_00.png")
  os.remove(missing)
  with pytest.raises(layouts.DatasetLayoutError, match=re.escape("0003_c1s1_000001_00.png")):
    layouts.scan_market1501(manual, layouts.default_masks_dir(manual))
  write_image(missing, shape=(16, 4, 1), value=255)  # wrong size
  with pytest.raises(layouts.DatasetLayoutError, match="masks must have their image's size"):
    builders.prepare("market1501", manual, str(tmp_path / "data"), with_masks=True)


def test_odd_images_are_accepted_without_tensorflow(tmp_path):
  manual, data = tmp_path / "manual", tmp_path / "data"
  market_tree(str(manual), ["L", "RGBA", "P", "RGB"])
  import importlib.util

  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("tensorflow is installed here; the project's environments do not have it")
  script = (
    "import sys, importlib.util\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import numpy as np\n"
    "from sagan_jax.data import builders\n"
    "b = builders.prepare('market1501', sys.argv[2], sys.argv[3], with_masks=True)\n"
    "train = b.as_data_source('train')\n"
    "for i in range(len(train)):\n"
    "  e = train[i]\n"
    "  assert e['image'].shape == (16, 8, 3) and e['mask'].shape == (16, 8, 1), (e['image'].shape, e['mask'].shape)\n"
    "  assert set(np.unique(e['mask'])) == {0, 255}, np.unique(e['mask'])\n"
    "assert 'tensorflow' not in sys.modules and importlib.util.find_spec('tensorflow') is None\n"
    "print('ok', len(train))\n"
  )
  out = subprocess.run(
    [sys.executable, "-c", script, ROOT, str(manual), str(data)], capture_output=True, text=True, check=False
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().endswith("ok 4")


def test_tiny_images_are_named(tmp_path):
  from PIL import Image

  from sagan_jax.data import builders

  manual = tmp_path / "manual"
  names = market_tree(str(manual), ["RGB"])
  from sagan_jax.data import layouts

  small = manual / layouts.MARKET_ROOT / "query" / names["query"][0]
  Image.new("RGB", (3, 6)).save(small, format="JPEG")
  with pytest.raises(builders.CorruptImageError, match=rf"{small.name}.* is 6×3, below the minimum 8×4"):
    builders.prepare("market1501", str(manual), str(tmp_path / "data"))


def test_prepared_data_belongs_to_its_source(tmp_path, caplog):
  import numpy as np

  from sagan_jax.data import builders, layouts

  first, second, data = tmp_path / "first", tmp_path / "second", str(tmp_path / "data")
  market_tree(str(first), ["RGB", "RGB"])
  market_tree(str(second), ["RGB", "RGB", "RGB"])
  count = lambda b: len(b.as_data_source("train"))
  assert count(builders.prepare("market1501", str(first), data)) == 2
  assert count(builders.prepare("market1501", str(first), data)) == 2 and "rebuilding" not in caplog.text
  assert count(builders.prepare("market1501", str(second), data)) == 3  # another folder: rebuilt from it
  assert "was built from " + str(first) in caplog.text
  # The same folder, a file changed: rebuilt, and the new pixels are what is read.
  path = second / layouts.MARKET_ROOT / "bounding_box_train" / "0002_c1s1_000450_03.jpg"
  from PIL import Image

  Image.fromarray(np.full((16, 8, 3), 255, np.uint8)).save(path, format="JPEG")
  os.utime(path, ns=(1, 1))
  rebuilt = builders.prepare("market1501", str(second), data).as_data_source("train")
  assert "whose files have changed since" in caplog.text
  assert any(np.all(rebuilt[i]["image"] > 250) for i in range(3))
  with pytest.raises(layouts.DatasetLayoutError, match="does not exist"):
    builders.prepare("market1501", str(tmp_path / "gone"), data)


@pytest.mark.parametrize(
  "name, kind", [("-1_c1s1_000009_00.jpg", "a junk box"), ("0000_c2s1_000009_00.jpg", "a distractor")]
)
def test_junk_and_distractor_boxes_are_refused_as_queries(tmp_path, name, kind):
  make_tree(str(tmp_path), layouts.MARKET_ROOT, MARKET_FILES)
  write_image(os.path.join(str(tmp_path), layouts.MARKET_ROOT, "query", name))
  with pytest.raises(
    layouts.DatasetLayoutError, match=rf"{name}' is {kind} .* in the query split .* bounding_box_test"
  ):
    layouts.scan_market1501(str(tmp_path))
