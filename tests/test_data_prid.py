"""The PRID2011 single-shot protocol and its shipped splits."""

import pytest

from sagan_jax.data import layouts, prid

from helpers import make_prid_tree


def test_prid_protocol_sizes_and_directions(tmp_path):
  make_prid_tree(str(tmp_path))
  splits = layouts.scan_prid2011(str(tmp_path))
  assert len(splits["cam_a"]) == 385 and len(splits["cam_b"]) == 749
  assert {r.camera_id for r in splits["cam_b"]} == {2}
  pids_a, pids_b = [r.person_id for r in splits["cam_a"]], [r.person_id for r in splits["cam_b"]]
  a2b = prid.protocol(pids_a, pids_b, split=3, direction="a2b")
  assert (len(a2b["query"]), len(a2b["gallery"]), len(a2b["train_a"]), len(a2b["train_b"])) == (100, 649, 100, 100)
  b2a = prid.protocol(pids_a, pids_b, split=3, direction="b2a")
  assert (len(b2a["query"]), len(b2a["gallery"])) == (100, 285)
  test_ids = set(prid.load_splits()[3]["test"])
  query_ids = {splits["cam_a"][i].person_id for i in a2b["query"]}
  assert query_ids == test_ids
  gallery_ids = {splits["cam_b"][i].person_id for i in a2b["gallery"]}
  assert gallery_ids == test_ids | set(range(201, 750))
  # The adaptation data never contains a test id or a distractor.
  train_ids = {splits["cam_a"][i].person_id for i in a2b["train_a"]} | {
    splits["cam_b"][i].person_id for i in a2b["train_b"]
  }
  assert train_ids == set(prid.load_splits()[3]["train"]) and not train_ids & test_ids and max(train_ids) <= 200
  with pytest.raises(ValueError, match="direction"):
    prid.protocol(pids_a, pids_b, split=0, direction="a2c")


def test_prid_split_file_is_the_seeded_one():
  stored = prid.load_splits()
  assert stored == prid.make_splits(prid.SPLIT_SEED)
  assert len(stored) == 10
  for s in stored:
    assert len(s["train"]) == len(s["test"]) == 100
    assert sorted(s["train"] + s["test"]) == list(range(1, 201))
  assert len({tuple(s["train"]) for s in stored}) == 10
