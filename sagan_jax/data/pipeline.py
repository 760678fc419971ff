"""The input pipeline: grain over `tfds.data_source`, deterministic and resumable by construction.

Training batches are random access: batch ``k`` is elements ``[k·G, (k+1)·G)`` of an endless
stream (a per-epoch shuffle of the split from ``seed``, each element decoded, resized to the
config's size, randomly flipped from a per-element RNG, scaled to [-1, 1] with the human mask as a
4th channel). So the iterator position *is* the step counter: a resumed run asks for batch ``step``
and sees exactly the batch an uninterrupted run would. On several processes each one decodes only
its own ``G / process_count`` slice of each global batch, and `to_global_batch` assembles the
global, batch-sharded array with `jax.make_array_from_process_local_data`.

Masks: ``masks="data"`` reads the dataset's ``mask`` feature (build it with ``config="masked"``);
``masks="ones"`` uses all-ones masks, for mask-free ablations, and says so loudly in the log;
``masks="unused"`` fills the same all-ones channel quietly, for consumers that never read it (IDE).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np
from absl import logging
from PIL import Image

from sagan_jax import parallel

MASK_MODES = ("data", "ones", "unused")


class Subset(Sequence):
  """The elements of a random-access source at ``indices`` (a protocol's query, a split's train ids)."""

  def __init__(self, source, indices: Sequence[int] | None = None):
    self._source = source
    self._indices = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64)
    if len(self._indices) == 0:
      raise ValueError("empty split: no examples selected; check the dataset directory and the protocol")

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, i):
    return self._source[int(self._indices[i])]


def preprocess(example: dict[str, Any], image_size: tuple[int, int], masks: str, flip: bool) -> dict[str, np.ndarray]:
  """One example → ``image`` float32 [H, W, 4] (RGB in [-1, 1], mask in {0, 1}), ``person_id``, ``camera_id``."""
  if masks not in MASK_MODES:
    raise ValueError(f"masks={masks!r}: expected one of {MASK_MODES}")
  height, width = image_size
  image = Image.fromarray(np.asarray(example["image"]))
  if image.size != (width, height):
    image = image.resize((width, height), Image.BILINEAR)
  rgb = np.asarray(image, np.float32) / 127.5 - 1.0
  if masks == "data":
    if "mask" not in example:
      raise KeyError(
        "masks='data' but the dataset has no 'mask' feature: build it with config='masked' "
        "(masks under MANUAL_DIR/masks/), or set the config's masks to 'ones'"
      )
    mask_image = Image.fromarray(np.asarray(example["mask"])[..., 0])
    if mask_image.size != (width, height):
      mask_image = mask_image.resize((width, height), Image.BILINEAR)
    mask = (np.asarray(mask_image, np.float32) >= 128).astype(np.float32)[..., None]
  else:
    mask = np.ones((height, width, 1), np.float32)
  out = np.concatenate([rgb, mask], axis=-1)
  if flip:
    out = out[:, ::-1]
  return {
    "image": np.ascontiguousarray(out),
    "person_id": np.int32(example["person_id"]),
    "camera_id": np.int32(example["camera_id"]),
  }


def _stack(elements: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([e[k] for e in elements]) for k in elements[0]}


class TrainBatches:
  """Endless, shuffled, augmented batches of one split; ``batches[k]`` is this process's part of batch k."""

  def __init__(
    self,
    source,
    *,
    global_batch_size: int,
    image_size: tuple[int, int],
    seed: int,
    indices: Sequence[int] | None = None,
    masks: str = "data",
    flip: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
    num_threads: int = 2,
  ):
    if masks not in MASK_MODES:  # checked here too, so a bad value fails at construction, not in a worker
      raise ValueError(f"masks={masks!r}: expected one of {MASK_MODES}")
    if masks == "ones":
      logging.warning("MASKS DISABLED: every human mask is all ones (masks='ones'); results are mask-free ablations")
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
      raise ValueError(f"global batch size {global_batch_size} is not a multiple of the {process_count} processes")
    subset = Subset(source, indices)
    self.num_examples = len(subset)
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self._offset = process_index * self.local_batch_size
    self._num_threads = num_threads

    def transform(example, rng: np.random.Generator):
      return preprocess(example, image_size, masks, flip=flip and bool(rng.random() < 0.5))

    self._elements = (
      grain.MapDataset.source(subset).shuffle(seed=seed).repeat(None).random_map(transform, seed=seed + 1)
    )
    self._batches = grain.MapDataset.range(0, sys.maxsize).map(self._local_batch)

  @property
  def steps_per_epoch(self) -> int:
    return max(1, self.num_examples // self.global_batch_size)

  def _local_batch(self, k: int) -> dict[str, np.ndarray]:
    start = k * self.global_batch_size + self._offset
    return _stack([self._elements[start + j] for j in range(self.local_batch_size)])

  def __getitem__(self, k: int) -> dict[str, np.ndarray]:
    return self._local_batch(k)

  def iterate(self, start: int = 0, prefetch: int = 4) -> Iterator[dict[str, np.ndarray]]:
    """Batches ``start, start + 1, ...``, decoded by ``num_threads`` threads ahead of use."""
    options = grain.ReadOptions(num_threads=self._num_threads, prefetch_buffer_size=prefetch)
    return iter(self._batches[start:].to_iter_dataset(options))


def eval_batches(
  source, *, batch_size: int, image_size: tuple[int, int], indices: Sequence[int] | None = None, masks: str = "data"
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Every selected example once, in order, unflipped: ``(batch, num_valid)``.

  The last batch is padded (by repeating its last example) to ``batch_size`` so a compiled step
  sees one shape; only its first ``num_valid`` rows are real.
  """
  subset = Subset(source, indices)
  data = grain.MapDataset.source(subset).map(lambda e: preprocess(e, image_size, masks, flip=False))
  for start in range(0, len(subset), batch_size):
    elements = [data[i] for i in range(start, min(start + batch_size, len(subset)))]
    valid = len(elements)
    elements += [elements[-1]] * (batch_size - valid)
    yield _stack(elements), valid


def to_global_batch(local: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """This process's rows → global arrays sharded along the mesh's ``data`` axis."""
  sharding = parallel.batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
