"""The synthetic benchmark: deterministic, readable, its recorded homography and paired ground truth, safe folders."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from sagan_jax import geometry
from sagan_jax.data import builders, layouts, synthetic

from helpers import ROOT, TINY


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


def test_the_generator_never_deletes_a_folder_it_did_not_make(tmp_path):
  (tmp_path / "source").mkdir()
  (tmp_path / "source" / "thesis.tex").write_text("mine")
  (tmp_path / "target").mkdir()
  for overwrite in (False, True):
    with pytest.raises(ValueError, match=r"is not empty \(source, target\) and was not made by this generator"):
      synthetic.generate(str(tmp_path), TINY, overwrite=overwrite)
  assert (tmp_path / "source" / "thesis.tex").read_text() == "mine"
  out = subprocess.run(
    [sys.executable, "-m", "sagan_jax.data.synthetic", f"--out={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
  # Its own folder is regenerated, and --overwrite touches only what it writes.
  mine = tmp_path / "bench"
  synthetic.generate(str(mine), TINY)
  (mine / "notes.txt").write_text("kept")
  synthetic.generate(str(mine), TINY, overwrite=True)
  assert (mine / "notes.txt").read_text() == "kept" and (mine / "benchmark.json").is_file()


@pytest.mark.parametrize(
  "args, message",
  [
    (["--train_ids=0"], "error: --train_ids=0: expected at least 2"),
    (["--test_ids=0"], "error: --test_ids=0: expected at least 1"),
    (["--images_per_camera=0"], "error: --images_per_camera=0: expected at least 2"),
    (["--images_per_camera=1"], "error: --images_per_camera=1: expected at least 2 (one image of each identity"),
    (["--num_cameras=7"], "error: --num_cameras=7: expected 2 to 6"),
    (["--num_cameras=1"], "error: --num_cameras=1: expected 2 to 6"),
    (["--height=7", "--width=3"], "error: --height=7: expected at least 16"),
    (["--source_high_cameras=4"], "error: --source_high_cameras=4: expected 0 to 3"),
  ],
)
def test_a_benchmark_that_could_not_be_read_or_evaluated_is_refused_naming_the_argument(tmp_path, args, message):
  out = subprocess.run(
    [sys.executable, "-m", "sagan_jax.data.synthetic", f"--out={tmp_path / 'b'}", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 2 and out.stderr.startswith(message) and len(out.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "b").exists()  # checked before anything is written
