"""The on-disk layouts of Market-1501, DukeMTMC-reID, PRID2011, VIPeR and CUHK01, parsed strictly.

Each `scan_*` function walks a dataset directory as its authors distribute it and returns, per
split, the list of `Record`s (path, person id, camera id). Anything that does not match the layout
(a missing folder, a file whose name does not parse, an empty split, a mask that is missing when
masks are asked for) raises one `DatasetLayoutError` naming the path and what was expected.

Person ids are kept as the files give them: Market-1501 and DukeMTMC-reID use -1 for junk boxes
and 0 for distractors (Market); evaluation needs both, so nothing is filtered here. Camera ids are
1-based as in the file names (PRID2011: cam_a = 1, cam_b = 2).

Operating-system litter (``Thumbs.db``, which the Market-1501 archive ships, ``.DS_Store``, hidden
files) is ignored; every other file must parse.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable

from sagan_jax.errors import UserError

MARKET_ROOT = "Market-1501-v15.09.15"
DUKE_ROOT = "DukeMTMC-reID"
PRID_ROOT = os.path.join("prid_2011", "single_shot")
# Masks mirror the dataset tree under this folder of the manual directory, one single-channel
# PNG per image with the image's stem: masks/Market-1501-v15.09.15/query/0001_c1s1_001051_00.png
MASKS_ROOT = "masks"

_IGNORED = {"thumbs.db", "desktop.ini"}

# Market-1501: PPPP_cXsY_FFFFFF_NN.jpg (PPPP = -1 for junk boxes).
MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
# DukeMTMC-reID: PPPP_cX_fFFFFFFF.jpg
DUKE_NAME = re.compile(r"^(-1|\d{4})_c(\d)_f(\d{7})\.jpg$")
# PRID2011 single-shot: person_NNNN.png
PRID_NAME = re.compile(r"^person_(\d{4})\.png$")
# VIPeR: NNN.png (a renumbered copy) or the release's NNN_ANGLE.bmp; NNN pairs the two cameras' images.
VIPER_NAME = re.compile(r"^(\d{3,4})(?:_(\d{1,3}))?\.(?:png|bmp|jpg|jpeg)$", re.IGNORECASE)
# CUHK01: PPPPNNN.png, PPPP the identity (0001-0971), NNN 001-002 camera A, 003-004 camera B.
CUHK01_NAME = re.compile(r"^(\d{4})(\d{3})\.png$")

MARKET_SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
VIPER_CAMERAS = {"cam_a": 1, "cam_b": 2}
CUHK01_ROOT = "campus"
DUKE_SPLITS = MARKET_SPLITS
PRID_CAMERAS = {"cam_a": 1, "cam_b": 2}


class DatasetLayoutError(UserError, ValueError):
  """The dataset directory does not have the layout its builder expects."""


@dataclasses.dataclass(frozen=True)
class Record:
  path: str  # absolute path of the image
  filename: str  # path relative to the manual directory, "/"-separated (stable across machines)
  person_id: int
  camera_id: int
  mask_path: str | None = None


def _listing(folder: str, what: str) -> list[str]:
  if not os.path.isdir(folder):
    raise DatasetLayoutError(f"missing folder {folder!r}: expected {what}")
  names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and n.lower() not in _IGNORED)
  if not names:
    raise DatasetLayoutError(f"empty split: folder {folder!r} holds no images ({what})")
  return names


def _mask_path(manual_dir: str, relative: str, masks_dir: str | None) -> str | None:
  if masks_dir is None:
    return None
  path = os.path.join(masks_dir, os.path.splitext(relative)[0] + ".png")
  if not os.path.isfile(path):
    raise DatasetLayoutError(
      f"missing mask {path!r} for image {relative!r}: masks mirror the image tree under "
      f"{masks_dir!r} as single-channel PNGs with the image's stem (write them with "
      "`python -m sagan_jax.masks infer`, or build without masks)"
    )
  return path


def default_masks_dir(manual_dir: str) -> str:
  return os.path.join(manual_dir, MASKS_ROOT)


def _scan_folder(
  manual_dir: str,
  folder: str,
  pattern: re.Pattern,
  scheme: str,
  masks_dir: str | None,
  camera_of: Callable[[re.Match, str], int],
) -> list[Record]:
  """Every image of ``manual_dir/folder``; ``camera_of(match, path)`` reads (and checks) its camera."""
  base = os.path.join(manual_dir, folder)
  records = []
  for name in _listing(base, f"{folder}/{scheme}"):
    path = os.path.join(base, name)
    m = pattern.match(name)
    if m is None:
      raise DatasetLayoutError(f"file {path!r} does not match the naming scheme {scheme} of {folder}")
    relative = f"{folder}/{name}"
    records.append(
      Record(
        path=path,
        filename=relative,
        person_id=int(m.group(1)),
        camera_id=camera_of(m, path),
        mask_path=_mask_path(manual_dir, relative, masks_dir),
      )
    )
  return records


def _require_root(manual_dir: str, root: str, what: str) -> None:
  if not os.path.isdir(os.path.join(manual_dir, root)):
    raise DatasetLayoutError(
      f"missing folder {os.path.join(manual_dir, root)!r}: put the extracted {what} inside the manual "
      f"directory {manual_dir!r}"
    )


def _scan_official(
  manual_dir: str, root: str, pattern: re.Pattern, scheme: str, num_cameras: int, masks_dir: str | None
) -> dict[str, list[Record]]:
  _require_root(manual_dir, root, f"{root} folder")

  def camera_of(m: re.Match, path: str) -> int:
    camera = int(m.group(2))
    if not 1 <= camera <= num_cameras:
      raise DatasetLayoutError(f"file {path!r}: camera {camera} outside 1..{num_cameras}")
    return camera

  splits = {
    split: _scan_folder(manual_dir, f"{root}/{folder}", pattern, scheme, masks_dir, camera_of)
    for split, folder in MARKET_SPLITS.items()
  }
  for split in ("train", "query"):  # junk (-1) and distractors (0) belong to the gallery only
    bad = [r for r in splits[split] if r.person_id <= 0]
    if bad:
      kind = "a junk box" if bad[0].person_id < 0 else "a distractor"
      raise DatasetLayoutError(
        f"file {bad[0].path!r} is {kind} (person id {bad[0].person_id}) in the {split} split ({len(bad)} such "
        f"files): only identities ≥ 1 can be {'queries' if split == 'query' else 'trained on'}; move it to "
        f"{MARKET_SPLITS['gallery']} or remove it"
      )
  return splits


def scan_market1501(manual_dir: str, masks_dir: str | None = None) -> dict[str, list[Record]]:
  """Splits ``train`` (bounding_box_train), ``query`` and ``gallery`` (bounding_box_test)."""
  return _scan_official(manual_dir, MARKET_ROOT, MARKET_NAME, "PPPP_cXsY_FFFFFF_NN.jpg", 6, masks_dir)


def scan_dukemtmc_reid(manual_dir: str, masks_dir: str | None = None) -> dict[str, list[Record]]:
  """Splits ``train`` (bounding_box_train), ``query`` and ``gallery`` (bounding_box_test)."""
  return _scan_official(manual_dir, DUKE_ROOT, DUKE_NAME, "PPPP_cX_fFFFFFFF.jpg", 8, masks_dir)


def scan_prid2011(manual_dir: str, masks_dir: str | None = None) -> dict[str, list[Record]]:
  """Splits ``cam_a`` and ``cam_b`` (every single-shot image); protocols select from them."""
  _require_root(manual_dir, PRID_ROOT, "prid_2011 folder (with single_shot/cam_a and single_shot/cam_b)")
  return {
    split: _scan_folder(
      manual_dir,
      f"prid_2011/single_shot/{split}",
      PRID_NAME,
      "person_NNNN.png",
      masks_dir,
      lambda m, path, camera=camera: camera,
    )
    for split, camera in PRID_CAMERAS.items()
  }


def _check_paired(splits: dict[str, list[Record]], manual_dir: str, dataset: str) -> None:
  """Both cameras hold the same identities (a single-shot pair per id)."""
  a = {r.person_id for r in splits["cam_a"]}
  b = {r.person_id for r in splits["cam_b"]}
  if a != b:
    only = sorted(a ^ b)
    raise DatasetLayoutError(
      f"{dataset} in {manual_dir!r}: {len(only)} identities appear in one camera only (e.g. {only[0]}): "
      "each identity needs its images in both cameras"
    )


def scan_viper(manual_dir: str, masks_dir: str | None = None) -> dict[str, list[Record]]:
  """Splits ``cam_a`` and ``cam_b``: VIPeR's two cameras, one image of each of its 632 people each.

  Person ids are the files' numbers plus 1 (ids are 1-based here, as PRID2011's: 0 means a distractor
  to Market-style evaluation code, which VIPeR has none of).
  """
  splits = {
    split: _scan_folder(
      manual_dir,
      split,
      VIPER_NAME,
      "NNN.png or NNN_ANGLE.bmp",
      masks_dir,
      lambda m, path, camera=camera: camera,
    )
    for split, camera in VIPER_CAMERAS.items()
  }
  splits = {k: [dataclasses.replace(r, person_id=r.person_id + 1) for r in v] for k, v in splits.items()}
  for split, records in splits.items():
    seen = {}
    for r in records:
      if r.person_id in seen:
        raise DatasetLayoutError(
          f"VIPeR files {seen[r.person_id]!r} and {r.path!r} share the number {r.person_id - 1} in {split}: "
          "a camera holds one image per person"
        )
      seen[r.person_id] = r.path
  _check_paired(splits, manual_dir, "VIPeR")
  return splits


def scan_cuhk01(manual_dir: str, masks_dir: str | None = None) -> dict[str, list[Record]]:
  """Splits ``train`` (every image: CUHK01 as a labelled source), ``cam_a`` (images 001-002 of each
  person) and ``cam_b`` (003-004): CUHK01 as a two-camera target."""
  _require_root(manual_dir, CUHK01_ROOT, "CUHK01 campus folder (PPPPNNN.png)")

  def camera_of(m: re.Match, path: str) -> int:
    shot = int(m.group(2))
    if not 1 <= shot <= 4:
      raise DatasetLayoutError(f"file {path!r}: image number {shot} outside 001..004 (001-002 camera A, 003-004 B)")
    return 1 if shot <= 2 else 2

  everything = _scan_folder(manual_dir, CUHK01_ROOT, CUHK01_NAME, "PPPPNNN.png", masks_dir, camera_of)
  bad = [r for r in everything if r.person_id <= 0]
  if bad:
    raise DatasetLayoutError(f"file {bad[0].path!r}: person id 0000; CUHK01 numbers its people from 0001")
  splits = {
    "train": everything,
    "cam_a": [r for r in everything if r.camera_id == 1],
    "cam_b": [r for r in everything if r.camera_id == 2],
  }
  _check_paired(splits, manual_dir, "CUHK01")
  return splits
