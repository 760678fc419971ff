"""PRID2011 single-shot evaluation protocol (torchreid's), with seeded splits shipped in the package.

The 200 identities seen by both cameras are split 10 times into 100 training and 100 test ids.
Direction ``"a2b"`` (the usual one): query = the cam_a image of each test id; gallery = the cam_b
images of the test ids plus cam_b ids 201–749 (649 images). Direction ``"b2a"`` (the paper's Table III
reports both): query = cam_b images of the test ids; gallery = cam_a test ids plus cam_a ids 201–385
(285 images). The unlabelled target data an adaptation method may see is the cam_a and cam_b images
of a split's *training* ids only, never its test ids or the distractors.

torchreid draws its splits with an unseeded RNG, so its numbers cannot be reproduced split for
split; ours come from `make_splits(seed=SPLIT_SEED)` and are stored in ``prid2011_splits.json``
(the test suite checks that the file and the function agree).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

SPLIT_SEED = 2011
NUM_SPLITS = 10
NUM_SHARED_IDS = 200  # ids 1..200 appear in both cameras
SPLITS_FILE = os.path.join(os.path.dirname(__file__), "prid2011_splits.json")
DIRECTIONS = ("a2b", "b2a")


def make_splits(seed: int = SPLIT_SEED, num_splits: int = NUM_SPLITS) -> list[dict[str, list[int]]]:
  rng = np.random.default_rng(seed)
  splits = []
  for _ in range(num_splits):
    ids = rng.permutation(np.arange(1, NUM_SHARED_IDS + 1))
    half = NUM_SHARED_IDS // 2
    splits.append({"train": sorted(int(i) for i in ids[:half]), "test": sorted(int(i) for i in ids[half:])})
  return splits


def write_splits(path: str = SPLITS_FILE) -> None:
  # One line per id list keeps the shipped file small and its diffs readable.
  lines = [f'  {{"train": {json.dumps(s["train"])}, "test": {json.dumps(s["test"])}}}' for s in make_splits()]
  with open(path, "w") as f:
    f.write(f'{{"seed": {SPLIT_SEED}, "splits": [\n' + ",\n".join(lines) + "\n]}\n")


def load_splits(path: str = SPLITS_FILE) -> list[dict[str, list[int]]]:
  with open(path) as f:
    return json.load(f)["splits"]


def protocol(pids_a: Sequence[int], pids_b: Sequence[int], split: int, direction: str = "a2b") -> dict[str, list[int]]:
  """Indices into the ``cam_a``/``cam_b`` splits (given by their person ids) for one split and direction.

  Returns ``{"train_a", "train_b", "query", "gallery"}``: the training-id images of each camera
  (the target's unlabelled adaptation data, and the labelled training set of a supervised model),
  and the query and gallery indices, which index ``cam_a`` and ``cam_b`` (a2b) or the reverse (b2a).
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"PRID2011 direction {direction!r}: expected one of {DIRECTIONS}")
  splits = load_splits()
  if not 0 <= split < len(splits):
    raise ValueError(f"PRID2011 split {split}: expected 0..{len(splits) - 1}")
  train, test = set(splits[split]["train"]), set(splits[split]["test"])
  pids_a = [int(p) for p in pids_a]
  pids_b = [int(p) for p in pids_b]
  out = {
    "train_a": [i for i, p in enumerate(pids_a) if p in train],
    "train_b": [i for i, p in enumerate(pids_b) if p in train],
  }
  query_pids, gallery_pids = (pids_a, pids_b) if direction == "a2b" else (pids_b, pids_a)
  out["query"] = [i for i, p in enumerate(query_pids) if p in test]
  out["gallery"] = [i for i, p in enumerate(gallery_pids) if p in test or p > NUM_SHARED_IDS]
  return out


if __name__ == "__main__":
  write_splits()
  print(f"wrote {SPLITS_FILE}")
