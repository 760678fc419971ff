"""Datasets: layouts and TFDS builders on tiny generated trees, PRID protocol, synthetic benchmark, pipeline."""

import json
import os
import re

import jax
import numpy as np
import pytest
from PIL import Image

from sagan_jax import geometry, parallel
from sagan_jax.data import builders, layouts, pipeline, prid, synthetic


def _write_image(path, shape=(8, 4, 3), value=None, seed=0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  array = rng.integers(0, 255, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
  Image.fromarray(array if shape[-1] == 3 else array[..., 0]).save(path)


MARKET_FILES = {
  "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s2_010101_02.jpg"],
  "query": ["0003_c1s1_000001_00.jpg", "0004_c2s1_000002_00.jpg"],
  "bounding_box_test": [
    "0003_c3s1_000011_00.jpg",
    "0003_c1s1_000012_00.jpg",
    "-1_c1s1_000001_00.jpg",
    "0000_c2s1_000001_00.jpg",
    "0004_c5s1_000003_01.jpg",
  ],
}
DUKE_FILES = {
  "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg"],
  "query": ["0005_c2_f0046985.jpg"],
  "bounding_box_test": ["0005_c8_f0172551.jpg", "0009_c7_f0100001.jpg"],
}


def make_tree(manual, root, files, masks=False):
  for folder, names in files.items():
    for i, name in enumerate(names):
      _write_image(os.path.join(manual, root, folder, name), seed=i)
      if masks:
        _write_image(os.path.join(manual, "masks", root, folder, name[:-4] + ".png"), shape=(8, 4, 1), value=255)
  # Operating-system litter the real archives ship is ignored.
  open(os.path.join(manual, root, "bounding_box_test", "Thumbs.db"), "wb").close()


def make_prid_tree(manual, size=(8, 4, 3)):
  for camera, count in (("cam_a", 385), ("cam_b", 749)):
    for pid in range(1, count + 1):
      _write_image(
        os.path.join(manual, "prid_2011", "single_shot", camera, f"person_{pid:04d}.png"), size, value=pid % 251
      )


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
    _write_image(os.path.join(root, "bounding_box_train", "0002_c1_000451.jpg"))
  elif case == "bad_camera":
    _write_image(os.path.join(root, "bounding_box_train", "0002_c9s1_000451_03.jpg"))
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
  _write_image(missing, shape=(16, 4, 1), value=255)  # wrong size
  with pytest.raises(layouts.DatasetLayoutError, match="masks must have their image's size"):
    builders.prepare("market1501", manual, str(tmp_path / "data"), with_masks=True)


TINY = synthetic.BenchmarkSpec(
  height=32, width=16, train_ids=6, test_ids=4, num_cameras=3, distractors=3, junk=2, seed=5
)


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic"))
  meta = synthetic.generate(out, TINY)
  return out, meta


def _tree_bytes(root):
  contents = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      with open(os.path.join(dirpath, name), "rb") as f:
        contents[os.path.relpath(os.path.join(dirpath, name), root)] = f.read()
  return contents


def test_synthetic_is_deterministic_and_readable(tiny_benchmark, tmp_path):
  out, meta = tiny_benchmark
  again = str(tmp_path / "again")
  synthetic.generate(again, TINY)
  assert _tree_bytes(out) == _tree_bytes(again)
  other = str(tmp_path / "other")
  with open(os.path.join(out, "benchmark.json")) as f:
    spec = json.load(f)["spec"]
  synthetic.generate(other, synthetic.BenchmarkSpec(**{**spec, "seed": 6}))
  assert _tree_bytes(os.path.join(out, "source")) != _tree_bytes(os.path.join(other, "source"))
  # The real builder reads each domain unchanged, masks included; counts match the metadata.
  for domain in synthetic.DOMAINS:
    builder = builders.prepare(
      "market1501", os.path.join(out, domain), str(tmp_path / "data" / domain), with_masks=True
    )
    counts = meta["counts"][domain]
    assert builder.info.splits["train"].num_examples == counts["bounding_box_train"]
    assert builder.info.splits["gallery"].num_examples == counts["bounding_box_test"]
    train = builders.read_labels(builder, "train")
    assert set(train["person_id"].tolist()) == set(range(1, TINY.train_ids + 1))
    gallery = builders.read_labels(builder, "gallery")["person_id"]
    assert (gallery == 0).sum() == TINY.distractors and (gallery == -1).sum() == TINY.junk
    query = builders.read_labels(builder, "query")["person_id"]
    assert set(query.tolist()) == set(range(TINY.train_ids + 1, TINY.train_ids + TINY.test_ids + 1))
    example = builder.as_data_source("train")[0]
    assert example["image"].shape == (32, 16, 3) and set(np.unique(example["mask"])) <= {0, 255}
    assert 0.05 < (example["mask"] > 0).mean() < 0.7  # a person, not an empty or full frame


def test_synthetic_records_the_homography_it_applies(tiny_benchmark):
  out, _ = tiny_benchmark
  with open(os.path.join(out, "benchmark.json")) as f:
    h = np.asarray(json.load(f)["view_homography"])
  assert abs(np.linalg.det(h) - 1) < 1e-12
  # The target renderer warps with PIL from H_view; warping the same source-frame person with our
  # `geometry.warp` and H_view must give the same mask: the recorded H_view is the applied one,
  # in the library's convention.
  size = (128, 64)
  person = synthetic.random_identity(np.random.default_rng(0))
  rgba = synthetic.render_person(person, np.random.default_rng(1), size)
  pil = Image.fromarray(rgba, "RGBA").transform(
    size[::-1], Image.PERSPECTIVE, synthetic._pixel_coefficients(h, size), Image.BILINEAR
  )
  ours = geometry.warp(jax.numpy.asarray(rgba[None, ..., 3:], np.float32), jax.numpy.asarray(h[None], np.float32))
  a, b = np.asarray(pil)[..., 3] >= 128, np.asarray(ours[0, ..., 0]) >= 128
  iou = (a & b).sum() / (a | b).sum()
  assert iou > 0.97, iou
  # And it is a real viewpoint change, not a near-identity: the warped mask differs from the
  # unwarped one on over 5% of the frame (enlarged head, foreshortened legs).
  identity = rgba[..., 3] >= 128
  assert (a ^ identity).mean() > 0.05


def test_pipeline_batches(tiny_benchmark, tmp_path):
  out, _ = tiny_benchmark
  builder = builders.prepare("market1501", os.path.join(out, "source"), str(tmp_path / "data"), with_masks=True)
  source = builder.as_data_source("train")
  batches = pipeline.TrainBatches(source, global_batch_size=8, image_size=(24, 12), seed=3)
  batch = batches[0]
  assert batch["image"].shape == (8, 24, 12, 4) and batch["image"].dtype == np.float32
  rgb, mask = batch["image"][..., :3], batch["image"][..., 3]
  assert rgb.min() >= -1 and rgb.max() <= 1 and rgb.min() < -0.5 and rgb.max() > 0.5
  assert set(np.unique(mask)) == {0.0, 1.0}
  assert batch["person_id"].dtype == np.int32 and set(batch["person_id"]) <= set(range(1, TINY.train_ids + 1))
  # Resume: a fresh pipeline asked for batch k (and the prefetching iterator started at k) gives
  # exactly batch k of an uninterrupted run.
  again = pipeline.TrainBatches(source, global_batch_size=8, image_size=(24, 12), seed=3)
  iterator = again.iterate(start=5)
  for k in (5, 6):
    expected, got = batches[k], next(iterator)
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key])
  # Each streamed element is some example, flipped or not: identify it, then check that one epoch
  # is a permutation of the split, that the next epoch is a different one, and that flips happen.
  n = batches.num_examples
  plain = [pipeline.preprocess(source[i], (24, 12), "data", flip=False)["image"] for i in range(n)]

  def identify(image):
    (match,) = [
      (i, f) for i, p in enumerate(plain) for f, q in ((False, p), (True, p[:, ::-1])) if np.array_equal(image, q)
    ][:1]
    return match

  epochs = [[identify(batches._elements[e * n + i]["image"]) for i in range(n)] for e in (0, 1)]
  order = [[i for i, _ in epoch] for epoch in epochs]
  assert sorted(order[0]) == sorted(order[1]) == list(range(n))
  assert order[0] != order[1]
  flipped = sum(f for _, f in epochs[0])
  assert 0 < flipped < n
  # Another seed, another order.
  other = pipeline.TrainBatches(source, global_batch_size=8, image_size=(24, 12), seed=4)
  assert not np.array_equal(other[0]["image"], batch["image"])
  # masks="ones" replaces the mask channel.
  ones = pipeline.TrainBatches(source, global_batch_size=8, image_size=(24, 12), seed=3, masks="ones")[0]
  assert ones["image"][..., 3].min() == 1.0
  np.testing.assert_array_equal(ones["image"][..., :3], rgb)


def test_pipeline_per_process_slices_and_global_batch(tiny_benchmark, tmp_path):
  out, _ = tiny_benchmark
  builder = builders.prepare("market1501", os.path.join(out, "target"), str(tmp_path / "data"), with_masks=True)
  source = builder.as_data_source("train")
  kwargs = {"global_batch_size": 8, "image_size": (16, 8), "seed": 0}
  whole = pipeline.TrainBatches(source, **kwargs)[2]
  parts = [pipeline.TrainBatches(source, process_index=p, process_count=2, **kwargs)[2] for p in range(2)]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
  mesh = parallel.make_mesh()
  assert mesh.size == 8
  global_batch = pipeline.to_global_batch(whole, mesh)
  assert global_batch["image"].shape == (8, 16, 8, 4)
  assert global_batch["image"].sharding.is_equivalent_to(parallel.batch_sharded(mesh), 4)
  assert len(global_batch["image"].addressable_shards) == 8
  np.testing.assert_array_equal(np.asarray(global_batch["person_id"]), whole["person_id"])
  with pytest.raises(ValueError, match="not a multiple of the 3 processes"):
    pipeline.TrainBatches(source, global_batch_size=8, image_size=(16, 8), seed=0, process_index=0, process_count=3)


def test_eval_batches_cover_each_example_once(tiny_benchmark, tmp_path):
  out, meta = tiny_benchmark
  builder = builders.prepare("market1501", os.path.join(out, "source"), str(tmp_path / "data"))
  source = builder.as_data_source("gallery")
  with pytest.raises(KeyError, match="config='masked'"):
    next(pipeline.eval_batches(source, batch_size=4, image_size=(16, 8)))
  got = list(pipeline.eval_batches(source, batch_size=4, image_size=(16, 8), masks="ones"))
  n = meta["counts"]["source"]["bounding_box_test"]
  assert sum(valid for _, valid in got) == n and len(got) == -(-n // 4)
  assert all(b["image"].shape == (4, 16, 8, 4) for b, _ in got)
  labels = np.concatenate([b["person_id"][:valid] for b, valid in got])
  np.testing.assert_array_equal(labels, builders.read_labels(builder, "gallery")["person_id"])
  with pytest.raises(ValueError, match="empty split"):
    pipeline.Subset(source, [])


def test_warp_border_is_the_numpy_twin_of_geometry_warp_with_border_padding():
  rng = np.random.default_rng(3)
  image = rng.uniform(0, 255, (20, 12, 4))
  h = synthetic.view_homography(-0.3)
  ours = synthetic.warp_border(image, h)
  reference = geometry.warp(
    jax.numpy.asarray(image[None], np.float32), jax.numpy.asarray(h[None], np.float32), padding="border"
  )
  np.testing.assert_allclose(ours, np.asarray(reference[0]), atol=2e-3)


def test_paired_ground_truth_is_the_source_seen_through_the_recorded_homography_and_colours(tiny_benchmark):
  out, meta = tiny_benchmark
  paired = meta["paired"]
  train_names = sorted(os.listdir(os.path.join(out, "source", layouts.MARKET_ROOT, "bounding_box_train")))
  # Every training image of this small benchmark is paired (fewer than paired_images exist), and
  # no split of either domain holds a ground-truth file.
  assert sorted(paired["images"]) == train_names
  assert set(os.listdir(os.path.join(out, paired["dir"]))) == {synthetic.paired_name(n) for n in train_names}
  h = np.asarray(meta["view_homography"])
  errors = {"recorded": [], "identity": [], "opposite tilt": []}
  ious = {"recorded": [], "identity": []}
  for name in paired["images"]:
    source = np.asarray(
      Image.open(os.path.join(out, "source", layouts.MARKET_ROOT, "bounding_box_train", name)), np.float64
    )
    mask = np.asarray(
      Image.open(
        os.path.join(out, "source", layouts.MASKS_ROOT, layouts.MARKET_ROOT, "bounding_box_train", name[:-4] + ".png")
      ),
      np.float64,
    )
    truth = np.asarray(Image.open(os.path.join(out, paired["dir"], synthetic.paired_name(name))), np.float64)
    for label, homography in (
      ("recorded", h),
      ("identity", np.eye(3)),
      ("opposite tilt", synthetic.view_homography(0.3)),
    ):
      predicted = synthetic.target_colours(synthetic.warp_border(source, homography))
      errors[label].append(np.abs(predicted - truth[..., :3]).mean())
      if label in ious:
        a, b = synthetic.warp_border(mask[..., None], homography)[..., 0] >= 128, truth[..., 3] >= 128
        ious[label].append((a & b).sum() / (a | b).sum())
  # Re-rendering from the (noisy, low-resolution) source through the recorded homography and the
  # target colours lands within a few grey levels of the ground truth; the wrong geometries do not.
  assert np.mean(errors["recorded"]) < 8.0, errors["recorded"]
  assert np.mean(errors["recorded"]) < 0.6 * np.mean(errors["identity"])
  assert np.mean(errors["recorded"]) < 0.6 * np.mean(errors["opposite tilt"])
  assert np.mean(ious["recorded"]) > 0.85 and np.mean(ious["recorded"]) > np.mean(ious["identity"]) + 0.05


def test_paired_subset_is_spread_over_the_training_split(tmp_path):
  spec = synthetic.BenchmarkSpec(
    height=32, width=16, train_ids=10, test_ids=2, num_cameras=2, distractors=1, junk=1, seed=2, paired_images=7
  )
  meta = synthetic.generate(str(tmp_path), spec)
  names = sorted(os.listdir(os.path.join(str(tmp_path), "source", layouts.MARKET_ROOT, "bounding_box_train")))
  chosen = meta["paired"]["images"]
  assert len(chosen) == 7 and len(os.listdir(tmp_path / "paired")) == 7
  positions = [names.index(n) for n in chosen]
  assert positions[0] == 0 and positions[-1] == len(names) - 1 and positions == sorted(positions)
