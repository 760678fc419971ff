"""Viewpoint groups: the tables, parsing, the keystone statistic, groups derived from masks."""

import os
import re

import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.data import layouts, viewpoints


def test_group_tables_cover_every_camera_of_every_dataset():
  table = viewpoints.load_table()
  cameras = {"market1501": 6, "dukemtmc_reid": 8, "prid2011": len(layouts.PRID_CAMERAS), "viper": 2, "cuhk01": 2}
  for name, count in cameras.items():
    entry = table[name]
    assert entry["cameras"] == list(range(1, count + 1)) and entry["source"]
    if entry["groups"] != "derived":
      assert sorted(int(c) for c in entry["groups"]) == entry["cameras"]
  # The layouts accept exactly those camera ids (Market c1–c6, Duke c1–c8).
  assert layouts.MARKET_NAME.match("0002_c6s1_000451_03.jpg") and layouts.DUKE_NAME.match("0001_c8_f0046182.jpg")


def test_group_specs_parse_and_bad_ones_name_the_field():
  assert viewpoints.parse("none") == "none" and viewpoints.parse(" table ") == "table"
  assert viewpoints.parse("low=1,2,6;high=3,4,5") == {"low": (1, 2, 6), "high": (3, 4, 5)}
  for bad in ("low", "low=;high=2", "low=a", "low=1;low=2", ""):
    with pytest.raises(ValueError, match=re.escape("config.data.viewpoint_groups")):
      viewpoints.parse(bad)
  with pytest.raises(ValueError, match=r"leave out cameras \[3\]"):
    viewpoints.check_cover({"low": (1,), "high": (2,)}, [1, 2, 3], "market1501")
  with pytest.raises(ValueError, match="camera 2 is in both"):
    viewpoints.check_cover({"low": (1, 2), "high": (2,)}, [1, 2], "market1501")


def test_keystone_statistic_and_the_largest_gap_by_hand():
  mask = np.zeros((8, 6), np.uint8)
  mask[0:2, 1:5] = 255  # top quarter of an 8-row person: width 4
  mask[2:6, 2:4] = 255
  mask[6:8, 2:3] = 255  # bottom quarter: width 1
  assert viewpoints.mask_keystone(mask) == pytest.approx(4.0)
  assert np.isnan(viewpoints.mask_keystone(np.zeros((4, 4))))
  assert viewpoints.split_at_largest_gap({1: 0.50, 2: 0.55, 3: 0.90, 4: 0.52}) == {"low": (1, 2, 4), "high": (3,)}
  # No gap reaches the minimum: one viewpoint, not a group cut at noise.
  assert viewpoints.split_at_largest_gap({1: 0.50, 2: 0.52, 3: 0.54, 4: 0.51}) == {"all": (1, 2, 3, 4)}
  assert viewpoints.split_at_largest_gap({1: 0.5, 2: 0.58}, min_gap=0.05) == {"low": (1,), "high": (2,)}
  assert viewpoints.split_at_largest_gap({5: 0.5}) == {"all": (5,)}


def test_derived_groups_recover_the_synthetic_camera_heights(two_heights):
  out, meta = two_heights
  records = layouts.scan_market1501(
    os.path.join(out, "source"), layouts.default_masks_dir(os.path.join(out, "source"))
  )["train"]
  groups, scores = viewpoints.derive_groups([r.mask_path for r in records], [r.camera_id for r in records])
  truth = viewpoints.synthetic_groups(out)
  assert truth == {"low": (1, 2), "high": (3, 4)}
  assert meta["source_viewpoints"] == {"1": "low", "2": "low", "3": "high", "4": "high"}
  assert groups == truth, scores
  gaps = sorted(scores.values())
  assert gaps[2] - gaps[1] > viewpoints.MIN_GROUP_GAP > max(gaps[1] - gaps[0], gaps[3] - gaps[2])


def test_high_source_cameras_see_the_central_view_and_their_truths_are_relative_to_it(two_heights):
  out, meta = two_heights
  from sagan_jax.experiments import paired

  p = paired.load(out, (32, 16), "train")
  views = meta["paired"]["viewpoints"]["train"]
  assert set(views) == {"low", "high"}
  central = np.asarray(meta["central_homography"])
  for h_set, h_central, view in zip(p.h_true, p.h_central, views):
    for h, h_view in zip(h_set, meta["view_homographies"]):
      expected = np.asarray(h_view) if view == "low" else np.linalg.inv(central) @ np.asarray(h_view)
      np.testing.assert_allclose(h, expected, atol=1e-5)
    np.testing.assert_allclose(h_central, central if view == "low" else np.eye(3), atol=1e-6)
  # In the benchmark's unit (the central view's change), the identity warp scores 0 against the
  # central truth on the high images, 1 on the low ones.
  from sagan_jax import fidelity

  identity = jnp.broadcast_to(jnp.asarray(fidelity.CORNERS), (len(views), 4, 2))
  error = np.asarray(
    fidelity.corner_viewpoint_error(identity, fidelity.map_corners(jnp.asarray(p.h_central)), p.reference)
  )
  low = np.asarray([v == "low" for v in views])
  np.testing.assert_allclose(error[~low], 0, atol=1e-6)
  np.testing.assert_allclose(error[low], 1, rtol=1e-5)
