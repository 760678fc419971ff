"""The two-camera targets' protocols (PRID2011, VIPeR, CUHK01), their builders, and PRID2011's shipped splits."""

import os

import numpy as np
import pytest
from PIL import Image

from sagan_jax.data import builders, layouts, two_camera

from helpers import make_prid_tree, write_image


def test_prid_protocol_sizes_and_directions(tmp_path):
  make_prid_tree(str(tmp_path))
  splits = layouts.scan_prid2011(str(tmp_path))
  assert len(splits["cam_a"]) == 385 and len(splits["cam_b"]) == 749
  assert {r.camera_id for r in splits["cam_b"]} == {2}
  pids_a, pids_b = [r.person_id for r in splits["cam_a"]], [r.person_id for r in splits["cam_b"]]
  prid = two_camera.PROTOCOLS["prid2011"]
  split3 = prid.splits(pids_a, pids_b)[3]
  a2b = prid.indices(pids_a, pids_b, split3, direction="a2b")
  assert (len(a2b["query"]), len(a2b["gallery"]), len(a2b["train_a"]), len(a2b["train_b"])) == (100, 649, 100, 100)
  b2a = prid.indices(pids_a, pids_b, split3, direction="b2a")
  assert (len(b2a["query"]), len(b2a["gallery"])) == (100, 285)
  test_ids = set(two_camera.load_splits()[3]["test"])
  assert {splits["cam_a"][i].person_id for i in a2b["query"]} == test_ids
  assert {splits["cam_b"][i].person_id for i in a2b["gallery"]} == test_ids | set(range(201, 750))
  # The adaptation data never contains a test id or a distractor.
  train_ids = {splits["cam_a"][i].person_id for i in a2b["train_a"]} | {
    splits["cam_b"][i].person_id for i in a2b["train_b"]
  }
  assert train_ids == set(split3["train"]) and not train_ids & test_ids and max(train_ids) <= 200
  with pytest.raises(ValueError, match="direction"):
    prid.indices(pids_a, pids_b, split3, direction="a2c")


def test_prid_split_file_is_the_seeded_one():
  stored = two_camera.load_splits()
  assert stored == two_camera.make_splits(two_camera.SPLIT_SEED)
  assert len(stored) == 10
  for s in stored:
    assert len(s["train"]) == len(s["test"]) == 100
    assert sorted(s["train"] + s["test"]) == list(range(1, 201))
  assert len({tuple(s["train"]) for s in stored}) == 10


def _viper_tree(root, count, names=lambda camera, i: f"{i:03d}.png"):
  for camera in ("cam_a", "cam_b"):
    for i in range(count):
      write_image(os.path.join(root, camera, names(camera, i)), shape=(16, 8, 3), seed=i)


def test_viper_layout_builder_and_its_316_316_splits(tmp_path):
  # The release's names: NNN_ANGLE.bmp, the same NNN for one person in both cameras, any angle.
  _viper_tree(str(tmp_path / "release"), 3, lambda camera, i: f"{10 * i:03d}_{0 if camera == 'cam_a' else 90}.bmp")
  release = layouts.scan_viper(str(tmp_path / "release"))
  assert [r.person_id for r in release["cam_a"]] == [1, 11, 21] and {r.camera_id for r in release["cam_b"]} == {2}
  manual = str(tmp_path / "viper")
  _viper_tree(manual, 632)
  builder = builders.prepare("viper", manual, str(tmp_path / "tfds"))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"cam_a": 632, "cam_b": 632}
  pids_a = builders.read_labels(builder, "cam_a")["person_id"]
  pids_b = builders.read_labels(builder, "cam_b")["person_id"]
  viper = two_camera.PROTOCOLS["viper"]
  splits = viper.splits(pids_a, pids_b)
  assert splits == viper.splits(pids_b[::-1], pids_a)  # seeded by the dataset, not by the order read
  assert len(splits) == 10 and len({tuple(s["train"]) for s in splits}) == 10
  for s in splits:
    assert len(s["train"]) == len(s["test"]) == 316 and sorted(s["train"] + s["test"]) == list(range(1, 633))
  idx = viper.indices(pids_a, pids_b, splits[0], "b2a")
  assert len(idx["query"]) == len(idx["gallery"]) == 316 and len(idx["train_a"]) == len(idx["train_b"]) == 316
  assert set(pids_b[idx["query"]]) == set(pids_a[idx["gallery"]]) == set(splits[0]["test"])


@pytest.mark.parametrize(
  "case, message",
  [
    ("unpaired", r"1 identities appear in one camera only \(e.g. 4\)"),
    ("twice", r"share the number 1 in cam_a"),
    ("misnamed", r"person_1\.png' does not match the naming scheme"),
    ("missing", r"missing folder .*cam_b"),
  ],
)
def test_viper_layout_errors_name_the_file(tmp_path, case, message):
  _viper_tree(str(tmp_path), 3)
  if case == "unpaired":
    write_image(str(tmp_path / "cam_a" / "003.png"), shape=(16, 8, 3))
  elif case == "twice":
    write_image(str(tmp_path / "cam_a" / "001_90.bmp"), shape=(16, 8, 3))
  elif case == "misnamed":
    write_image(str(tmp_path / "cam_a" / "person_1.png"), shape=(16, 8, 3))
  else:
    for name in os.listdir(tmp_path / "cam_b"):
      os.remove(tmp_path / "cam_b" / name)
    os.rmdir(tmp_path / "cam_b")
  with pytest.raises(layouts.DatasetLayoutError, match=message):
    layouts.scan_viper(str(tmp_path))


def test_cuhk01_as_a_labelled_source_and_as_a_485_486_target(tmp_path):
  manual = tmp_path / "cuhk01"
  for pid in range(1, 972):
    for shot in range(1, 5):
      path = manual / layouts.CUHK01_ROOT / f"{pid:04d}{shot:03d}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(np.full((16, 8, 3), (pid * 7 + shot) % 251, np.uint8)).save(path)
  builder = builders.prepare("cuhk01", str(manual), str(tmp_path / "tfds"))
  counts = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert counts == {"train": 3884, "cam_a": 1942, "cam_b": 1942}
  train = builders.read_labels(builder, "train")
  assert len(set(train["person_id"])) == 971 and set(train["camera_id"]) == {1, 2}
  cam_a, cam_b = (builders.read_labels(builder, s) for s in ("cam_a", "cam_b"))
  assert set(cam_a["camera_id"]) == {1} and all(f.endswith(("001.png", "002.png")) for f in cam_a["filename"])
  cuhk = two_camera.PROTOCOLS["cuhk01"]
  split = cuhk.splits(cam_a["person_id"], cam_b["person_id"])[0]
  assert (len(split["train"]), len(split["test"])) == (485, 486)
  idx = cuhk.indices(cam_a["person_id"], cam_b["person_id"], split, "a2b")
  assert len(idx["query"]) == len(idx["gallery"]) == 2 * 486 and len(idx["train_a"]) == 2 * 485
  os.remove(manual / layouts.CUHK01_ROOT / "0005003.png")
  os.remove(manual / layouts.CUHK01_ROOT / "0005004.png")
  with pytest.raises(layouts.DatasetLayoutError, match=r"1 identities appear in one camera only \(e.g. 5\)"):
    layouts.scan_cuhk01(str(manual))
  (manual / layouts.CUHK01_ROOT / "0006009.png").write_bytes(b"")
  with pytest.raises(layouts.DatasetLayoutError, match=r"0006009.png': image number 9 outside 001..004"):
    layouts.scan_cuhk01(str(manual))
