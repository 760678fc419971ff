"""Nothing lost, nothing silently wrong: user folders, the workdir lock, early checks, one-line errors."""

import os
import subprocess
import sys

import pytest

from sagan_jax.data import synthetic
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import stages
from sagan_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = synthetic.BenchmarkSpec(height=32, width=16, train_ids=2, test_ids=2, num_cameras=2, images_per_camera=1,
                               distractors=1, junk=1, paired_images=2)


def test_the_generator_never_deletes_a_folder_it_did_not_make(tmp_path):
  (tmp_path / "source").mkdir()
  (tmp_path / "source" / "thesis.tex").write_text("mine")
  (tmp_path / "target").mkdir()
  for overwrite in (False, True):
    with pytest.raises(ValueError, match=r"is not empty \(source, target\) and was not made by this generator"):
      synthetic.generate(str(tmp_path), TINY, overwrite=overwrite)
  assert (tmp_path / "source" / "thesis.tex").read_text() == "mine"
  out = subprocess.run([sys.executable, "-m", "sagan_jax.data.synthetic", f"--out={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
  assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
  # Its own folder is regenerated, and --overwrite touches only what it writes.
  mine = tmp_path / "bench"
  synthetic.generate(str(mine), TINY)
  (mine / "notes.txt").write_text("kept")
  synthetic.generate(str(mine), TINY, overwrite=True)
  assert (mine / "notes.txt").read_text() == "kept" and (mine / "benchmark.json").is_file()


def test_one_workdir_one_run(tmp_path, caplog):
  with stages.WorkdirLock(str(tmp_path)):
    with pytest.raises(stages.WorkdirLockedError, match=f"in use by PID {os.getpid()} on host"):
      stages.WorkdirLock(str(tmp_path)).__enter__()
  # A lock file left by a dead run (its lock gone with its process) is taken over, with a warning.
  (tmp_path / stages.LOCK_FILE).write_text("PID 999999 on host gone")
  with stages.WorkdirLock(str(tmp_path)):
    assert (tmp_path / stages.LOCK_FILE).read_text().startswith(f"PID {os.getpid()}")
  assert "taking over the lock of PID 999999 on host gone" in caplog.text


def test_the_second_train_py_on_a_workdir_is_refused(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", (
      "import sys, time; sys.path.insert(0, sys.argv[1]); from sagan_jax.experiments import stages\n"
      "with stages.WorkdirLock(sys.argv[2]):\n  print('held', flush=True); time.sleep(60)"), ROOT, str(tmp_path)],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    out = subprocess.run([sys.executable, "train.py", "--config=configs/synthetic.py", f"--workdir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 2, out.stderr[-1500:]
    assert out.stderr.strip().splitlines() == [f"error: workdir {str(tmp_path)!r} is in use by PID {holder.pid} on "
                                               f"host {os.uname().nodename}: wait for it to end, or use another --workdir"]
  finally:
    holder.kill()


@pytest.mark.parametrize("field, value, message", [
    ("sagan_train.steps", -5, r"config.sagan_train.steps=-5: expected a positive integer"),
    ("sagan_train.checkpoint_every", 0, r"config.sagan_train.checkpoint_every=0: expected a positive integer"),
    ("ide.batch_size", 12, r"config.ide.batch_size=12 is not a multiple of the 8 devices"),
    ("ide.epochs", 0, r"config.ide.epochs=0"),
    ("sagan.gan_loss", "hinge", r"sagan.gan_loss must be one of"),
])
def test_fields_a_late_stage_would_reject_are_checked_first(field, value, message):
  c = config_lib.base_config()
  c.ide.pretrained = "none"
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.stages_of(c)


def test_a_user_error_is_one_line_with_status_2_and_claims_no_workdir(tmp_path):
  workdir = tmp_path / "run"
  out = subprocess.run([sys.executable, "train.py", "--config=configs/market2prid.py", f"--workdir={workdir}",
                        "--config.ide.pretrained=none"], cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: config.data.source.manual_dir is empty: set it to the folder holding the extracted market1501 dataset "
      "(see the README's Data section)"]
  assert not workdir.exists()  # the corrected command will not be refused as "made by another config"
  bad = subprocess.run([sys.executable, "train.py", "--config=configs/synthetic.py", f"--workdir={workdir}",
                        "--config.sagan_train.steps=-5"], cwd=ROOT, capture_output=True, text=True, check=False)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      "error: config.sagan_train.steps=-5: expected a positive integer"]
  assert not workdir.exists()
