"""The input pipeline: deterministic resumable batches, per-process slices, evaluation batches."""

import os

import numpy as np
import pytest

from sagan_jax import parallel
from sagan_jax.data import builders, pipeline

from helpers import TINY


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
  assert mesh.size == 4
  global_batch = pipeline.to_global_batch(whole, mesh)
  assert global_batch["image"].shape == (8, 16, 8, 4)
  assert global_batch["image"].sharding.is_equivalent_to(parallel.batch_sharded(mesh), 4)
  assert len(global_batch["image"].addressable_shards) == 4
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
