"""The entry points' command lines: one-line errors with status 2, and a quiet console."""

import os
import re
import subprocess
import sys

import pytest

from helpers import (
  ROOT,
)


def test_a_user_error_is_one_line_with_status_2_and_claims_no_workdir(tmp_path):
  workdir = tmp_path / "run"
  out = subprocess.run(
    [
      sys.executable,
      "train.py",
      "--config=configs/market2prid.py",
      f"--workdir={workdir}",
      "--config.ide.pretrained=none",
      "--config.data.masks=data",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
    "error: config.data.source.manual_dir is empty: set it to the folder holding the extracted market1501 dataset "
    "(see docs/data.md)"
  ]
  assert not workdir.exists()  # the corrected command will not be refused as "made by another config"
  bad = subprocess.run(
    [
      sys.executable,
      "train.py",
      "--config=configs/synthetic.py",
      f"--workdir={workdir}",
      "--config.sagan_train.steps=-5",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
    "error: config.sagan_train.steps=-5: expected a positive integer"
  ]
  assert not workdir.exists()


@pytest.mark.parametrize(
  "args, message",
  [
    (
      ["--config=configs/nope.py"],
      "error: --config: cannot load the config file (No such file or directory: 'configs/nope.py')",
    ),
    (["--config=configs/synthetic.py:variant=bogus"], "error: unknown variant 'bogus': choose one of original, "),
    (["--config=configs/synthetic.py", "--config.sagan.lamda=3"], "error: unknown config key 'lamda'"),
    (["--config=configs/synthetic.py", "--bogus"], "error: Unknown command line flag 'bogus'"),
  ],
)
def test_command_line_mistakes_are_one_line_with_status_2(tmp_path, args, message):
  out = subprocess.run(
    [sys.executable, "train.py", f"--workdir={tmp_path / 'w'}", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(message), (
    out.stderr
  )


def test_disk_full_and_read_only_are_user_errors_naming_the_path(capsys):
  import errno

  from sagan_jax import cli

  def full():
    raise OSError(errno.ENOSPC, "No space left on device", "/data/run/sagan/checkpoints/100")

  with pytest.raises(SystemExit) as info:
    cli.exit_on_user_error(full)
  assert info.value.code == 2
  assert capsys.readouterr().err == (
    "error: no space left on the device: /data/run/sagan/checkpoints/100; free space or choose another folder\n"
  )
  with pytest.raises(OSError, match="bug"):  # other OS errors are bugs: their traceback stays
    cli.exit_on_user_error(lambda: (_ for _ in ()).throw(OSError(errno.EBADF, "bug")))


def test_a_plan_run_prints_no_info_lines(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "train.py",
      "--config=tests/tiny_config.py",
      f"--workdir={tmp_path / 'w'}",
      f"--config.data.synthetic_dir={tmp_path / 'bench'}",
      "--plan",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 0, out.stderr[-1500:]

  assert not [line for line in out.stderr.splitlines() if re.match(r"^I\d{4} ", line)]
  assert "adaptations (1):" in out.stdout


_LOGS = """
from absl import app, logging
from sagan_jax import cli


def main(argv):
  cli.quiet_logging()
  logging.info("hidden %d", 1)
  logging.warning("prepared %s twice", "x")
  try:
    raise ValueError("boom")
  except ValueError:
    logging.exception("failed")


app.run(main, flags_parser=cli.parse_flags)
"""


def test_warnings_read_like_errors_and_verbosity_brings_absls_headers_back(tmp_path):
  script = tmp_path / "logs.py"
  script.write_text(_LOGS)
  run = lambda *args: subprocess.run(
    [sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True, check=True
  ).stderr.splitlines()
  quiet = run()
  assert quiet[:3] == ["warning: prepared x twice", "error: failed", "Traceback (most recent call last):"]
  assert quiet[-1] == "ValueError: boom" and not [line for line in quiet if "hidden" in line]
  verbose = run("--verbosity=0")
  assert [re.sub(r"^([IWE])\d{4} [\d:.]+ +\d+ logs\.py:\d+\] ", r"\1 ", line) for line in verbose[:3]] == [
    "I hidden 1",
    "W prepared x twice",
    "E failed",
  ]


def test_train_py_rejects_an_unknown_config_key():
  out = subprocess.run(
    [
      sys.executable,
      "train.py",
      "--config=configs/synthetic.py",
      "--workdir=/nonexistent/x",
      "--config.sagan.lamda_idt=3",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode != 0
  assert "unknown config key 'lamda_idt' (from --config.sagan.lamda_idt)" in out.stderr
  assert not os.path.exists("/nonexistent/x")
