"""Single-shot two-camera targets: PRID2011, VIPeR and CUHK01, each with seeded train/test splits.

Each dataset's builder exposes a ``cam_a`` and a ``cam_b`` split (every image of each camera); a
`Protocol` turns their person ids into a split's ids and, per direction, query and gallery indices.
Direction ``"a2b"`` queries camera A's images of the test ids against camera B's gallery, ``"b2a"``
the reverse (the paper's Table III reports both for PRID2011). The unlabelled target data an
adaptation may see is the two cameras' images of a split's *training* ids only, never a test id
or a distractor.

* PRID2011 (torchreid's protocol): the 200 ids seen by both cameras, 10 splits of 100 training and
  100 test ids; the gallery adds the other camera's ids above 200 as distractors (649 in cam_b,
  185 in cam_a). Its splits are shipped (``prid2011_splits.json``, `make_splits(seed=SPLIT_SEED)`).
* VIPeR (torchreid's): 632 ids, one image per camera; 10 splits of 316 training and 316 test ids.
* CUHK01 (torchreid's): 971 ids, two images per camera; 10 splits of 485 training and 486 test ids.

VIPeR's and CUHK01's splits are drawn from the ids the dataset holds with a fixed seed, so they are
the same on every machine for the same files (torchreid draws them unseeded).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Sequence

import numpy as np

from sagan_jax.errors import ConfigError

DIRECTIONS = ("a2b", "b2a")
NUM_SPLITS = 10
SPLIT_SEED = 2011  # PRID2011's shipped splits
PRID_SHARED_IDS = 200  # PRID2011 ids 1..200 appear in both cameras
SPLITS_FILE = os.path.join(os.path.dirname(__file__), "prid2011_splits.json")


def make_splits(seed: int = SPLIT_SEED, num_splits: int = NUM_SPLITS) -> list[dict[str, list[int]]]:
  """PRID2011's splits: the 200 shared ids halved, ``num_splits`` times."""
  return draw_splits(range(1, PRID_SHARED_IDS + 1), PRID_SHARED_IDS // 2, seed, num_splits)


def draw_splits(ids: Sequence[int], num_train: int, seed: int, num_splits: int = NUM_SPLITS) -> list[dict]:
  """``num_splits`` seeded partitions of ``ids`` into ``num_train`` training ids and the rest (test)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num_splits):
    order = rng.permutation(np.asarray(list(ids)))
    out.append({"train": sorted(int(i) for i in order[:num_train]), "test": sorted(int(i) for i in order[num_train:])})
  return out


def write_splits(path: str = SPLITS_FILE) -> None:
  # One line per id list keeps the shipped file small and its diffs readable.
  lines = [f'  {{"train": {json.dumps(s["train"])}, "test": {json.dumps(s["test"])}}}' for s in make_splits()]
  with open(path, "w") as f:
    f.write(f'{{"seed": {SPLIT_SEED}, "splits": [\n' + ",\n".join(lines) + "\n]}\n")


def load_splits(path: str = SPLITS_FILE) -> list[dict[str, list[int]]]:
  with open(path) as f:
    return json.load(f)["splits"]


@dataclasses.dataclass(frozen=True)
class Protocol:
  """One dataset's evaluation protocol.

  Attributes:
    dataset: the builder's name.
    label: the dataset's name in results columns ("PRID" → "PRID-CamA", "PRID-CamB").
    num_train: training ids per split (None: PRID2011's shipped splits).
    distractors_above: ids above it are in one camera only and join every gallery (PRID2011's 200).
  """

  dataset: str
  label: str
  num_train: int | None
  distractors_above: int | None = None

  def splits(self, pids_a: Sequence[int], pids_b: Sequence[int]) -> list[dict[str, list[int]]]:
    """The protocol's splits of the ids both cameras hold."""
    if self.num_train is None:
      return load_splits()
    shared = sorted({int(p) for p in pids_a} & {int(p) for p in pids_b})
    if len(shared) <= self.num_train:
      raise ConfigError(
        f"{self.dataset}: {len(shared)} ids appear in both cameras, but its protocol trains on {self.num_train} "
        "per split and tests on the rest: is the dataset folder complete?"
      )
    return draw_splits(shared, self.num_train, zlib.crc32(self.dataset.encode()) % 2**31)

  def indices(self, pids_a, pids_b, split: dict[str, list[int]], direction: str = "a2b") -> dict[str, list[int]]:
    """``{"train_a", "train_b", "query", "gallery"}`` indices into the ``cam_a``/``cam_b`` splits.

    ``train_a``/``train_b``: the training ids' images of each camera (the target's adaptation data);
    ``query`` and ``gallery`` index ``cam_a`` and ``cam_b`` (``a2b``) or the reverse (``b2a``).
    """
    if direction not in DIRECTIONS:
      raise ValueError(f"direction {direction!r}: expected one of {DIRECTIONS}")
    train, test = set(split["train"]), set(split["test"])
    pids_a, pids_b = [int(p) for p in pids_a], [int(p) for p in pids_b]
    out = {
      "train_a": [i for i, p in enumerate(pids_a) if p in train],
      "train_b": [i for i, p in enumerate(pids_b) if p in train],
    }
    query_pids, gallery_pids = (pids_a, pids_b) if direction == "a2b" else (pids_b, pids_a)
    out["query"] = [i for i, p in enumerate(query_pids) if p in test]
    above = self.distractors_above
    out["gallery"] = [i for i, p in enumerate(gallery_pids) if p in test or (above is not None and p > above)]
    return out


PROTOCOLS = {
  "prid2011": Protocol("prid2011", "PRID", None, distractors_above=PRID_SHARED_IDS),
  "viper": Protocol("viper", "VIPeR", 316),
  "cuhk01": Protocol("cuhk01", "CUHK01", 485),
}

if __name__ == "__main__":
  write_splits()
  print(f"wrote {SPLITS_FILE}")
