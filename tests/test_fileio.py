"""Atomic writes and the machine lock that concurrent runs take turns at."""

import os
import subprocess
import sys
import time

from sagan_jax import fileio

from helpers import ROOT


def test_an_atomic_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "results.md"
  path.write_text("old")
  fileio.write_text_atomic(str(path), "new")
  assert path.read_text() == "new" and os.listdir(tmp_path) == ["results.md"]


def test_a_second_process_waits_for_the_machine_lock_and_the_path_gets_no_lock_file_beside_it(tmp_path):
  shared, log = tmp_path / "benchmark", tmp_path / "order.txt"
  holder = (
    "import sys, time\n"
    "from sagan_jax import fileio\n"
    "with fileio.machine_lock(sys.argv[1]):\n"
    "  open(sys.argv[2], 'a').write('holder in\\n'); time.sleep(1.0); open(sys.argv[2], 'a').write('holder out\\n')\n"
  )
  proc = subprocess.Popen([sys.executable, "-c", holder, str(shared), str(log)], cwd=ROOT)
  deadline = time.monotonic() + 60
  while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
    time.sleep(0.01)
  with fileio.machine_lock(str(shared)):  # blocks until the holder is out
    log.open("a").write("waiter in\n")
  assert proc.wait() == 0
  assert log.read_text().splitlines() == ["holder in", "holder out", "waiter in"]
  with fileio.machine_lock(str(tmp_path / "other")):  # another path: a lock of its own, taken at once
    pass
  assert sorted(os.listdir(tmp_path)) == ["order.txt"]
