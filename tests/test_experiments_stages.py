"""train.py's stages end to end on a tiny synthetic benchmark: outputs, resume, SIGTERM, non-finite losses,
two processes."""

import copy
import glob
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from sagan_jax import errors, preemption, progress
from sagan_jax import workdir as workdir_lib
from sagan_jax.data import synthetic
from sagan_jax.experiments import evaluation, monitor, stages

from helpers import (
  ROOT,
  read_metrics,
  tiny_config,
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def end_to_end(bench, tmp_path_factory):
  """One complete run of the tiny config with M = 3 (in this process, 4 devices): (config, workdir)."""
  config = tiny_config(bench)
  config.sagan.num_codes = 3
  config.eval.translation_report = True  # the tiny config leaves it out elsewhere
  workdir = str(tmp_path_factory.mktemp("end_to_end") / "run")
  stages.train(config, workdir)
  return config, workdir


def test_end_to_end_run_writes_every_output_and_reruns_as_a_no_op(end_to_end, capsys):
  config, workdir = end_to_end
  for path in (
    "config.json",
    "results.json",
    "results.md",
    "sagan/metrics.jsonl",
    "ide/metrics.jsonl",
    "sagan/samples/step_0000002.png",
    "sagan/samples/step_0000004.png",
    "translated/labels.json",
  ):
    assert os.path.isfile(os.path.join(workdir, path)), path
  assert any(f.startswith("events") for _, _, fs in os.walk(os.path.join(workdir, "tensorboard")) for f in fs)
  with open(os.path.join(workdir, "translated", "labels.json")) as f:
    labels = json.load(f)
  assert len(labels["names"]) == 3 * labels["meta"]["source_images"]  # M = 3 images per source image
  assert labels["person_id"][:3] == [labels["person_id"][0]] * 3
  from PIL import Image

  grid = np.asarray(Image.open(os.path.join(workdir, "sagan/samples/step_0000004.png")))
  # 4 rows of 4× crops (32×16 → 128×64, 8-pixel gaps) under a 14-pixel heading row; 9 columns:
  # source, 3 × (S1(x), G1(S1(x))), ground truth, target.
  assert grid.shape == (14 + 4 * (128 + 8) + 8, 9 * (64 + 8) + 8, 3)
  with open(os.path.join(workdir, "results.json")) as f:
    result = json.load(f)
  # Fidelity on the held-out paired images (logged before training and at log steps), in-sample and
  # trivial references beside it, carried into the results.
  fidelity = result["fidelity"]
  scores = {"pixel_error", "detail_error", "viewpoint_error", "coverage_error", "coverage_error_one_code"}
  scores |= {"precision_error", "code_diversity"}
  assert scores <= set(fidelity) and scores <= set(fidelity["train"]) and fidelity["codes"] == 10
  assert len(fidelity["viewpoint_error_per_code"]) == 10
  assert fidelity["viewpoint_error"] == pytest.approx(np.mean(fidelity["viewpoint_error_per_code"]))
  assert fidelity["coverage_error"] <= fidelity["coverage_error_one_code"] + 1e-6  # more codes cover at least as well
  assert all(np.isfinite(fidelity[k]) and fidelity[k] >= 0 for k in scores)
  refs = fidelity["references"]
  assert {"flat_colour", "flat_colour_blur", "constant", "true_colours", "true_warp"} <= set(refs)
  assert all({"pixel_error", "detail_error"} <= set(refs[k]) for k in refs if k != "best_single_warp")
  assert 0 < refs["best_single_warp"]["coverage_error"] < 1
  metrics = read_metrics(os.path.join(workdir, "sagan", "metrics.jsonl"))
  assert metrics[0]["fidelity/viewpoint_error"] == 1.0  # every STM starts at the identity
  assert np.isfinite(metrics[4]["fidelity/pixel_error"])
  # The translation report, which needs no ground truth.
  t = result["translation"]
  assert 0 <= t["identity_rank1"] <= 1 and 0 < t["identity_rank1_raw"] <= 1
  assert t["identity_kept"] == pytest.approx(t["identity_rank1"] / t["identity_rank1_raw"])
  assert t["identity_kept_recoloured"] >= 0  # the benchmark ships masks: the reference's recolouring check
  assert t["domain_gap"] >= 0 and t["domain_gap_raw"] >= 0
  assert t["artifact_energy"] > 0 and t["images"]["translated"] == 3 * t["images"]["source"]
  assert t["framing_gap"] >= 0 and t["framing_gap_raw"] > 0  # the benchmark's masks: S1's warps against the target's
  assert result["settings"]["ide_steps"] == config.ide.epochs * max(1, t["images"]["source"] // config.ide.batch_size)
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  assert "coverage_error" in text and "identity kept" in text and "best single warp" in text
  assert f"framing gap {t['framing_gap']:.4f} (untranslated source {t['framing_gap_raw']:.4f})" in text
  table = result["tables"]["query_gallery"]
  assert 0 <= table["mAP"] <= 100 and table["R-1"] <= table["R-5"] <= table["R-10"]
  assert table["num_queries"] > 0
  stamps = {p: os.stat(os.path.join(workdir, p)).st_mtime_ns for p in ("translated/labels.json", "sagan/metrics.jsonl")}
  capsys.readouterr()
  stages.train(config, workdir)  # every training stage is complete: only the evaluation runs again
  summaries = re.findall(r"^stage (\w+): (.*)$", capsys.readouterr().out, re.M)
  # The benchmark ships its masks, so the masks stage says why it did nothing rather than "done (0 s)".
  assert summaries[0] == ("masks", "skipped (config.data.masks='data': the datasets bring their own)")
  assert [s for s, _ in summaries[1:]] == ["sagan", "translate", "ide", "evaluate"]
  assert all(re.fullmatch(r"done \(\d+ s\)", summary) for _, summary in summaries[1:])
  assert {p: os.stat(os.path.join(workdir, p)).st_mtime_ns for p in stamps} == stamps
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["tables"] == result["tables"]


def test_ide_repeats_train_one_seed_each_and_results_report_their_mean(end_to_end, tmp_path, monkeypatch):
  """eval.ide_repeats=2 on a finished run: the first training is the run's own (same seed, kept), the
  second another seed; results.json's tables are the leaf-wise mean of the two, each one beside them,
  ranked with one compiled feature function."""
  from sagan_jax.reid import ide

  made = []
  real = ide.make_feature_fn
  monkeypatch.setattr(ide, "make_feature_fn", lambda *a, **k: made.append(1) or real(*a, **k))
  config, workdir = end_to_end
  run_dir = tmp_path / "run"
  shutil.copytree(workdir, run_dir, ignore=shutil.ignore_patterns("results.*", "tensorboard"))
  with open(os.path.join(workdir, "results.json")) as f:
    single = json.load(f)
  config = copy.deepcopy(config)
  config.stages = "ide,evaluate"
  config.eval.ide_repeats = 2
  config.eval.translation_report = False
  stages.train(config, str(run_dir))
  first = read_metrics(run_dir / "ide" / "metrics.jsonl")
  second = read_metrics(run_dir / "ide_repeat1" / "metrics.jsonl")
  assert first == read_metrics(pathlib.Path(workdir) / "ide" / "metrics.jsonl")  # not retrained
  assert sorted(first) == sorted(second)
  assert any(first[s]["loss"] != second[s]["loss"] for s in first)  # another seed
  with open(run_dir / "results.json") as f:
    result = json.load(f)
  assert result["settings"]["ide_repeats"] == 2
  assert len(made) == 1  # both trainings share the one IDE's compiled extractor
  each = [t["query_gallery"] for t in result["tables_per_training"]]
  assert each[0] == single["tables"]["query_gallery"]
  for key in ("R-1", "R-5", "mAP"):
    assert result["tables"]["query_gallery"][key] == pytest.approx((each[0][key] + each[1][key]) / 2)
  md = (run_dir / "results.md").read_text()
  assert "mean of 2 IDE trainings" in md
  assert f"{each[1]['R-1']:.1f} / {each[1]['mAP']:.1f}" in md


def _bench_on_finished_run(module: str, bench, workdir) -> subprocess.CompletedProcess:
  """``python -m bench.MODULE`` with the end-to-end run's own flags; it must exit cleanly."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
  flags = ["--config=tests/tiny_config.py", f"--config.data.synthetic_dir={bench}", "--config.sagan.num_codes=3"]
  flags += ["--config.eval.translation_report=True", f"--workdir={workdir}"]
  command = [sys.executable, "-m", f"bench.{module}", *flags]
  out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def test_critic_overfit_benchmark_reads_the_finished_run(end_to_end, bench):
  """`bench/critic_overfit.py` (here, where a finished run is at hand): the target adapted on all its
  training images, so its query and gallery images are the unseen ones; one row of finite figures."""
  config, workdir = end_to_end
  with stages.opened(config, workdir) as run:
    seen = len(run.plan.target_source)
    builder = run.datasets.builder("target")
    unseen = sum(len(builder.as_data_source(split)) for split in ("query", "gallery"))
    sources = len(run.datasets.source_train())
  out = _bench_on_finished_run("critic_overfit", bench, workdir)
  (row,) = [line for line in out.stdout.splitlines() if line.startswith("| sagan |")]
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert [int(c) for c in cells[1:4]] == [seen, unseen, sources]
  means = [float(c.split(" ± ")[0]) for c in cells[4:7]]
  assert all(np.isfinite(means)) and np.isfinite(float(cells[7])) and np.isfinite(float(cells[8]))


def test_identity_decomposition_benchmark_reads_the_finished_run(end_to_end, bench):
  """`bench/identity_decomposition.py` on the finished run: nine rows, the warp alone, the
  translation, S1's mean warp and the reframed source among them, every figure finite and each rank-1
  within [0, 1]; the reframing map brings the source's mean framing to the target's, and the framing
  table ends on the target against itself."""
  _, workdir = end_to_end
  out = _bench_on_finished_run("identity_decomposition", bench, workdir)
  identity, framing = out.stdout.split("| masks |")
  identity, along = identity.split("\n| α |")
  rows = [line for line in identity.splitlines() if line.startswith("| ") and not line.startswith("| images")]
  assert len(rows) == 9 and rows[0].startswith("| S1(x)") and rows[1].startswith("| G1(S1(x))")
  assert rows[6].startswith("| S1's mean warp, every image |") and rows[7].startswith("| G1 on S1's mean warp |")
  assert rows[8].startswith("| the source reframed (one affine map) |")
  eight = r"( [+-][0-9.]+,){7} [+-][0-9.]+;"  # the sl(3) parameters' means
  assert re.search(r"S1's parameters \(homography, `geometry`'s layout\): mean" + eight, identity)
  framed = {r.split("|")[1].strip(): [float(c) for c in r.split("|")[2:-1]] for r in framing.splitlines()[2:] if r}
  assert list(framed) == ["source", "S1(x)", "S1's mean warp", "the source reframed", "target"]
  assert framed["target"][-1] == pytest.approx(0.0, abs=1e-6) and len(framed["target"]) == 7  # 5, keystone, gap
  assert all(np.isfinite(row[5]) and row[5] > 0 for row in framed.values())  # the keystone ratio's median
  np.testing.assert_allclose(framed["the source reframed"][1:5], framed["target"][1:5], atol=0.03)
  for row in rows:
    cells = [c.strip() for c in row.strip("|").split("|")]
    kept, rank1, cross, energy = (float(c) for c in cells[2:6])
    assert 0.0 <= rank1 <= 1.0 and np.isfinite([kept, cross, energy]).all()
    assert np.isfinite(float(cells[1].split(" (raw ")[0]))
  assert re.search(r"the colour map explains -?[0-9.]+ of its variance", out.stdout)
  # Along G1's change: each end repeats a row above (the warp alone, the translation, the person kept).
  cells = lambda row: [c.strip() for c in row.strip("|").split("|")]
  table = {cells(r)[0]: cells(r) for r in rows}
  along_rows = map(cells, along.splitlines()[2:7])
  blends = {float(r[0]): [tuple(map(float, c.split(" / "))) for c in r[1:]] for r in along_rows}
  assert list(blends) == [0.0, 0.25, 0.5, 0.75, 1.0]
  for (alpha, column), name in {
    (0.0, 0): "S1(x): the warp alone",
    (1.0, 0): "G1(S1(x)): the translation",
    (0.0, 1): "person kept, background by G1",
    (1.0, 1): "G1(S1(x)): the translation",
  }.items():
    gap, raw = (float(v) for v in table[name][1].rstrip(")").split(" (raw "))
    assert blends[alpha][column][1] == float(table[name][2])  # the same images: the same identities kept
    assert blends[alpha][column][0] == pytest.approx(gap / raw, abs=0.06 * (1 + gap / raw) / raw)  # gaps shown to 0.1
  window = r"hold (at no level scored|for α in \[[0-9.]+, [0-9.]+\]); "
  pattern = window + r"the two shortfalls are equal (never|at α = [0-9.]+)\."
  assert re.search(pattern, along)
  assert out.stdout.startswith("Reference IDE seed 0. ")  # the report's first reference unless told otherwise


def test_detail_decomposition_benchmark_reads_the_finished_run(end_to_end, bench):
  """`bench/detail_decomposition.py` on the finished run: its first row is the run's own held-out
  `fidelity` (the same codes, the same instrument), the floor of true warps and colours sits below
  every other row, and the truth's person on G1's background scores 0 on both (L1 and the
  person-weighted SSIM windows read the person only), so G1's person alone scores as G1's image."""
  _, workdir = end_to_end
  out = _bench_on_finished_run("detail_decomposition", bench, workdir)
  rows, codes, views, back = {}, [], [], []
  lines = out.stdout.splitlines()
  s2_table = next(i for i, line in enumerate(lines) if line.startswith("| S2 on the truth"))
  for line in lines[:s2_table]:
    if line.startswith("| ") and not line.startswith(("| translation", "| code", "| view |")):
      name, *cells = (c.strip() for c in line.strip("|").split("|"))
      if name.isdigit():
        codes.append([float(c) for c in cells])  # ‖z‖, detail, nearest view, then one per view
      elif name.startswith("view "):
        views.append([float(c) for c in cells])
      else:
        rows[name] = tuple(float(c) for c in cells)
  assert len(rows) == 7
  # The true views' distances: zero to themselves, symmetric, and apart.
  views = np.array(views)
  assert views.shape[0] == views.shape[1] >= 2
  np.testing.assert_allclose(np.diag(views), 0.0, atol=1e-3)
  np.testing.assert_allclose(views, views.T, atol=2e-3)
  assert views[~np.eye(len(views), dtype=bool)].min() > 0.05
  # S2's inverted warp of each rendered view: its errors to two views differ by at most their
  # distance (the triangle inequality, corner by corner, then averaged alike).
  for line in lines[s2_table + 2 :]:
    if line.startswith("| "):
      back.append([float(c) for c in line.strip("|").split("|")][1:])
  back = np.array(back)
  assert back.shape == views.shape and back.min() >= 0
  for row in back:
    assert np.all(np.abs(row[:, None] - row[None, :]) <= views + 2e-3)
  # The nearest view per image is never further, on average, than the best single view, and that
  # view's error lies between the offset the images share and the offset plus their spread.
  assert all(len(c) == 5 + len(views) for c in codes) and all(c[0] > 0 for c in codes)
  for c in codes:
    best, offset, spread = min(c[3:-2]), c[-2], c[-1]
    assert c[2] <= best + 1e-3 and offset - 1e-3 <= best <= offset + spread + 1e-3 and spread >= 0
  codes = [c[1:3] for c in codes]
  # Per code: the codes' detail averages to the warps' row, their nearest-view errors to precision_error.
  assert len(codes) == 10
  assert np.mean([c[0] for c in codes]) == pytest.approx(rows["S1's warps, true colours"][1], abs=1e-3)
  with open(os.path.join(workdir, "results.json")) as f:
    fidelity = json.load(f)["fidelity"]
  translation = rows["G1(S1(x)): the translation"]
  assert translation == pytest.approx((fidelity["pixel_error"], fidelity["detail_error"]), abs=2e-3)
  assert np.mean([c[1] for c in codes]) == pytest.approx(fidelity["precision_error"], abs=1e-3)
  floor = rows["true warps, true colours"]
  assert all(floor[0] <= r[0] and floor[1] <= r[1] for name, r in rows.items() if not name.startswith("central"))
  kept_person = rows["central view: the truth's person, G1's background"]
  assert kept_person == (0.0, 0.0)
  g1_person = rows["central view: G1's person, the truth's background"]
  assert g1_person == pytest.approx(rows["central view: true warp, G1"], abs=2e-3) and g1_person[1] > 0.0


@pytest.mark.parametrize("region, strength", [("person", 1.0), ("frame", 0.5)])
def test_translating_a_finished_run_with_another_region_scores_its_fidelity_again(
  end_to_end, tmp_path, region, strength
):
  """`translate.region` or `translate.strength` changed on a finished run (`--allow_config_change`):
  the translate stage rescores ``sagan/fidelity.json`` on the composite the IDE will learn from. Its
  warps, and so every geometric score, are the frame's; its image scores are not; ``frame`` holds
  the run's own held-out scores; a second pass leaves the file alone."""
  config, done = copy.deepcopy(end_to_end[0]), pathlib.Path(end_to_end[1])
  workdir = tmp_path / "run"
  shutil.copytree(done, workdir, ignore=shutil.ignore_patterns("translated", "ide*", "results.*", "tensorboard"))
  config.stages, config.translate.region, config.translate.strength = "translate", region, strength
  stages.train(config, str(workdir), allow_config_change=True)
  with open(done / "sagan" / "fidelity.json") as f:
    before = json.load(f)
  path = workdir / "sagan" / "fidelity.json"
  with open(path) as f:
    after = json.load(f)
  assert before["region"] == "frame" and after["region"] == region
  assert "strength" not in before and after.get("strength", 1.0) == strength
  with open(workdir / "translated" / "labels.json") as f:
    assert json.load(f)["meta"]["strength"] == strength
  assert after["frame"]["pixel_error"] == before["pixel_error"]
  assert after["frame"]["detail_error"] == before["detail_error"]
  for k in ("viewpoint_error", "coverage_error", "precision_error", "code_diversity"):
    assert after[k] == before[k] and after["train"][k] == before["train"][k], k
  assert after["pixel_error"] != before["pixel_error"] and after["detail_error"] != before["detail_error"]
  assert after["references"] == before["references"]
  written = path.stat().st_mtime_ns
  stages.train(config, str(workdir), allow_config_change=True)
  assert path.stat().st_mtime_ns == written


def _evaluate_only_copy(end_to_end, tmp_path):
  """The end-to-end run copied without its translations and results, set to evaluate only:
  ``(config, workdir, path of sagan/fidelity.json, its scores)``."""
  config, done = copy.deepcopy(end_to_end[0]), pathlib.Path(end_to_end[1])
  workdir = tmp_path / "run"
  shutil.copytree(done, workdir, ignore=shutil.ignore_patterns("translated", "results.*", "tensorboard"))
  config.stages, config.eval.translation_report = "evaluate", False
  path = workdir / "sagan" / "fidelity.json"
  with open(path) as f:
    return config, workdir, path, json.load(f)


def test_evaluating_a_run_scored_with_the_older_detail_error_scores_its_fidelity_again(end_to_end, tmp_path, caplog):
  """A ``sagan/fidelity.json`` from before `monitor.DETAIL_DEFINITION` (its detail_error from plain
  SSIM windows): the evaluate stage scores it again, and ``results.json`` carries today's figures,
  equal to what the run itself wrote at the end of its training."""
  config, workdir, path, current = _evaluate_only_copy(end_to_end, tmp_path)
  assert current["detail_definition"] == monitor.DETAIL_DEFINITION
  older = copy.deepcopy(current)
  del older["detail_definition"]
  older["detail_error"] = older["train"]["detail_error"] = 9.0  # stands in for the older figure
  path.write_text(json.dumps(older))
  stages.train(config, str(workdir), allow_config_change=True)
  assert "detail_definition 'ssim_windows' -> 'ssim_person_weighted'" in caplog.text
  with open(path) as f:
    assert json.load(f) == current
  with open(workdir / "results.json") as f:
    fidelity = json.load(f)["fidelity"]
  assert fidelity["detail_error"] == current["detail_error"] != 9.0
  assert fidelity["detail_definition"] == monitor.DETAIL_DEFINITION


def test_a_categorical_run_scored_with_random_codes_is_scored_again_with_every_category(end_to_end, tmp_path, caplog):
  """A fidelity.json without ``code_draw`` drew its codes at random: for normal codes that is today's
  draw (no rescoring), for categorical codes it could miss a camera, so evaluate scores it again with
  category k mod z_dim per code (`SAGAN.fixed_codes`)."""
  config, workdir, path, older = _evaluate_only_copy(end_to_end, tmp_path)
  assert older["code_draw"] == monitor.CODES_DRAWN
  del older["code_draw"]
  path.write_text(json.dumps(older))
  written = path.stat().st_mtime_ns
  stages.train(config, str(workdir), allow_config_change=True)
  assert path.stat().st_mtime_ns == written and "code_draw" not in caplog.text  # normal codes: current
  # The same GAN with categorical codes: the ten codes are e0, e1, ..., e_{z_dim-1}, e0, ... times √z_dim.
  config.sagan.code_distribution = "categorical"
  stages.train(config, str(workdir), allow_config_change=True)
  assert "code_draw 'drawn_once' -> 'categories_in_turn'" in caplog.text
  with open(workdir / "results.json") as f:
    fidelity = json.load(f)["fidelity"]
  assert fidelity["code_draw"] == monitor.CODES_IN_TURN
  # Ten codes, z_dim distinct, in turn: code k's warps are code (k mod z_dim)'s, and the first z_dim differ.
  per_code, z_dim = np.asarray(fidelity["viewpoint_error_per_code"]), config.sagan.z_dim
  assert len(per_code) == 10 and 2 <= z_dim < 10
  np.testing.assert_array_equal(per_code, per_code[np.arange(10) % z_dim])
  assert len(np.unique(per_code[:z_dim])) > 1


def test_a_run_waits_for_another_that_holds_the_shared_reference_ide(end_to_end, caplog):
  # Runs started together (the runner's --jobs) reach the report's reference IDE at once: the
  # later ones wait for the first instead of failing at their last stage.
  config, workdir = end_to_end
  [where] = glob.glob(os.path.join(config.data.synthetic_dir, synthetic.PREPARED_DIR, "reference_ide", "*"))
  held, done = threading.Event(), threading.Event()

  def holder():
    with workdir_lib.WorkdirLock(where):
      held.set()
      # Held until the run says it waits (or it ends): a run that refuses the lock fails meanwhile.
      while not done.wait(0.05) and "which holds" not in caplog.text:
        pass

  thread = threading.Thread(target=holder)
  thread.start()
  held.wait(10)
  try:
    stages.train(config, workdir)  # every training stage is done: the evaluation, with its report, runs again
  finally:
    done.set()
    thread.join()
  assert f"which holds {where}" in caplog.text
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["translation"]["identity_kept"] >= 0


def test_the_reid_loss_trains_its_own_teacher_once_per_source_apart_from_the_reference_ide(end_to_end, tmp_path):
  config, _ = end_to_end
  config = copy.deepcopy(config)
  config.stages, config.sagan.lambda_reid = "sagan", 1.0
  config.sagan_train.update(steps=2, sample_every=2, checkpoint_every=2, fidelity_every=2)
  stages.train(config, str(tmp_path / "first"))
  prepared = os.path.join(config.data.synthetic_dir, synthetic.PREPARED_DIR)
  [teacher] = glob.glob(os.path.join(prepared, "reid_teacher", "*", "checkpoints"))
  [reference] = glob.glob(os.path.join(prepared, "reference_ide", "*"))
  assert os.path.basename(os.path.dirname(teacher)) != os.path.basename(reference)
  trained_at = os.path.getmtime(teacher)
  config.seed = 1
  stages.train(config, str(tmp_path / "second"))  # another seed of the experiment: the same teacher, not retrained
  assert glob.glob(os.path.join(prepared, "reid_teacher", "*", "checkpoints")) == [teacher]
  assert os.path.getmtime(teacher) == trained_at
  for run in ("first", "second"):
    metrics = read_metrics(tmp_path / run / "sagan" / "metrics.jsonl")
    assert all(np.isfinite(metrics[step]["generator/x/reid"]) for step in (1, 2))


def test_the_report_over_two_reference_ides_is_their_mean_beside_each_ones_figures(end_to_end, tmp_path):
  """eval.reference_repeats=2 on a finished run (after the tests that expect one reference folder): the
  first reference is the run's own (seed 0, cached), so its figures are the single report's; the second
  is another network; the report holds their mean, each one's figures, and says so in results.md."""
  from sagan_jax.experiments import report

  config, workdir = end_to_end
  run_dir = tmp_path / "run"
  shutil.copytree(workdir, run_dir, ignore=shutil.ignore_patterns("results.*", "tensorboard"))
  with open(os.path.join(workdir, "results.json")) as f:
    single = json.load(f)["translation"]
  config = copy.deepcopy(config)
  config.stages, config.eval.reference_repeats = "evaluate", 2
  stages.train(config, str(run_dir))
  with open(run_dir / "results.json") as f:
    both = json.load(f)["translation"]
  first, second = both["per_reference"]
  assert (first["seed"], second["seed"]) == (0, 1) and both["reference_seeds"] == [0, 1]
  assert {k: first[k] for k in report.PER_REFERENCE} == {k: single[k] for k in report.PER_REFERENCE}
  assert second["domain_gap_raw"] != first["domain_gap_raw"]  # another network's features
  for key in report.PER_REFERENCE:
    assert both[key] == pytest.approx((first[key] + second[key]) / 2)
  assert both["artifact_energy"] == single["artifact_energy"]  # pixels only: no reference in it
  md = (run_dir / "results.md").read_text()
  assert "(the mean over 2, seeds 0, 1, 1× the IDE's epochs)" in md
  ratios = ", ".join(f"{d['domain_gap'] / d['domain_gap_raw']:.3f}" for d in (first, second))
  kept = ", ".join(f"{d['identity_kept']:.3f}" for d in (first, second))
  assert f"Per reference IDE (seeds 0, 1): domain gap / untranslated {ratios}; identity kept {kept}." in md


def test_preemption_and_crash_resume_with_identical_losses(bench, tmp_path, monkeypatch):
  config = tiny_config(bench)
  config.stages = "sagan"
  config.sagan_train.update(steps=6, checkpoint_every=4)
  stages.train(config, str(tmp_path / "straight"))
  straight = read_metrics(tmp_path / "straight" / "sagan" / "metrics.jsonl")

  interrupted = str(tmp_path / "interrupted")
  original_update = progress.Progress.update

  def interrupt_at(step_to_stop, action):
    def update(self, step, metrics=None):
      original_update(self, step, metrics)
      if self.name == "sagan" and step == step_to_stop:
        action()

    return update

  monkeypatch.setattr(progress.Progress, "update", interrupt_at(3, lambda: os.kill(os.getpid(), signal.SIGTERM)))
  with pytest.raises(SystemExit) as exit_info:
    stages.train(config, interrupted)
  assert exit_info.value.code == preemption.PREEMPTED_EXIT
  from sagan_jax.checkpoint import StageCheckpoints

  with StageCheckpoints(os.path.join(interrupted, "sagan", "checkpoints")) as ckpt:
    assert ckpt.latest_step() == 3 and ckpt.read_record() == {"complete": False}  # saved at SIGTERM

  def crash():
    raise RuntimeError("simulated kill")

  monkeypatch.setattr(progress.Progress, "update", interrupt_at(5, crash))
  with pytest.raises(RuntimeError, match="simulated kill"):
    stages.train(config, interrupted)  # resumes at 3, checkpoints at 4, dies after 5
  monkeypatch.setattr(progress.Progress, "update", original_update)
  stages.train(config, interrupted)  # resumes at 4
  resumed = read_metrics(os.path.join(interrupted, "sagan", "metrics.jsonl"))
  assert sorted(resumed) == sorted(straight) == list(range(0, 7))  # step 0: the untrained fidelity scores
  for step in range(0, 7):
    assert resumed[step] == straight[step], step  # bit-identical on CPU
  with open(os.path.join(interrupted, "sagan", "metrics.jsonl")) as f:
    logged = [json.loads(line)["step"] for line in f]
  assert logged == list(range(0, 7))  # each step once: a resume drops the rows past its checkpoint first


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(bench, tmp_path):
  config = tiny_config(bench, "original")
  config.ide.update(learning_rate=1e12, lr_decay_epochs=(), epochs=4, checkpoint_every=1)
  first = r"IDE: non-finite loss first at step \d+ \(found when logging"
  with pytest.raises(errors.NonFiniteLossError, match=first) as info:
    stages.train(config, str(tmp_path))
  step = int(re.search(r"first at step (\d+)", str(info.value)).group(1))
  from sagan_jax.checkpoint import StageCheckpoints

  with StageCheckpoints(str(tmp_path / "ide" / "checkpoints")) as ckpt:
    assert ckpt.latest_step() == step - 1  # checkpoint_every=1: every good step saved, the bad one not
  assert not os.path.exists(tmp_path / "results.json")


def _train_py(workdir, bench_dir, devices, log_path, extra=()):
  """Starts ``train.py`` on tests/tiny_config.py in a fresh process with ``devices`` simulated CPU devices.

  Output goes to a file, not a pipe: a process blocked on a full pipe would stall its peers' collectives.
  LLVM optimisation is off (``--xla_backend_optimization_level=0``): these runs are compile-bound,
  and it cuts their compile time by about 40 % (measured on the SA-GAN steps).
  """
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(
    [*flags, f"--xla_force_host_platform_device_count={devices}", "--xla_backend_optimization_level=0"]
  )
  # flax's layers, as the in-process runs it is compared with (tests/test_cpu.py checks the CPU layers).
  command = [
    sys.executable,
    "train.py",
    "--config=tests/tiny_config.py",
    f"--workdir={workdir}",
    f"--config.data.synthetic_dir={bench_dir}",
    "--nocpu_fast_path",
    *extra,
  ]
  with open(log_path, "w") as log:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _free_port():
  import socket

  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _two_processes(workdir, bench_dir, logs_dir, *extra):
  """Runs train.py as a 2-process job (2 simulated CPU devices each, gloo collectives); returns their outputs."""
  port = _free_port()
  logs = [logs_dir / f"{os.path.basename(workdir)}_process_{i}.log" for i in range(2)]
  procs = [
    _train_py(
      workdir,
      bench_dir,
      2,
      logs[i],
      extra=[
        "--config.sagan.num_codes=3",
        "--config.distributed.enabled=True",
        f"--config.distributed.coordinator_address=localhost:{port}",
        "--config.distributed.num_processes=2",
        f"--config.distributed.process_id={i}",
        *extra,
      ],
    )
    for i in range(2)
  ]
  try:
    for p in procs:
      p.wait(timeout=600)
  finally:
    for p in procs:
      p.kill()
  outs = [log.read_text() for log in logs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def _assert_logged_once(one_dir, two_dir, stage):
  """Each step in metrics.jsonl once, as in the one-process run, and one TensorBoard events file."""
  with open(two_dir / stage / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == list(read_metrics(one_dir / stage / "metrics.jsonl")), stage
  events = [f for f in os.listdir(two_dir / "tensorboard" / stage) if f.startswith("events")]
  assert len(events) == 1, events


def test_sigterm_during_translation_exits_promptly_keeping_its_images(end_to_end, tmp_path, monkeypatch):
  """The end-to-end run's SA-GAN translated again: SIGTERM after the first batch exits 143 with that
  batch's images kept and the set not marked complete; rerunning translates the rest."""
  config, done = copy.deepcopy(end_to_end[0]), pathlib.Path(end_to_end[1])
  config.stages = "translate"
  workdir = tmp_path / "run"
  shutil.copytree(done, workdir, ignore=shutil.ignore_patterns("translated", "ide", "results.*", "tensorboard"))
  original_update = progress.Progress.update

  def update(self, step, metrics=None):
    original_update(self, step, metrics)
    if self.name == "translate" and step == 1:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(progress.Progress, "update", update)
  with pytest.raises(SystemExit) as exit_info:
    stages.train(config, str(workdir))
  assert exit_info.value.code == preemption.PREEMPTED_EXIT
  root = workdir / "translated"
  written = sorted(p.name for p in root.rglob("*.png"))
  assert len(written) == config.translate.batch_size * config.sagan.num_codes  # the first batch and no more
  assert not (root / "labels.json").exists()  # the set is not marked complete
  monkeypatch.setattr(progress.Progress, "update", original_update)
  stages.train(config, str(workdir))  # resumes: the written batch is skipped, the rest translated
  with open(root / "labels.json") as f, open(done / "translated" / "labels.json") as g:
    assert json.load(f) == json.load(g)
  assert len(list(root.rglob("*.png"))) == len(list((done / "translated").rglob("*.png")))


@pytest.mark.xla_optimized  # its one-process IDE must match the subprocesses' to 1e-5 for 4 steps
def test_two_processes_train_as_one_and_only_process_0_writes(end_to_end, bench, tmp_path):
  """Multi-host on one machine, every stage, against one-process runs of the same config (4 devices).

  Training is compared over its first steps: reduction order differs between 4 devices in one
  process and 2 × 2 devices over gloo, and both tiny models amplify such differences within steps
  (measured: IDE losses agree to 2e-7 for 3 steps, 3e-5 at step 4, then drift ×10 per step, as this from-scratch
  tiny ResNet at lr 0.05 is in an unstable regime; SA-GAN's first Adam updates are ±lr, so a
  flipped sign moves a GAN apart, see test_sagan.py). SA-GAN is compared with the end-to-end
  run; the IDE with a one-process IDE trained here on the two-process run's translated set, so
  both see the same images; evaluation, which is deterministic, must give the same table as a
  one-process evaluation of the same checkpoint. One launch runs all stages: each launch of two
  processes costs two interpreter starts and two compilations of every program.
  """
  one_dir, two_dir = pathlib.Path(end_to_end[1]), tmp_path / "two"
  outs = _two_processes(two_dir, bench, tmp_path)
  assert "| Method |" in outs[0] and "| Method |" not in outs[1]  # the table is printed by process 0 only

  # 1. SA-GAN and translation.
  _assert_logged_once(one_dir, two_dir, "sagan")
  assert sorted(os.listdir(two_dir / "sagan" / "samples")) == sorted(os.listdir(one_dir / "sagan" / "samples"))
  a, b = read_metrics(one_dir / "sagan" / "metrics.jsonl"), read_metrics(two_dir / "sagan" / "metrics.jsonl")
  for step, rtol in ((1, 1e-5), (2, 1e-3)):  # step 1: the same global batch and state (measured 4e-7)
    for key in a[step]:
      np.testing.assert_allclose(b[step][key], a[step][key], rtol=rtol, atol=1e-6, err_msg=f"{key} at step {step}")
  # Every source image translated once, M = 3 times, by one process or the other.
  with open(two_dir / "translated" / "labels.json") as f, open(one_dir / "translated" / "labels.json") as g:
    assert json.load(f) == json.load(g)
  assert sorted(os.listdir(two_dir / "translated")) == sorted(os.listdir(one_dir / "translated"))

  # 2. IDE: a one-process IDE on the two-process run's translated images (programs compiled by the
  # end-to-end run, so this costs its few steps).
  _assert_logged_once(one_dir, two_dir, "ide")
  ref_dir = tmp_path / "ide_one_process"
  shutil.copytree(two_dir, ref_dir, ignore=shutil.ignore_patterns("ide", "results.*", "tensorboard"))
  config = copy.deepcopy(end_to_end[0])
  config.stages = "ide"
  stages.train(config, str(ref_dir))
  a, b = read_metrics(ref_dir / "ide" / "metrics.jsonl"), read_metrics(two_dir / "ide" / "metrics.jsonl")
  for step, rtol in ((1, 1e-5), (2, 1e-5), (3, 1e-5), (4, 1e-3)):
    for key in a[step]:
      np.testing.assert_allclose(b[step][key], a[step][key], rtol=rtol, atol=1e-6, err_msg=f"IDE {key} at step {step}")

  # 3. Evaluation of the two-process checkpoint, by two processes and by this one.
  with open(two_dir / "results.json") as f:
    two_process = json.load(f)["tables"]["query_gallery"]
  with stages.opened(end_to_end[0], str(two_dir)) as run:  # this process alone, 4 devices
    one_process = evaluation.evaluate(run)["tables"]["query_gallery"]
  assert two_process["num_queries"] == one_process["num_queries"] > 0
  for key in ("R-1", "R-5", "R-10", "R-20", "mAP"):
    assert abs(two_process[key] - one_process[key]) < 1e-6, (key, two_process, one_process)
