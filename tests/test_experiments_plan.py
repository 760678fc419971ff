"""The run's plan: grouped adaptations, leak-free PRID2011, `train.py --plan`, grouped and PRID runs end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sagan_jax.data import layouts, two_camera
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import plan as plan_lib
from sagan_jax.experiments import stages
from sagan_jax.experiments.datasets import Datasets

from helpers import (
  ROOT,
  TWO_HEIGHTS,
  make_prid_tree,
  read_metrics,
  tiny_config,
)


def _prid_config(tmp_path, source_dir, mode):
  c = config_lib.paper_config("t2prid", "market", "prid")
  c.data.source.manual_dir = source_dir
  c.data.target.manual_dir = str(tmp_path / "prid")
  c.data.data_dir = str(tmp_path / "tfds")
  c.data.masks = "none"  # the plan reads labels only
  c.data.viewpoint_groups = "low=1,2;high=3,4"
  c.data.target_adaptation = mode
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
  made = plan_lib.build(c, Datasets(c), config_lib.check(c))
  plan_lib.check_leak_free(made)
  j = made.as_json()
  splits = two_camera.load_splits()
  for a in j["adaptations"]:
    assert a["evaluated_splits"], a["name"]
    for k in a["evaluated_splits"]:
      queries = {q for e in j["evaluations"] if e["split"] == k for q in e["query_ids"]}
      assert queries and not set(a["target_ids"]) & queries
      assert set(splits[k]["test"]) >= queries
    assert {a["group"] for a in j["adaptations"]} == {"low", "high"}
  if mode == "per_split":
    assert len(j["adaptations"]) == 2 * two_camera.NUM_SPLITS and len(j["ide_models"]) == two_camera.NUM_SPLITS
    assert made.evaluated_splits() == list(range(two_camera.NUM_SPLITS))
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
  made = plan_lib.Plan((), [adaptation], {"": ["a"]}, [evaluation], {"all": (1,)}, "", [], 3)
  with pytest.raises(plan_lib.LeakError, match=r"split1_a2b ranks identities \[6\]"):
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
  assert "translation" not in result  # eval.translation_report is off in the tiny config
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
  c.data.target_adaptation, c.data.target_split = "one_split", 4
  c.sagan_train.update(steps=1, checkpoint_every=1, sample_every=1, fidelity_every=1)
  workdir = str(tmp_path / "run")
  stages.train(c, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    result = json.load(f)
  assert result["protocol"] == "two_camera" and result["settings"]["evaluated_splits"] == [4]
  for direction in two_camera.DIRECTIONS:
    assert [t["split"] for t in result["tables"][direction]["splits"]] == [4]
    assert result["tables"][direction]["mean"]["R-1"] == result["tables"][direction]["splits"][0]["R-1"]
  assert "not evaluated, as the adaptation saw their test identities" in result["settings"]["notes"][0]
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  assert "Splits evaluated: 4." in text and "split 0 (" in text
