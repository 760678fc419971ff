"""The ablation runner over seeds: aggregation by hand, the claim rule, and resuming a partial run."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from sagan_jax.experiments import __main__ as runner
from sagan_jax.experiments import seeds


def result(variant, r1, mapv, viewpoint=None):
  out = {
    "experiment": "synthetic",
    "variant": variant,
    "protocol": "query_gallery",
    "target": "market1501",
    "tables": {"query_gallery": {"R-1": r1, "R-5": r1 + 5, "R-10": r1 + 8, "mAP": mapv}},
    "settings": {"normalize_features": True, "flip_average": False, "ap_mode": "step", "num_codes": 1},
  }
  if viewpoint is not None:
    out["fidelity"] = {"pixel_error": 0.5, "viewpoint_error": viewpoint, "code_diversity": 0.1}
  return out


TABLE = {
  "original": {0: result("original", 50.0, 40.0), 1: result("original", 52.0, 41.0), 2: result("original", 48.0, 42.0)},
  "sagan": {
    0: result("sagan", 60.0, 45.0, 0.2),
    1: result("sagan", 51.0, 44.0, 0.4),
    2: result("sagan", 58.0, 46.0, 0.3),
  },
  "wd": {0: result("wd", 55.0, 46.0, 0.5), 1: result("wd", 53.0, 45.0, 0.6), 2: result("wd", 57.0, 47.0, 0.9)},
}


def test_summary_means_and_sample_sds_by_hand():
  s = seeds.summarize(TABLE)
  assert s["original"]["R-1"] == {"mean": 50.0, "sd": pytest.approx(2.0), "n": 3}
  assert s["sagan"]["R-1"]["mean"] == pytest.approx(169 / 3)
  assert s["sagan"]["R-1"]["sd"] == pytest.approx(
    np.sqrt(((60 - 169 / 3) ** 2 + (51 - 169 / 3) ** 2 + (58 - 169 / 3) ** 2) / 2)
  )
  assert s["sagan"]["viewpoint_error"]["mean"] == pytest.approx(0.3) and "viewpoint_error" not in s["original"]
  assert seeds.summarize({"x": {0: result("x", 10.0, 5.0)}})["x"]["R-1"]["sd"] == 0.0


def test_claims_paired_differences_sign_counts_and_the_rule():
  claims = {(c["claim"], c["metric"]): c for c in seeds.evaluate_claims(TABLE)}
  over_original = claims[("SA-GAN [M=1] > Original", "R-1")]
  assert over_original["differences"] == [10.0, -1.0, 10.0] and over_original["agree"] == 2
  assert over_original["mean"] == pytest.approx(19 / 3) and over_original["verdict"] == "not settled"
  assert claims[("SA-GAN [M=1] > Original", "mAP")]["verdict"] == "holds"  # +5, +3, +4
  assert claims[("SA-GAN [M=1] > SA-GAN (WD)", "mAP")]["verdict"] == "reversed"  # −1, −1, −1
  # Lower is better for fidelity errors: the difference is WD's minus SA-GAN's.
  wd_view = claims[("SA-GAN (WD) viewpoint_error above SA-GAN [M=1]'s", "viewpoint_error")]
  assert wd_view["differences"] == pytest.approx([0.3, 0.2, 0.6]) and wd_view["verdict"] == "holds"
  assert not any(c.startswith("SA-GAN [M=10]") for c, _ in claims)  # rows not run: no claim
  assert seeds.verdict([1.0, 2.0]) == "not settled"  # fewer than MIN_SEEDS seeds
  assert seeds.verdict([1.0, 0.0, 2.0]) == "not settled"


def test_markdown_shows_mean_sd_and_claims():
  text = seeds.markdown(TABLE, "ablation", {"sagan": "SA-GAN [M=1]", "original": "Original", "wd": "SA-GAN (WD)"})
  assert "| Original | 3 | 50.0 ± 2.0 |" in text
  assert "| SA-GAN [M=1] > Original | R-1 | +10.0, -1.0, +10.0 | +6.3 | 2/3 | not settled |" in text
  assert re.search(r"\| SA-GAN \[M=1\] > SA-GAN \(WD\) \| mAP \| .* \| reversed \|", text)


def test_a_partly_complete_multi_seed_ablation_trains_only_what_is_missing(tmp_path, monkeypatch):
  ran = []

  def fake_run(command, check, env):
    variant = re.search(r"variant=(\w+)", " ".join(command)).group(1)
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    seed = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.seed=")))
    ran.append((os.path.basename(workdir), seed, "--config.data.viewpoint_groups=none" in command))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(result(variant, 50.0 + seed, 40.0), f)
    return subprocess.CompletedProcess(command, 0)

  monkeypatch.setattr(runner.subprocess, "run", fake_run)
  variants = ("original", "sagan", "sagan_m10", "sagan_one_group")
  # A first run stopped after seed 0 and seed 1's "original".
  for seed, variant in ((0, "original"), (0, "sagan"), (0, "sagan_m10"), (0, "sagan_one_group"), (1, "original")):
    d = tmp_path / f"seed{seed}" / variant
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(result(variant.split("_one")[0], 50.0 + seed, 40.0)))
  (tmp_path / "seed1" / "sagan" / "sagan").mkdir(parents=True)  # a trained GAN for seed 1's M=10 run to share
  record = runner.ablation("configs/synthetic.py", str(tmp_path), ["--config.sagan_train.steps=5"], variants, (0, 1))
  assert ran == [("sagan", 1, False), ("sagan_m10", 1, False), ("sagan_one_group", 1, True)]
  assert (tmp_path / "seed1" / "sagan_m10" / "sagan").is_dir()  # the GAN was shared, not retrained
  assert record["seeds"] == [0, 1] and set(record["runs"]) == set(variants)
  assert (tmp_path / "ablation.md").read_text().count("| SA-GAN [M=1], one group | 2 |") == 1
  ran.clear()
  runner.ablation("configs/synthetic.py", str(tmp_path), [], variants, (0, 1))
  assert ran == []  # everything complete: nothing runs again
  # M=10 asked for alone, later, shares the GAN of the seed's complete M=1 run too.
  (tmp_path / "seed2" / "sagan" / "sagan").mkdir(parents=True)
  (tmp_path / "seed2" / "sagan" / "results.json").write_text(json.dumps(result("sagan", 52.0, 40.0)))
  runner.ablation("configs/synthetic.py", str(tmp_path), [], ("sagan_m10",), (2,))
  assert ran == [("sagan_m10", 2, False)] and (tmp_path / "seed2" / "sagan_m10" / "sagan").is_dir()


def test_msweep_over_seeds_writes_mean_and_sd(tmp_path, monkeypatch):
  def fake_run(command, check, env):
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    m = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.sagan.num_codes=")))
    seed = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.seed=")))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(result("sagan", 40.0 + m + 2 * seed, 30.0), f)
    return subprocess.CompletedProcess(command, 0)

  monkeypatch.setattr(runner.subprocess, "run", fake_run)
  record = runner.msweep("configs/synthetic.py", str(tmp_path), [], (1, 4), (0, 1, 2))
  assert record["R-1"]["4"]["per_seed"] == [44.0, 46.0, 48.0]
  assert record["R-1"]["4"]["mean"] == pytest.approx(46.0) and record["R-1"]["4"]["sd"] == pytest.approx(2.0)
  assert (tmp_path / "msweep.png").is_file()


def test_runner_errors_are_one_line_with_status_2(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(runner.subprocess, "run", lambda command, check, env: subprocess.CompletedProcess(command, 1))
  with pytest.raises(SystemExit) as info:
    runner.ablation("configs/synthetic.py", str(tmp_path), [], ("original",), (0,))
  assert info.value.code == 2
  assert capsys.readouterr().err.strip().splitlines() == [
    f"error: the run in {tmp_path}/seed0/original stopped with status 1 (its output is above); rerun this command "
    "to resume it and the rest"
  ]
  for argv, message in (
    (
      ["ablation", "--config=configs/synthetic.py", f"--workdir={tmp_path}", "--seeds=a"],
      "error: --seeds='a': expected integers like --seeds=0,1,2,3,4",
    ),
    (
      ["ablation", "--config=configs/synthetic.py", f"--workdir={tmp_path}", "--variants=sagan,bogus"],
      "error: --variants: unknown ['bogus']",
    ),
  ):
    with pytest.raises(SystemExit) as info:
      runner.main([sys.executable, *argv])
    assert info.value.code == 2 and capsys.readouterr().err.startswith(message)


def test_report_only_tabulates_what_is_complete_and_runs_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: pytest.fail("report_only must not run anything"))
  for seed, variant in ((0, "original"), (0, "sagan"), (1, "original")):
    d = tmp_path / f"seed{seed}" / variant
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(result(variant, 50.0 + seed, 40.0)))
  record = runner.ablation("configs/synthetic.py", str(tmp_path), [], ("original", "sagan"), (0, 1), report_only=True)
  assert record["missing"] == ["sagan seed 1"] and record["seeds"] == [0, 1]
  assert record["summary"]["original"]["R-1"]["n"] == 2 and record["summary"]["sagan"]["R-1"]["n"] == 1
  assert "Not run yet (--report_only): sagan seed 1." in (tmp_path / "ablation.md").read_text()
