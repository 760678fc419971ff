"""Stage checkpoints: resume, damaged checkpoints, a full disk: each a warning or one line that says what to do."""

import errno
import os
import shutil
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import pytest

from sagan_jax import checkpoint
from sagan_jax.checkpoint import StageCheckpoints
from sagan_jax.errors import CheckpointError, MissingInputError


def _two_steps(directory):
  with StageCheckpoints(str(directory)) as ckpt:
    for step in (1, 2):
      ckpt.save(step, {"w": jnp.full((3,), float(step))}, {"complete": step == 2}, force=True)
    ckpt.wait()


def test_a_checkpoint_that_cannot_be_restored_is_skipped_for_the_one_before(tmp_path, caplog):
  _two_steps(tmp_path)
  shutil.rmtree(tmp_path / "2" / "state")  # the newest checkpoint lost its state item
  with StageCheckpoints(str(tmp_path)) as ckpt:
    state, record = ckpt.resume({"w": jnp.zeros((3,))})
  assert state["w"].tolist() == [1.0, 1.0, 1.0] and record == {"complete": False}
  assert f"checkpoint {tmp_path / '2'} cannot be restored" in caplog.text and "restoring step 1 instead" in caplog.text
  # Finished work is read only from a finished checkpoint: the damaged step 2 is not taken for it.
  with pytest.raises(MissingInputError, match="train it first"):
    checkpoint.restore_finished(str(tmp_path), {"w": jnp.zeros((3,))}, "train it first")


def test_small_replicated_arrays_are_written_whole_and_large_ones_split_over_the_replicas(tmp_path):
  """Orbax's replica-parallel save compiles one XLA slice per new array shape; below
  `MIN_REPLICA_SLICE_BYTES` per slice an array is written whole, with nothing to compile."""
  from jax.sharding import NamedSharding, PartitionSpec

  replicas = len(jax.devices())
  assert replicas > 1  # tests/conftest.py simulates several devices
  replicated = NamedSharding(jax.make_mesh((replicas,), ("data",)), PartitionSpec())
  lowered = []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      lowered.append(event)

  # Shapes no other test uses, so nothing is compiled already; the large one's slice is just over the bound.
  small = {f"b{i}": jax.device_put(jnp.full((replicas * (11 + i), 7), float(i)), replicated) for i in range(3)}
  columns = checkpoint.MIN_REPLICA_SLICE_BYTES // 4 + 17
  large = {"w": jax.device_put(jnp.ones((replicas, columns)), replicated)}
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    with StageCheckpoints(str(tmp_path / "small")) as ckpt:
      ckpt.save(1, small, force=True)
      ckpt.wait()
    small_lowered = len(lowered)
    with StageCheckpoints(str(tmp_path / "large")) as ckpt:
      ckpt.save(1, large, force=True)
      ckpt.wait()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert small_lowered == 0  # Orbax's default handler lowers 12 here: 3 arrays × 4 replicas' slices
  assert len(lowered) > small_lowered  # the large array is still saved slice by slice, one per replica
  with StageCheckpoints(str(tmp_path / "small")) as ckpt:
    state, _ = ckpt.restore(jax.device_put(jax.tree.map(jnp.zeros_like, small), replicated))
  for name, value in small.items():
    assert state[name].sharding == replicated and jnp.array_equal(state[name], value), name


def test_a_checkpoint_written_with_orbaxs_standard_handler_restores(tmp_path):
  """Checkpoints written before `MIN_REPLICA_SLICE_BYTES` (Orbax's `StandardSave`, as the stages did) still resume."""
  import orbax.checkpoint as ocp

  state = {"w": jnp.arange(12.0).reshape(3, 4), "step": jnp.int32(7), "rng": jnp.array([1, 2], jnp.uint32)}
  with ocp.CheckpointManager(str(tmp_path), options=ocp.CheckpointManagerOptions(create=True)) as manager:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave({"complete": True}))
    manager.save(3, args=args)
    manager.wait_until_finished()
  with StageCheckpoints(str(tmp_path)) as ckpt:
    restored, record = ckpt.resume(jax.tree.map(jnp.zeros_like, state))
  assert record == {"complete": True}
  for name, value in state.items():
    assert restored[name].dtype == value.dtype and jnp.array_equal(restored[name], value), name


def test_when_no_checkpoint_can_be_restored_the_error_names_what_to_remove(tmp_path, caplog):
  _two_steps(tmp_path)
  for step in ("1", "2"):
    shutil.rmtree(tmp_path / step / "state")
  with StageCheckpoints(str(tmp_path)) as ckpt, pytest.raises(CheckpointError) as info:
    ckpt.resume({"w": jnp.zeros((3,))})
  message = str(info.value)
  assert f"checkpoint '{tmp_path / '1'}' cannot be restored" in message and "no earlier one can" in message
  assert f"remove '{tmp_path / '2'}' '{tmp_path / '1'}'" in message and "start the stage afresh" in message
  assert "restoring step 1 instead" in caplog.text and caplog.text.count("cannot be restored") == 1


def test_storage_failures_are_recognised_also_as_orbax_and_tensorstore_word_them():
  wrapped = ValueError(
    'RESOURCE_EXHAUSTED: Error writing "a/0" in OCDBT database at local file "/x/1.orbax-checkpoint-tmp/": '
    "Failed to write 1624414 bytes to file 4: No space left on device [os_error_code='28']"
  )
  assert checkpoint._storage_reason(wrapped) == "no space left on the device"
  assert checkpoint._storage_reason(OSError(errno.EROFS, "Read-only file system")) == "read-only file system"
  try:
    raise RuntimeError("save failed") from wrapped
  except RuntimeError as chained:
    assert checkpoint._storage_reason(chained) == "no space left on the device"
  assert checkpoint._storage_reason(ValueError("shape mismatch")) is None


def test_partial_steps_that_reappear_after_the_failure_are_removed_again_at_exit(tmp_path, monkeypatch):
  # Tensorstore's writers are not Python threads: one in flight at the failure can recreate a
  # half-written step after every at-exit handler of Orbax's has run.
  partial = tmp_path / f"2{checkpoint._TMP_SUFFIX}"
  partial.mkdir()
  monkeypatch.setattr(checkpoint, "_failed_directories", {str(tmp_path)})

  def late_writer():
    for n in range(2):  # a write lands after the first removal, then another after the second
      deadline = time.monotonic() + 3.0
      while partial.exists():
        if time.monotonic() > deadline:
          return
        time.sleep(0.01)
      time.sleep(0.15)
      # Built beside the directory and renamed in, so a removal cannot cut between its two levels.
      staging = tmp_path.parent / f"{tmp_path.name}-staging{n}"
      (staging / "state").mkdir(parents=True)
      staging.rename(partial)

  writer = threading.Thread(target=late_writer)
  writer.start()
  checkpoint._remove_partials_last(settle_s=0.5, limit_s=5.0)
  writer.join()
  assert os.listdir(tmp_path) == []


def _small_filesystem(path, size="2M"):
  """A tmpfs of ``size`` at ``path`` (a real full disk), or None where this user may not mount one."""
  path.mkdir()
  mounted = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
  )
  return path if mounted.returncode == 0 else None


def test_a_full_disk_while_saving_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, caplog):
  disk = _small_filesystem(tmp_path / "disk")
  if disk is None:
    pytest.skip("mounting a small tmpfs needs root; the wording of the error is tested above")
  try:
    with StageCheckpoints(str(disk / "ck")) as ckpt:
      ckpt.save(1, {"w": jnp.ones((4,))}, {"complete": False}, force=True)
      ckpt.wait()
      big = {"w": jax.random.normal(jax.random.key(0), (1_000_000,))}  # 4 MB of incompressible values
      with pytest.raises(CheckpointError) as info:
        ckpt.save(2, big, {"complete": False}, force=True)
        ckpt.wait()
    message = str(info.value)
    assert message.startswith(f"no space left on the device while writing checkpoint '{disk / 'ck' / '2'}'")
    assert "resume from step 1" in message and "\n" not in message
    assert sorted(os.listdir(disk / "ck")) == ["1"]  # the half-written step is gone
    assert "Traceback" not in caplog.text and "RESOURCE_EXHAUSTED" not in caplog.text  # Orbax's threads are quiet
  finally:
    subprocess.run(["umount", str(disk)], check=False)


_ONE_DEVICE = "--xla_force_host_platform_device_count=1"


def test_a_full_disk_during_train_py_is_one_line_with_status_2(tmp_path):
  disk = _small_filesystem(tmp_path / "disk", size="256k")
  if disk is None:
    pytest.skip("mounting a small tmpfs needs root")
  from helpers import ROOT

  try:
    out = subprocess.run(
      [
        sys.executable,
        "train.py",
        "--config=tests/tiny_config.py",
        f"--config.data.synthetic_dir={tmp_path / 'bench'}",
        f"--workdir={disk / 'run'}",
        "--config.stages=sagan",
        "--config.sagan_train.steps=2",
      ],
      cwd=ROOT,
      # Unoptimised compiles shift the timing so that Orbax's writer threads outlive the failure: the
      # case where a temporary folder was left behind (every run, before the last-at-exit cleanup).
      # One device: the failure is the disk's, and the 4-device programs cost compile time alone.
      env={**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1", "XLA_FLAGS": _ONE_DEVICE},
      capture_output=True,
      text=True,
      check=False,
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith(("error", "Traceback", "E1", "ERROR"))]
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on the device while writing checkpoint")
    assert "Traceback" not in out.stderr
    assert not [p for p in (disk / "run" / "sagan" / "checkpoints").iterdir() if "tmp" in p.name]
  finally:
    subprocess.run(["umount", str(disk)], check=False)
