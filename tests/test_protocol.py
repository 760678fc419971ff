"""The paper's protocol: viewpoint groups, leak-free PRID2011 adaptation, CycleGAN as published, the IDE's
initialisation, and ``train.py --plan``."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import losses
from sagan_jax.data import layouts, prid, synthetic, viewpoints
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import plan as plan_lib
from sagan_jax.experiments import stages
from sagan_jax.experiments.datasets import Datasets
from sagan_jax.sagan import SAGAN
from sagan_jax.sagan import steps as sagan_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from test_data import make_prid_tree  # noqa: E402  (from tests/, put on the path above)
from test_experiments import read_metrics, tiny_config  # noqa: E402

TWO_HEIGHTS = synthetic.BenchmarkSpec(
  height=64,
  width=32,
  train_ids=10,
  test_ids=6,
  num_cameras=4,
  images_per_camera=3,
  distractors=2,
  junk=1,
  seed=5,
  paired_images=24,
  source_high_cameras=2,
)


@pytest.fixture(scope="module")
def two_heights(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("two_heights"))
  return out, synthetic.generate(out, TWO_HEIGHTS)


# --------------------------------------------------------------------------------------------------
# Viewpoint groups.


def test_group_tables_cover_every_camera_of_every_dataset():
  table = viewpoints.load_table()
  cameras = {"market1501": 6, "dukemtmc_reid": 8, "prid2011": len(layouts.PRID_CAMERAS)}
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


def test_high_source_cameras_see_the_target_view_and_their_truth_is_unwarped(two_heights):
  out, meta = two_heights
  from sagan_jax.experiments import paired

  p = paired.load(out, (32, 16))
  views = meta["paired"]["viewpoints"]
  assert set(views) == {"low", "high"}
  for h, view in zip(p.h_true, views):
    expected = np.asarray(meta["view_homography"]) if view == "low" else np.eye(3)
    np.testing.assert_allclose(h, expected, atol=1e-6)
  # In the benchmark's unit (its view change), the identity warp scores 0 on the high images, 1 on the
  # low ones, and their share over the whole set.
  from sagan_jax import fidelity

  identity = jnp.broadcast_to(jnp.asarray(fidelity.CORNERS), (len(views), 4, 2))
  error = np.asarray(
    fidelity.corner_viewpoint_error(identity, fidelity.map_corners(jnp.asarray(p.h_true)), p.reference)
  )
  low = np.asarray([v == "low" for v in views])
  np.testing.assert_allclose(error[~low], 0, atol=1e-6)
  np.testing.assert_allclose(error[low], 1, rtol=1e-5)
  # Pooled without a reference, the set's identity distance scores 1 on average.
  pooled = fidelity.corner_viewpoint_error(identity, fidelity.map_corners(jnp.asarray(p.h_true)))
  assert float(np.mean(pooled)) == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------------------------------
# Plans: grouped adaptations, leak-free PRID2011.


def _prid_config(tmp_path, source_dir, mode):
  c = config_lib.paper_config("t2prid", "market", "prid")
  c.data.source.manual_dir = source_dir
  c.data.target.manual_dir = str(tmp_path / "prid")
  c.data.data_dir = str(tmp_path / "tfds")
  c.data.masks = "none"  # the plan reads labels only
  c.data.viewpoint_groups = "low=1,2;high=3,4"
  c.data.prid_adaptation = mode
  c.ide.pretrained = "none"
  return c


@pytest.fixture(scope="module")
def prid_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("prid_plan")
  make_prid_tree(str(root / "prid"))
  return root


@pytest.mark.parametrize("mode", ["per_split", "one_split"])
def test_prid_plans_never_evaluate_a_split_their_adaptation_saw(two_heights, prid_tree, mode):
  c = _prid_config(prid_tree, os.path.join(two_heights[0], "source"), mode)
  made = plan_lib.build(c, Datasets(c), config_lib.stages_of(c))
  plan_lib.check_leak_free(made)
  j = made.as_json()
  splits = prid.load_splits()
  for a in j["adaptations"]:
    assert a["evaluated_splits"], a["name"]
    for k in a["evaluated_splits"]:
      queries = {q for e in j["evaluations"] if e["split"] == k for q in e["query_ids"]}
      assert queries and not set(a["target_ids"]) & queries
      assert set(splits[k]["test"]) >= queries
    assert {a["group"] for a in j["adaptations"]} == {"low", "high"}
  if mode == "per_split":
    assert len(j["adaptations"]) == 2 * prid.NUM_SPLITS and len(j["ide_models"]) == prid.NUM_SPLITS
    assert made.evaluated_splits() == list(range(prid.NUM_SPLITS))
    a = j["adaptations"][2 * 3]  # low group, split 3
    assert a["name"] == "low_split3" and a["target_ids"] == splits[3]["train"]
    assert a["target_images"] == 200 and a["source_cameras"] == [1, 2]
  else:
    assert len(j["adaptations"]) == 2 and made.evaluated_splits() == [0]
    assert "split 1 (" in j["notes"][0] and "test ids seen" in j["notes"][0]
  # Each evaluation's queries are its split's test ids; the a2b gallery adds cam_b's distractors 201–749.
  e = next(e for e in j["evaluations"] if e["split"] == 0 and e["direction"] == "a2b")
  assert e["query_ids"] == splits[0]["test"] and len(e["gallery_ids"]) == 100 + 549


def test_a_leaking_plan_is_caught():
  adaptation = plan_lib.Adaptation("a", "all", (1,), np.arange(3), None, 3, (5, 6), 0, "")
  evaluation = plan_lib.Evaluation("split1_a2b", 1, "a2b", (6, 7), (6, 7, 300), "")
  made = plan_lib.Plan((), [adaptation], {"": ["a"]}, [evaluation], {"all": (1,)}, "", [])
  with pytest.raises(AssertionError, match=r"split1_a2b ranks identities \[6\]"):
    plan_lib.check_leak_free(made)


def test_plan_prints_and_writes_nothing(two_heights, tmp_path):
  workdir = tmp_path / "never_written"
  out = subprocess.run(
    [
      sys.executable,
      "train.py",
      "--config=tests/tiny_config.py",
      f"--workdir={workdir}",
      f"--config.data.synthetic_dir={two_heights[0]}",
      "--plan=json",
      *(f"--config.data.synthetic_spec.{k}={v}" for k, v in TWO_HEIGHTS.__dict__.items()),
    ],
    check=False,
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  plan = json.loads(out.stdout)
  assert not workdir.exists()
  assert [a["name"] for a in plan["adaptations"]] == ["low", "high"]
  assert [a["source_cameras"] for a in plan["adaptations"]] == [[1, 2], [3, 4]]
  for a in plan["adaptations"]:
    assert {"name", "source_cameras", "source_images", "target_images", "target_ids", "evaluated_splits"} <= set(a)
  train = os.listdir(os.path.join(two_heights[0], "source", layouts.MARKET_ROOT, "bounding_box_train"))
  assert sum(a["source_images"] for a in plan["adaptations"]) == len(train)
  assert [set(e) >= {"name", "split", "query_ids", "gallery_ids"} for e in plan["evaluations"]] == [True]
  text = subprocess.run(
    [
      sys.executable,
      "train.py",
      "--config=tests/tiny_config.py",
      f"--workdir={workdir}",
      f"--config.data.synthetic_dir={two_heights[0]}",
      "--plan",
      *(f"--config.data.synthetic_spec.{k}={v}" for k, v in TWO_HEIGHTS.__dict__.items()),
    ],
    check=False,
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert text.returncode == 0 and "source group high (cameras [3, 4]" in text.stdout and not workdir.exists()


# --------------------------------------------------------------------------------------------------
# CycleGAN as published.


def test_lsgan_losses_by_hand():
  real, fake = jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])
  assert float(losses.lsgan_critic_loss(real, fake)) == pytest.approx(0.5 * ((0 + 1) / 2 + (0 + 4) / 2))
  assert float(losses.lsgan_generator_loss(fake)) == pytest.approx((1 + 1) / 2)


def test_history_pool_fills_then_swaps_half_the_time():
  pool, count = jnp.zeros((4, 1)), jnp.zeros((), jnp.int32)
  shown, pool, count = losses.query_history_pool(pool, count, jnp.array([[1.0], [2.0], [3.0]]), jax.random.key(0))
  assert shown.ravel().tolist() == [1.0, 2.0, 3.0] and pool.ravel().tolist() == [1.0, 2.0, 3.0, 0.0] and int(count) == 3
  swapped = 0
  for seed in range(40):
    full, n = jnp.array([[1.0], [2.0], [3.0], [4.0]]), jnp.array(4)
    new = jnp.array([[10.0], [20.0]])
    s, p, n2 = losses.query_history_pool(full, n, new, jax.random.key(seed))
    s, p = np.asarray(s).ravel(), np.asarray(p).ravel()
    # Nothing is lost or invented: what was shown plus what is kept is what was there plus what came.
    assert sorted(s.tolist() + p.tolist()) == sorted([1.0, 2.0, 3.0, 4.0, 10.0, 20.0]) and int(n2) == 4
    swapped += int(np.sum(s < 10))
  assert 25 <= swapped <= 55  # about half of the 80 fakes were swapped for a stored one


def test_cyclegan_variant_is_cyclegan_and_steps_d_once_per_g_with_the_pool(tiny_sagan_config):
  c = tiny_sagan_config("cyclegan")
  assert (c.gan_loss, c.lipschitz, c.n_critic, c.history_pool, c.critic_norm) == ("lsgan", "none", 1, 50, "instance")
  assert (c.learning_rate, c.adam_b1, c.adam_b2, c.lr_schedule) == (2e-4, 0.5, 0.999, "linear_decay")
  assert not c.generator_residual and c.generator_pointwise_features == 0
  model = SAGAN(c, train_steps=4)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
  state = sagan_steps.create_state(model, 0, mesh)
  assert int(state.pools["D1"]["count"]) == 0 and state.pools["D1"]["images"].shape == (50, 32, 16, 4)
  # Without a pool the state keeps the layout earlier checkpoints were written in.
  plain = sagan_steps.create_state(SAGAN(tiny_sagan_config("sagan")), 0)
  assert plain.pools == {} and set(plain.opt_state) == {"generator", "critic", "sianet"}
  critic_step, generator_step = sagan_steps.make_steps(model, mesh)
  rng = np.random.default_rng(0)
  batch = lambda: {
    k: jnp.asarray(rng.uniform(-1, 1, (2, 32, 16, 3 if k in "xy" else 1)), jnp.float32)
    for k in ("x", "x_mask", "y", "y_mask")
  }
  for _ in range(3):  # the stage runs n_critic = 1 critic step per generator step
    for _ in range(c.n_critic):
      state, critic_metrics = critic_step(state, batch())
    state, _ = generator_step(state, batch())
  assert int(state.critic_steps) == int(state.step) == 3
  assert int(state.pools["D1"]["count"]) == 6 and int(state.pools["D2"]["count"]) == 6
  assert set(critic_metrics) == {"critic/D1/lsgan", "critic/D2/lsgan", "critic/loss"}
  stored = np.asarray(state.pools["D1"]["images"])
  assert np.all(np.abs(stored[:6]).sum(axis=(1, 2, 3)) > 0) and not np.any(stored[6:])
  np.testing.assert_array_equal(stored[:6, ..., 3], 1.0)  # RGB-only CycleGAN: the mask channel is ones


def test_cyclegan_learning_rate_decays_linearly_over_the_second_half(tiny_sagan_config):
  model = SAGAN(tiny_sagan_config("cyclegan"), train_steps=10)
  tx = model.optimizers()["generator"]
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  sizes = []
  for _ in range(10):
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    sizes.append(-float(updates["w"]))  # Adam's first step of a constant gradient is the rate itself
  np.testing.assert_allclose(sizes[:6], 2e-4, rtol=1e-3)
  np.testing.assert_allclose(sizes[6:], [2e-4 * (1 - k / 5) for k in range(1, 5)], rtol=1e-3)


# --------------------------------------------------------------------------------------------------
# The IDE's initialisation.


def test_a_paper_config_without_imagenet_weights_stops_at_start(tmp_path):
  c = config_lib.paper_config("market2prid", "market", "prid")
  with pytest.raises(ValueError, match=r"convert_torchvision.*--config\.ide\.pretrained=none"):
    config_lib.stages_of(c)
  c.ide.pretrained = str(tmp_path / "missing")
  with pytest.raises(ValueError, match="is not a folder"):
    config_lib.stages_of(c)
  c.ide.pretrained = "none"
  assert "ide" in config_lib.stages_of(c)
  c.ide.pretrained, c.stages = "", "sagan,translate"
  assert config_lib.stages_of(c) == ("sagan", "translate")  # no IDE stage, nothing to initialise


# --------------------------------------------------------------------------------------------------
# The grouped pipeline end to end.


def test_grouped_pipeline_runs_end_to_end_on_the_two_height_source(two_heights, tmp_path):
  c = tiny_config(two_heights[0])
  c.data.synthetic_spec.update(TWO_HEIGHTS.__dict__)
  c.sagan_train.update(steps=2, checkpoint_every=2, sample_every=2, fidelity_every=2)
  workdir = str(tmp_path / "run")
  stages.train(c, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    result = json.load(f)
  assert result["settings"]["viewpoint_groups"] == {"low": [1, 2], "high": [3, 4]}
  assert result["settings"]["ide_init"] == "from scratch"
  assert set(result["fidelity"]) >= {"pixel_error", "viewpoint_error"}
  counts = {}
  for group, untrained in (("low", 1.0), ("high", 0.0)):  # every STM starts at the identity
    assert os.path.isfile(os.path.join(workdir, "sagan", group, "fidelity.json"))
    step0 = read_metrics(os.path.join(workdir, "sagan", group, "metrics.jsonl"))[0]["fidelity/viewpoint_error"]
    assert step0 == pytest.approx(untrained, abs=1e-5)
    with open(os.path.join(workdir, "translated", group, "labels.json")) as f:
      labels = json.load(f)
    assert set(labels["camera_id"]) == set(result["settings"]["viewpoint_groups"][group])
    counts[group] = len(labels["names"])
  train = os.listdir(os.path.join(two_heights[0], "source", layouts.MARKET_ROOT, "bounding_box_train"))
  assert sum(counts.values()) == len(train)  # M = 1: the union is the whole source split, once
  with open(os.path.join(workdir, "plan.json")) as f:
    assert [a["name"] for a in json.load(f)["adaptations"]] == ["low", "high"]
  with open(os.path.join(workdir, "results.md")) as f:
    assert "low" in f.read()


def test_one_split_prid_adaptation_end_to_end_evaluates_only_the_split_it_did_not_see(two_heights, prid_tree, tmp_path):
  c = tiny_config(two_heights[0])
  c.data.synthetic_dir = ""
  c.data.source.name, c.data.target.name = "market1501", "prid2011"
  c.data.source.manual_dir = os.path.join(two_heights[0], "source")
  c.data.target.manual_dir = str(prid_tree / "prid")
  c.data.data_dir = str(tmp_path / "tfds")
  c.data.masks = "none"
  c.data.viewpoint_groups = "none"
  c.data.prid_adaptation, c.data.prid_adaptation_split = "one_split", 4
  c.sagan_train.update(steps=1, checkpoint_every=1, sample_every=1, fidelity_every=1)
  workdir = str(tmp_path / "run")
  stages.train(c, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    result = json.load(f)
  assert result["protocol"] == "prid2011" and result["settings"]["evaluated_splits"] == [4]
  for direction in prid.DIRECTIONS:
    assert [t["split"] for t in result["tables"][direction]["splits"]] == [4]
    assert result["tables"][direction]["mean"]["R-1"] == result["tables"][direction]["splits"][0]["R-1"]
  assert "not evaluated, as the adaptation saw their test identities" in result["settings"]["notes"][0]
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  assert "PRID2011 splits evaluated: 4." in text and "split 0 (" in text
