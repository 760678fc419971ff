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


def test_the_view_control_shares_the_gan_jitters_the_ide_and_is_m10s_claim(tmp_path, monkeypatch):
  # Five seeds; M=10 beats M=1 by 3 R-1 on every seed, and the view control by 1, 1, 1, 1, 6.
  r1 = {"sagan": [50, 51, 52, 53, 54], "sagan_m10": [53, 54, 55, 56, 57], "sagan_view": [52, 53, 54, 55, 51]}
  commands = {}

  def fake_run(command, check, env):
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    row, seed = os.path.basename(workdir), int(os.path.basename(os.path.dirname(workdir))[4:])
    commands[row, seed] = (command, os.path.isdir(os.path.join(workdir, "sagan")))
    os.makedirs(os.path.join(workdir, "sagan"), exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(ranked_result("sagan", float(r1[row][seed]), 40.0), f)
    return subprocess.CompletedProcess(command, 0)

  monkeypatch.setattr(runner.subprocess, "run", fake_run)
  assert runner.ALL_VARIANTS.index("sagan_view") == runner.ALL_VARIANTS.index("sagan_m10") + 1
  record = runner.ablation("configs/synthetic.py", str(tmp_path), [], ("sagan", "sagan_m10", "sagan_view"), range(5))
  command, had_gan = commands["sagan_view", 2]
  assert had_gan and "--config.ide.augment=view" in command and "--config=configs/synthetic.py:variant=sagan" in command
  assert "--config.ide.augment=view" not in commands["sagan", 2][0]
  by_claim = {(c["claim"], c["metric"]): c for c in record["claims"]}
  control = by_claim["SA-GAN [M=10] > SA-GAN [M=1] with a view jitter", "R-1"]
  assert control["differences"] == [1.0, 1.0, 1.0, 1.0, 6.0] and control["mean"] == pytest.approx(2.0)
  assert by_claim["SA-GAN [M=10] > SA-GAN [M=1]", "R-1"]["differences"] == [3.0] * 5
  assert "| SA-GAN [M=1], IDE with a view jitter | 5 |" in (tmp_path / "ablation.md").read_text()


class _FakeRun:
  """A run launched by the parallel runner: finishes after ``polls`` polls, writing its results then."""

  def __init__(self, command, events, status=0, polls=3):
    self.command, self.events, self.status, self.polls, self.returncode = command, events, status, polls, None
    self.workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    self.variant = re.search(r"variant=(\w+)", " ".join(command)).group(1)
    self.name = os.path.relpath(self.workdir, os.path.dirname(os.path.dirname(self.workdir)))
    events.append(("start", self.name, os.path.isdir(os.path.join(self.workdir, "sagan"))))

  def poll(self):
    self.polls -= 1
    if self.polls > 0:
      return None
    if self.returncode is None:
      self.returncode = self.status
      if self.status == 0:
        os.makedirs(os.path.join(self.workdir, "sagan"), exist_ok=True)  # its trained GAN
        seed = int(next(a.split("=", 1)[1] for a in self.command if a.startswith("--config.seed=")))
        with open(os.path.join(self.workdir, "results.json"), "w") as f:
          json.dump(ranked_result(self.variant, 50.0 + seed, 40.0), f)
      self.events.append(("end", self.name, self.status))
    return self.returncode

  def terminate(self):
    self.events.append(("terminate", self.name))

  def wait(self):
    return self.returncode


def test_parallel_jobs_overlap_and_a_run_that_shares_a_gan_waits_for_it(tmp_path, monkeypatch):
  events, logs = [], []

  def launch(command, env, log_path, cores):
    logs.append(log_path)
    return _FakeRun(command, events)

  monkeypatch.setattr(runner, "_launch", launch)
  monkeypatch.setattr(runner.time, "sleep", lambda s: None)
  variants = ("sagan_m10", "original", "sagan")  # M=10 listed first: it must still wait for M=1's GAN
  record = runner.ablation("configs/synthetic.py", str(tmp_path), [], variants, (0, 1), jobs=2)
  order = [e[:2] for e in events]
  running, most = set(), 0
  for kind, name, *_ in events:
    running = running | {name} if kind == "start" else running - {name}
    most = max(most, len(running))
  assert most == 2  # two at a time, never three
  for seed in (0, 1):
    m10 = order.index(("start", f"seed{seed}/sagan_m10"))
    assert order.index(("end", f"seed{seed}/sagan")) < m10  # started after its GAN was trained...
    assert ("start", f"seed{seed}/sagan_m10", True) in events  # ...and with that GAN copied in
  assert sorted(logs) == sorted(str(tmp_path / f"seed{s}" / f"{v}.log") for s in (0, 1) for v in variants)
  assert record["seeds"] == [0, 1] and set(record["runs"]) == set(variants)


def test_a_failed_parallel_run_lets_the_others_finish_starts_no_more_and_says_where_its_log_is(
  tmp_path, monkeypatch, capsys
):
  events = []

  def launch(command, env, log_path, cores):
    failing = "seed0/original" in log_path
    return _FakeRun(command, events, status=1 if failing else 0, polls=1 if failing else 4)

  monkeypatch.setattr(runner, "_launch", launch)
  monkeypatch.setattr(runner.time, "sleep", lambda s: None)
  with pytest.raises(SystemExit) as info:
    runner.ablation("configs/synthetic.py", str(tmp_path), [], ("original", "sagan"), (0, 1, 2), jobs=2)
  assert info.value.code == 2
  assert [e[:2] for e in events] == [
    ("start", "seed0/original"),
    ("start", "seed0/sagan"),
    ("end", "seed0/original"),
    ("end", "seed0/sagan"),  # the run beside the failed one finished; seeds 1 and 2 never started
  ]
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [
    f"error: 1 run(s) stopped: {tmp_path}/seed0/original (status 1, its output in {tmp_path}/seed0/original.log); "
    "rerun this command to resume them and the rest"
  ]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="core pinning is Linux-only")
def test_each_job_slot_gets_cores_of_its_own_and_a_launched_run_sees_only_them(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(runner.os, "sched_getaffinity", lambda pid: set(range(8)))
  assert runner._core_slots(3, 2) == [{0, 1}, {2, 3}, {4, 5}]
  assert runner._core_slots(2, 0) == [None, None]
  with pytest.raises(SystemExit):
    runner._core_slots(5, 2)
  assert "needs 10 cores and this process may use 8" in capsys.readouterr().err
  monkeypatch.undo()
  core = min(os.sched_getaffinity(0))
  log = tmp_path / "run.log"
  probe = "import os, time; time.sleep(0.5); print(sorted(os.sched_getaffinity(0)))"
  runner._launch([sys.executable, "-c", probe], dict(os.environ), str(log), {core}).wait()
  assert log.read_text().strip() == f"[{core}]"


def test_msweep_over_seeds_writes_mean_and_sd(tmp_path, monkeypatch):
  def fake_run(command, check, env):
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    m = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.sagan.num_codes=")))
    seed = int(next(a.split("=", 1)[1] for a in command if a.startswith("--config.seed=")))
    view = 0.5 if "--config.ide.augment=view" in command else 0.0
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(ranked_result("sagan", 40.0 + m + 2 * seed + view, 30.0), f)
    return subprocess.CompletedProcess(command, 0)

  monkeypatch.setattr(runner.subprocess, "run", fake_run)
  record = runner.msweep("configs/synthetic.py", str(tmp_path), [], (1, 4), (0, 1, 2))
  assert record["R-1"]["4"]["per_seed"] == [44.0, 46.0, 48.0]
  assert record["R-1"]["4"]["mean"] == pytest.approx(46.0) and record["R-1"]["4"]["sd"] == pytest.approx(2.0)
  # The control: M = 1's run with the view jitter, per seed in seed<S>/view.
  assert record["view_control"] == {
    "M": 1,
    "mean": pytest.approx(43.5),
    "sd": pytest.approx(2.0),
    "per_seed": [41.5, 43.5, 45.5],
  }
  assert all((tmp_path / f"seed{seed}" / "view" / "results.json").is_file() for seed in range(3))
  assert (tmp_path / "msweep.png").is_file()
  plain = runner.msweep("configs/synthetic.py", str(tmp_path / "plain"), [], (1, 4), (0,), view_control=False)
  assert "view_control" not in plain and not (tmp_path / "plain" / "seed0" / "view").exists()


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
  # A level inside the range leaves the axes as they were and is drawn dashed, grey, at its height.
  line_plot([1, 2, 4, 10], [10.0, 20.0, 15.0, 12.0], path, "M", "R-1 (%)", size=(480, 320), level=(18.0, "view"))
  img = np.asarray(Image.open(path)).astype(int)
  grey = np.all(img == 110, axis=-1)
  line_rows = np.nonzero(grey[:, 60:460])[0]
  assert abs(np.bincount(line_rows).argmax() - (16 + (21 - 18) / 12 * 260)) <= 1
  assert 0.4 < np.bincount(line_rows).max() / 400 < 0.75  # dashes: about 5 of every 8 columns
