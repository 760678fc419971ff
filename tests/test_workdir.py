"""The workdir: one run at a time, owned by one config; paths a checkpoint cannot live under."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from sagan_jax import errors
from sagan_jax import workdir as workdir_lib
from sagan_jax.experiments import config as config_lib

from helpers import (
  ROOT,
)


def test_one_workdir_one_run(tmp_path, caplog):
  with (
    workdir_lib.WorkdirLock(str(tmp_path)),
    pytest.raises(errors.WorkdirLockedError, match=f"in use by PID {os.getpid()} on host"),
  ):
    workdir_lib.WorkdirLock(str(tmp_path)).__enter__()
  # A lock file left by a dead run (its lock gone with its process) is taken over, with a warning.
  (tmp_path / workdir_lib.LOCK_FILE).write_text("PID 999999 on host gone")
  with workdir_lib.WorkdirLock(str(tmp_path)):
    assert (tmp_path / workdir_lib.LOCK_FILE).read_text().startswith(f"PID {os.getpid()}")
  assert "taking over the lock of PID 999999 on host gone" in caplog.text


def test_a_shared_folder_lock_waits_for_its_holder_instead_of_refusing(tmp_path, caplog):
  order = []
  held, release = threading.Event(), threading.Event()

  def holder():
    with workdir_lib.WorkdirLock(str(tmp_path)):
      held.set()
      release.wait(10)
      order.append("holder done")

  thread = threading.Thread(target=holder)
  thread.start()
  held.wait(10)
  threading.Timer(0.5, release.set).start()
  with workdir_lib.WorkdirLock(str(tmp_path), wait=True):
    order.append("waiter in")
    assert (tmp_path / workdir_lib.LOCK_FILE).read_text() == f"PID {os.getpid()} on host {socket.gethostname()}"
  thread.join()
  assert order == ["holder done", "waiter in"]
  assert f"waiting for PID {os.getpid()} on host {socket.gethostname()}, which holds {tmp_path}" in caplog.text
  assert "taking over" not in caplog.text  # the holder ended cleanly


def test_the_second_train_py_on_a_workdir_is_refused(tmp_path):
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from sagan_jax import workdir\n"
        "with workdir.WorkdirLock(sys.argv[2]):\n  print('held', flush=True); time.sleep(60)"
      ),
      ROOT,
      str(tmp_path),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    out = subprocess.run(
      [sys.executable, "train.py", "--config=configs/synthetic.py", f"--workdir={tmp_path}"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=False,
    )
    assert out.returncode == 2, out.stderr[-1500:]
    assert out.stderr.strip().splitlines() == [
      f"error: workdir {str(tmp_path)!r} is in use by PID {holder.pid} on "
      f"host {os.uname().nodename}: wait for it to end, or use another --workdir"
    ]
  finally:
    holder.kill()


def test_evaluate_with_another_config_says_how_to_go_on(tmp_path):
  c = config_lib.base_config()
  workdir_lib.claim(c, str(tmp_path))
  other = config_lib.base_config()
  other.sagan.lambda_idt = 1.0
  with pytest.raises(errors.WorkdirMismatchError, match="evaluate it with the config that trained it") as info:
    workdir_lib.claim(other, str(tmp_path), create=False)
  assert "--allow_config_change" not in str(info.value)


def test_workdir_of_another_config_is_refused(tmp_path):
  config = config_lib.apply_variant(config_lib.base_config(), "sagan")
  workdir_lib.claim(config, str(tmp_path))
  other = config_lib.apply_variant(config_lib.base_config(), "sagan")
  other.sagan.lambda_idt = 1.0
  with pytest.raises(errors.WorkdirMismatchError, match=r"sagan.lambda_idt: 5.0 → 1.0"):
    workdir_lib.claim(other, str(tmp_path))
  driving = config_lib.apply_variant(config_lib.base_config(), "sagan")
  driving.stages, driving.sagan_train.log_every = "ide,evaluate", 7  # how a run is driven, not what it computes
  workdir_lib.claim(driving, str(tmp_path))
  workdir_lib.claim(other, str(tmp_path), allow_config_change=True)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["sagan"]["lambda_idt"] == 1.0


def test_a_workdir_recorded_before_a_field_was_added_is_read_with_the_fields_old_value(tmp_path):
  config = config_lib.base_config()
  workdir_lib.claim(config, str(tmp_path))
  recorded = json.loads((tmp_path / "config.json").read_text())
  del recorded["ide"]["augment"], recorded["sagan"]["generator_ema"]
  (tmp_path / "config.json").write_text(json.dumps(recorded))
  workdir_lib.claim(config, str(tmp_path), create=False)  # "none", 0.0: what the older workdir computed
  config.sagan.generator_ema = 0.99
  with pytest.raises(errors.WorkdirMismatchError, match=r"sagan.generator_ema: 0.0 → 0.99"):
    workdir_lib.claim(config, str(tmp_path), create=False)
  config.sagan.generator_ema = 0.0
  config.ide.augment = "camera"
  with pytest.raises(errors.WorkdirMismatchError, match=r"ide.augment: 'none' → 'camera'"):
    workdir_lib.claim(config, str(tmp_path), create=False)


def test_the_reid_teacher_section_counts_only_while_its_loss_is_on(tmp_path):
  config = config_lib.base_config()
  workdir_lib.claim(config, str(tmp_path))
  recorded = json.loads((tmp_path / "config.json").read_text())
  del recorded["reid_teacher"], recorded["sagan"]["lambda_reid"]  # a workdir from before the section
  (tmp_path / "config.json").write_text(json.dumps(recorded))
  config.reid_teacher.stage_sizes = (2, 2, 2, 2)  # computes nothing while lambda_reid is 0
  workdir_lib.claim(config, str(tmp_path), create=False)
  config.sagan.lambda_reid = 1.0
  with pytest.raises(errors.WorkdirMismatchError, match=r"reid_teacher.seed: None → 1.*sagan.lambda_reid: 0.0 → 1.0"):
    workdir_lib.claim(config, str(tmp_path), create=False)


def test_a_workdir_that_is_a_file_or_that_no_checkpoint_could_be_read_from_is_refused(tmp_path):
  (tmp_path / "a_file").write_text("not a folder")
  with pytest.raises(errors.ConfigError, match=r"--workdir=.*a_file' is a file, not a folder"):
    workdir_lib.check_path(str(tmp_path / "a_file"))
  with pytest.raises(errors.ConfigError, match=r"its path holds \[ \]"):
    workdir_lib.check_path(str(tmp_path / "runs[3]"))
  workdir_lib.check_path(str(tmp_path / "runs 3 (ü)"))  # spaces and non-ASCII are fine
  for bad in (tmp_path / "a_file", tmp_path / "runs[3]"):
    out = subprocess.run(
      [sys.executable, "train.py", "--config=configs/synthetic.py", f"--workdir={bad}"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=False,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
  assert not (tmp_path / "runs[3]").exists()


def test_a_workdir_recorded_before_the_added_fields_opens_with_their_defaults(tmp_path):
  """Every `ADDED_FIELDS` value is today's default, so a config.json written before those fields
  existed opens with the current config, and one recorded with another value is still refused."""
  config = config_lib.base_config()
  for name, value in workdir_lib.ADDED_FIELDS.items():
    section, field = name.split(".")
    assert config[section][field] == value, name
  workdir_lib.claim(config, str(tmp_path))
  path = tmp_path / workdir_lib.CONFIG_FILE
  recorded = json.loads(path.read_text())
  # Written out, not read from ADDED_FIELDS, so a field dropped from that table fails here.
  added = (
    "ide.augment", "sagan.critic_region", "sagan.generator_ema", "sagan.critic_augment", "sagan.lambda_reid",
    "sagan.generator_person_path", "sagan.generator_background_path", "sagan.lambda_background_idt",
    "sagan.code_distribution", "sagan.cycle_code", "sagan.scl_cycles", "sagan.stm_head_s2", "sagan.spatial_critics",
    "sagan.camera_critics", "translate.region", "translate.strength", "ide.view_range",
  )  # fmt: skip
  for name in added:
    section, field = name.split(".")
    del recorded[section][field]
  path.write_text(json.dumps(recorded))
  workdir_lib.claim(config, str(tmp_path), create=False)
  categorical = config_lib.base_config()
  categorical.sagan.code_distribution = "categorical"
  with pytest.raises(errors.WorkdirMismatchError, match=r"sagan.code_distribution: 'normal' → 'categorical'"):
    workdir_lib.claim(categorical, str(tmp_path), create=False)
  # The view jitter's range is compared only where either config trains with the view augment.
  wider = config_lib.base_config()
  wider.ide.view_range = 0.06
  workdir_lib.claim(wider, str(tmp_path), create=False)
  wider.ide.augment = "view"
  with pytest.raises(errors.WorkdirMismatchError, match=r"ide.augment: 'none' → 'view'; ide.view_range: 0.02 → 0.06"):
    workdir_lib.claim(wider, str(tmp_path), create=False)
