"""The synthetic benchmark: deterministic, readable, its recorded homography and paired ground truth, safe folders."""

import dataclasses
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


def test_synthetic_is_deterministic_and_readable(tiny_benchmark, tmp_path, capsys):
  out, meta = tiny_benchmark
  again = str(tmp_path / "again")
  capsys.readouterr()
  synthetic.generate(again, TINY)
  assert _tree_bytes(out) == _tree_bytes(again)
  images = {d: sum(meta["counts"][d].values()) for d in synthetic.DOMAINS}
  summary = (
    f"generated the synthetic benchmark: source {images['source']}, target {images['target']} images, "
    f"{len(meta['paired']['train'])} + {len(meta['paired']['heldout'])} paired truths in {again} ("
  )
  assert [line[: len(summary)] for line in capsys.readouterr().out.splitlines()] == [summary]
  synthetic.generate(again, TINY)
  assert capsys.readouterr().out == ""  # already there: nothing generated, nothing said
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


def test_synthetic_records_the_homographies_it_applies(tiny_benchmark):
  _, meta = tiny_benchmark
  views = [np.asarray(h) for h in meta["view_homographies"]]
  assert len(views) == 3 and meta["view_tilts"] == pytest.approx([-0.45, -0.3, -0.15])
  np.testing.assert_allclose(meta["central_homography"], synthetic.view_homography(-0.3))
  size = (128, 64)
  person = synthetic.random_identity(np.random.default_rng(0))
  rgba = synthetic.render_person(person, np.random.default_rng(1), size)
  masks = []
  for h in views:
    assert abs(np.linalg.det(h) - 1) < 1e-12
    # The target renderer warps with PIL from H; warping the same source-frame person with our
    # `geometry.warp` and H must give the same mask: the recorded H is the applied one, in the
    # library's convention.
    pil = Image.fromarray(rgba, "RGBA").transform(
      size[::-1], Image.PERSPECTIVE, synthetic._pixel_coefficients(h, size), Image.BILINEAR
    )
    ours = geometry.warp(jax.numpy.asarray(rgba[None, ..., 3:], np.float32), jax.numpy.asarray(h[None], np.float32))
    a, b = np.asarray(pil)[..., 3] >= 128, np.asarray(ours[0, ..., 0]) >= 128
    assert (a & b).sum() / (a | b).sum() > 0.97
    masks.append(a)
  # Real viewpoint changes, and distinct ones: each warped mask differs from the unwarped one and
  # from the other views' on a share of the frame (head enlarged, legs foreshortened, by degrees).
  identity = rgba[..., 3] >= 128
  assert all((m ^ identity).mean() > 0.03 for m in masks)
  assert (masks[0] ^ masks[1]).mean() > 0.02 and (masks[1] ^ masks[2]).mean() > 0.02


def test_warp_border_is_the_numpy_twin_of_geometry_warp_with_border_padding():
  rng = np.random.default_rng(3)
  image = rng.uniform(0, 255, (20, 12, 4))
  h = synthetic.view_homography(-0.3)
  ours = synthetic.warp_border(image, h)
  reference = geometry.warp(
    jax.numpy.asarray(image[None], np.float32), jax.numpy.asarray(h[None], np.float32), padding="border"
  )
  np.testing.assert_allclose(ours, np.asarray(reference[0]), atol=2e-3)


def test_paired_truths_are_each_source_image_seen_through_each_view_and_the_target_colours(tiny_benchmark):
  out, meta = tiny_benchmark
  paired = meta["paired"]
  root = os.path.join(out, "source", layouts.MARKET_ROOT)
  train_names = sorted(f"bounding_box_train/{n}" for n in os.listdir(os.path.join(root, "bounding_box_train")))
  # Every training image of this small benchmark is paired in-sample (fewer than paired_images
  # exist); the held-out set holds only test identities' images; no split holds a truth file.
  assert sorted(paired["train"]) == train_names
  test_ids = set(range(TINY.train_ids + 1, TINY.train_ids + TINY.test_ids + 1))
  assert paired["heldout"] and {int(n.split("/")[1][:4]) for n in paired["heldout"]} <= test_ids
  assert {n.split("/")[0] for n in paired["heldout"]} == {"query", "bounding_box_test"}
  expected = {synthetic.paired_name(n, k) for n in paired["train"] + paired["heldout"] for k in range(3)}
  assert set(os.listdir(os.path.join(out, paired["dir"]))) == expected
  views = [np.asarray(h) for h in meta["view_homographies"]]
  errors = {"own view": [], "another view": [], "identity": []}
  for path in paired["heldout"]:
    source = np.asarray(Image.open(os.path.join(root, path)), np.float64)
    for k, h in enumerate(views):
      truth = np.asarray(Image.open(os.path.join(out, paired["dir"], synthetic.paired_name(path, k))), np.float64)
      for label, homography in (("own view", h), ("another view", views[(k + 1) % 3]), ("identity", np.eye(3))):
        predicted = synthetic.target_colours(synthetic.warp_border(source, homography))
        errors[label].append(np.abs(predicted - truth[..., :3]).mean())
  # Re-rendering from the (noisy, low-resolution) source through the view's homography and the
  # target colours lands within a few grey levels of that view's truth; other geometries do not.
  assert np.mean(errors["own view"]) < 8.0, errors["own view"]
  assert np.mean(errors["own view"]) < 0.75 * np.mean(errors["another view"])
  assert np.mean(errors["own view"]) < 0.6 * np.mean(errors["identity"])


def test_paired_subsets_are_spread_over_their_splits(tmp_path):
  spec = synthetic.BenchmarkSpec(
    height=32,
    width=16,
    train_ids=10,
    test_ids=6,
    num_cameras=2,
    distractors=1,
    junk=1,
    seed=2,
    paired_images=7,
    heldout_paired_images=5,
    target_views=2,
  )
  meta = synthetic.generate(str(tmp_path), spec)
  names = sorted(os.listdir(os.path.join(str(tmp_path), "source", layouts.MARKET_ROOT, "bounding_box_train")))
  chosen = [n.split("/")[1] for n in meta["paired"]["train"]]
  assert len(chosen) == 7 and len(meta["paired"]["heldout"]) == 5
  assert len(os.listdir(tmp_path / "paired")) == (7 + 5) * 2  # two views each
  positions = [names.index(n) for n in chosen]
  assert positions[0] == 0 and positions[-1] == len(names) - 1 and positions == sorted(positions)


def test_paired_truths_are_rendered_again_from_their_images_generator_state(tmp_path, monkeypatch):
  """Only the chosen images get truths, rendered a second time from the saved generator state; a
  rendering whose truths drew from the generator would give other pixels, and is refused."""
  spec = synthetic.BenchmarkSpec(height=32, width=16, train_ids=6, test_ids=4, num_cameras=2, distractors=1, junk=1)
  spec = dataclasses.replace(spec, paired_images=3, heldout_paired_images=2, target_views=2)
  render, calls = synthetic.render_image, []

  def counted(*args, truths=(), **kwargs):
    calls.append(len(truths))
    return render(*args, truths=truths, **kwargs)

  monkeypatch.setattr(synthetic, "render_image", counted)
  meta = synthetic.generate(str(tmp_path / "ok"), spec)
  assert sorted(c for c in calls if c) == [2] * 5  # two views for each of the 3 + 2 chosen images
  rendered = sum(sum(meta["counts"][d].values()) - spec.junk for d in synthetic.DOMAINS)  # junk: no person
  assert calls.count(0) == rendered  # every other image once, without truths

  def drawing(*args, truths=(), **kwargs):
    if len(truths):
      args[3].random()  # the generator, drawn before the image
    return render(*args, truths=truths, **kwargs)

  monkeypatch.setattr(synthetic, "render_image", drawing)
  with pytest.raises(RuntimeError, match=r"rendering bounding_box_train/\S+ again gave other pixels"):
    synthetic.generate(str(tmp_path / "drawn"), spec)


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
