"""The ablation and M-sweep runner: resuming a partial run, reports, plots, one-line errors."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from sagan_jax.experiments import __main__ as runner

from helpers import ROOT, ranked_result


def test_a_partly_complete_multi_seed_ablation_trains_only_what_is_missing(tmp_path, monkeypatch):
  ran = []

  def fake_run(command, check, env):
    variant = re.search(r"variant=(\w+)", " ".join(command)).group(1)
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    seed = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.seed=")))
    ran.append((os.path.basename(workdir), seed, "--config.data.viewpoint_groups=none" in command))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(ranked_result(variant, 50.0 + seed, 40.0), f)
    return subprocess.CompletedProcess(command, 0)

  monkeypatch.setattr(runner.subprocess, "run", fake_run)
  variants = ("original", "sagan", "sagan_m10", "sagan_one_group")
  # A first run stopped after seed 0 and seed 1's "original".
  for seed, variant in ((0, "original"), (0, "sagan"), (0, "sagan_m10"), (0, "sagan_one_group"), (1, "original")):
    d = tmp_path / f"seed{seed}" / variant
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(ranked_result(variant.split("_one")[0], 50.0 + seed, 40.0)))
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
  (tmp_path / "seed2" / "sagan" / "results.json").write_text(json.dumps(ranked_result("sagan", 52.0, 40.0)))
  runner.ablation("configs/synthetic.py", str(tmp_path), [], ("sagan_m10",), (2,))
  assert ran == [("sagan_m10", 2, False)] and (tmp_path / "seed2" / "sagan_m10" / "sagan").is_dir()


def test_msweep_over_seeds_writes_mean_and_sd(tmp_path, monkeypatch):
  def fake_run(command, check, env):
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    m = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.sagan.num_codes=")))
    seed = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.seed=")))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(ranked_result("sagan", 40.0 + m + 2 * seed, 30.0), f)
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
  monkeypatch.undo()  # the command-line checks run the real runner
  workdir = f"--workdir={tmp_path}"
  for argv, message in (
    (["ablation", "--seeds=a"], "error: --seeds='a': expected integers of at least 0, like --seeds=0,1,2,3,4"),
    (["msweep", "--codes=0"], "error: --codes='0': expected integers of at least 1, like --codes=1,2,4,6,8,10"),
    (["ablation", "--variants=sagan,bogus"], "error: --variants: unknown ['bogus']"),
    (["ablation", "--config.sagan.lamda=1"], "error: unknown config key 'lamda'"),
  ):
    out = subprocess.run(
      [sys.executable, "-m", "sagan_jax.experiments", argv[0], "--config=configs/synthetic.py", *argv[1:], workdir],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=False,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(message), out.stderr


def test_report_only_tabulates_what_is_complete_and_runs_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: pytest.fail("report_only must not run anything"))
  for seed, variant in ((0, "original"), (0, "sagan"), (1, "original")):
    d = tmp_path / f"seed{seed}" / variant
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(ranked_result(variant, 50.0 + seed, 40.0)))
  record = runner.ablation("configs/synthetic.py", str(tmp_path), [], ("original", "sagan"), (0, 1), report_only=True)
  assert record["missing"] == ["sagan seed 1"] and record["seeds"] == [0, 1]
  assert record["summary"]["original"]["R-1"]["n"] == 2 and record["summary"]["sagan"]["R-1"]["n"] == 1
  assert "Not run yet (--report_only): sagan seed 1." in (tmp_path / "ablation.md").read_text()


def test_m_sweep_plot_puts_each_point_where_its_value_is(tmp_path):
  from PIL import Image

  from sagan_jax.experiments.__main__ import line_plot

  path = str(tmp_path / "msweep.png")
  line_plot([1, 2, 4, 10], [10.0, 20.0, 15.0, 12.0], path, "M", "R-1 (%)", size=(480, 320))
  img = np.asarray(Image.open(path)).astype(int)
  red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
  rows, cols = np.nonzero(red)
  # x axis spans 56 … 464 px for M = 1 … 10; y spans 16 … 276 px for the padded range 9 … 21.
  assert abs(cols.min() - 53) <= 1 and abs(cols.max() - 467) <= 1
  top_col = cols[rows == rows.min()].mean()
  assert abs(top_col - (56 + (2 - 1) / 9 * 408)) <= 4  # the highest point is M = 2 (R-1 = 20)
  assert abs(rows.min() - (16 + (21 - 20) / 12 * 260 - 3)) <= 2
