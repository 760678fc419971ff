"""Nothing lost, nothing silently wrong: user folders, the workdir lock, early checks, one-line errors."""

import os
import subprocess
import sys

import pytest

from sagan_jax.data import synthetic
from sagan_jax.errors import ConfigError
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = synthetic.BenchmarkSpec(
  height=32,
  width=16,
  train_ids=2,
  test_ids=2,
  num_cameras=2,
  images_per_camera=1,
  distractors=1,
  junk=1,
  paired_images=2,
)


def test_the_generator_never_deletes_a_folder_it_did_not_make(tmp_path):
  (tmp_path / "source").mkdir()
  (tmp_path / "source" / "thesis.tex").write_text("mine")
  (tmp_path / "target").mkdir()
  for overwrite in (False, True):
    with pytest.raises(ValueError, match=r"is not empty \(source, target\) and was not made by this generator"):
      synthetic.generate(str(tmp_path), TINY, overwrite=overwrite)
  assert (tmp_path / "source" / "thesis.tex").read_text() == "mine"
  out = subprocess.run(
    [sys.executable, "-m", "sagan_jax.data.synthetic", f"--out={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
  # Its own folder is regenerated, and --overwrite touches only what it writes.
  mine = tmp_path / "bench"
  synthetic.generate(str(mine), TINY)
  (mine / "notes.txt").write_text("kept")
  synthetic.generate(str(mine), TINY, overwrite=True)
  assert (mine / "notes.txt").read_text() == "kept" and (mine / "benchmark.json").is_file()


def test_one_workdir_one_run(tmp_path, caplog):
  with (
    stages.WorkdirLock(str(tmp_path)),
    pytest.raises(stages.WorkdirLockedError, match=f"in use by PID {os.getpid()} on host"),
  ):
    stages.WorkdirLock(str(tmp_path)).__enter__()
  # A lock file left by a dead run (its lock gone with its process) is taken over, with a warning.
  (tmp_path / stages.LOCK_FILE).write_text("PID 999999 on host gone")
  with stages.WorkdirLock(str(tmp_path)):
    assert (tmp_path / stages.LOCK_FILE).read_text().startswith(f"PID {os.getpid()}")
  assert "taking over the lock of PID 999999 on host gone" in caplog.text


def test_the_second_train_py_on_a_workdir_is_refused(tmp_path):
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from sagan_jax.experiments import stages\n"
        "with stages.WorkdirLock(sys.argv[2]):\n  print('held', flush=True); time.sleep(60)"
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


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("sagan_train.steps", -5, r"config.sagan_train.steps=-5: expected a positive integer"),
    ("sagan_train.checkpoint_every", 0, r"config.sagan_train.checkpoint_every=0: expected a positive integer"),
    ("ide.batch_size", 12, r"config.ide.batch_size=12 is not a multiple of the 8 devices"),
    ("ide.epochs", 0, r"config.ide.epochs=0"),
    ("sagan.gan_loss", "hinge", r"sagan.gan_loss must be one of"),
  ],
)
def test_fields_a_late_stage_would_reject_are_checked_first(field, value, message):
  c = config_lib.base_config()
  c.ide.pretrained = "none"
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.stages_of(c, devices=8)


def test_a_user_error_is_one_line_with_status_2_and_claims_no_workdir(tmp_path):
  workdir = tmp_path / "run"
  out = subprocess.run(
    [
      sys.executable,
      "train.py",
      "--config=configs/market2prid.py",
      f"--workdir={workdir}",
      "--config.ide.pretrained=none",
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


def _market_tree(root, image_modes):
  """A Market-layout tree whose training images come in the given PIL modes (and RGB masks)."""
  import numpy as np
  from PIL import Image

  from sagan_jax.data import layouts

  names = {
    "bounding_box_train": [f"0002_c1s1_00045{i}_03.jpg" for i in range(len(image_modes))],
    "query": ["0003_c1s1_000001_00.jpg"],
    "bounding_box_test": ["0003_c2s1_000011_00.jpg"],
  }
  rng = np.random.default_rng(0)
  for folder, files in names.items():
    for k, name in enumerate(files):
      mode = image_modes[k] if folder == "bounding_box_train" else "RGB"
      path = os.path.join(root, layouts.MARKET_ROOT, folder, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      image = Image.fromarray(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)).convert(mode)
      if mode in ("RGBA", "P"):  # a PNG under the dataset's .jpg name, as converted copies leave them
        image.save(path, format="PNG")
      else:
        image.save(path, format="JPEG")
      mask = np.zeros((16, 8, 3), np.uint8)
      mask[4:12, 2:6] = (200, 180, 250)  # an RGB mask with soft values
      mask_path = os.path.join(root, "masks", layouts.MARKET_ROOT, folder, name[:-4] + ".png")
      os.makedirs(os.path.dirname(mask_path), exist_ok=True)
      Image.fromarray(mask).save(mask_path)
  return names


def test_odd_images_are_accepted_without_tensorflow(tmp_path):
  manual, data = tmp_path / "manual", tmp_path / "data"
  _market_tree(str(manual), ["L", "RGBA", "P", "RGB"])
  import importlib.util

  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("tensorflow is installed here; the project's environments do not have it")
  script = (
    "import sys, importlib.util\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import numpy as np\n"
    "from sagan_jax.data import builders\n"
    "b = builders.prepare('market1501', sys.argv[2], sys.argv[3], with_masks=True)\n"
    "train = b.as_data_source('train')\n"
    "for i in range(len(train)):\n"
    "  e = train[i]\n"
    "  assert e['image'].shape == (16, 8, 3) and e['mask'].shape == (16, 8, 1), (e['image'].shape, e['mask'].shape)\n"
    "  assert set(np.unique(e['mask'])) == {0, 255}, np.unique(e['mask'])\n"
    "assert 'tensorflow' not in sys.modules and importlib.util.find_spec('tensorflow') is None\n"
    "print('ok', len(train))\n"
  )
  out = subprocess.run(
    [sys.executable, "-c", script, ROOT, str(manual), str(data)], capture_output=True, text=True, check=False
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().endswith("ok 4")


def test_tiny_images_are_named(tmp_path):
  from PIL import Image

  from sagan_jax.data import builders

  manual = tmp_path / "manual"
  names = _market_tree(str(manual), ["RGB"])
  from sagan_jax.data import layouts

  small = manual / layouts.MARKET_ROOT / "query" / names["query"][0]
  Image.new("RGB", (3, 6)).save(small, format="JPEG")
  with pytest.raises(builders.CorruptImageError, match=rf"{small.name}.* is 6×3, below the minimum 8×4"):
    builders.prepare("market1501", str(manual), str(tmp_path / "data"))


def test_prepared_data_belongs_to_its_source(tmp_path, caplog):
  import numpy as np

  from sagan_jax.data import builders, layouts

  first, second, data = tmp_path / "first", tmp_path / "second", str(tmp_path / "data")
  _market_tree(str(first), ["RGB", "RGB"])
  _market_tree(str(second), ["RGB", "RGB", "RGB"])
  count = lambda b: len(b.as_data_source("train"))
  assert count(builders.prepare("market1501", str(first), data)) == 2
  assert count(builders.prepare("market1501", str(first), data)) == 2 and "rebuilding" not in caplog.text
  assert count(builders.prepare("market1501", str(second), data)) == 3  # another folder: rebuilt from it
  assert "was built from " + str(first) in caplog.text
  # The same folder, a file changed: rebuilt, and the new pixels are what is read.
  path = second / layouts.MARKET_ROOT / "bounding_box_train" / "0002_c1s1_000450_03.jpg"
  from PIL import Image

  Image.fromarray(np.full((16, 8, 3), 255, np.uint8)).save(path, format="JPEG")
  os.utime(path, ns=(1, 1))
  rebuilt = builders.prepare("market1501", str(second), data).as_data_source("train")
  assert "whose files have changed since" in caplog.text
  assert any(np.all(rebuilt[i]["image"] > 250) for i in range(3))
  with pytest.raises(layouts.DatasetLayoutError, match="does not exist"):
    builders.prepare("market1501", str(tmp_path / "gone"), data)


def test_a_checkpoint_that_cannot_be_restored_is_skipped_for_the_one_before(tmp_path, caplog):
  import shutil

  import jax.numpy as jnp

  from sagan_jax.checkpoint import StageCheckpoints

  with StageCheckpoints(str(tmp_path)) as ckpt:
    for step in (1, 2):
      ckpt.save(step, {"w": jnp.full((3,), float(step))}, {"complete": step == 2}, force=True)
    ckpt.wait()
  shutil.rmtree(tmp_path / "2" / "state")  # the newest checkpoint lost its state item
  with StageCheckpoints(str(tmp_path)) as ckpt:
    state, record = ckpt.resume({"w": jnp.zeros((3,))})
  assert state["w"].tolist() == [1.0, 1.0, 1.0] and record == {"complete": False}
  assert f"checkpoint {tmp_path / '2'} cannot be restored" in caplog.text


def test_a_workdir_recorded_before_new_fields_resumes_unless_they_change_what_it_computes(tmp_path):
  import json

  c = config_lib.base_config()
  c.ide.pretrained = "none"
  recorded = json.loads(c.to_json_best_effort())
  for section, name in (
    ("sagan", "stm_head"),
    ("sagan", "gan_loss"),
    ("sagan", "history_pool"),
    ("sagan", "lr_schedule"),
    ("data", "viewpoint_groups"),
    ("data", "prid_adaptation"),
  ):
    del recorded[section][name]
  recorded["ide"]["normalize_features"] = False  # a field since removed
  (tmp_path / stages.CONFIG_FILE).write_text(json.dumps(recorded))
  with pytest.raises(stages.WorkdirMismatchError, match=r"1 fields differ: data.viewpoint_groups: 'none' → 'table'"):
    stages.claim_workdir(c, str(tmp_path))  # grouping would compute something else
  c.data.viewpoint_groups = "none"
  stages.claim_workdir(c, str(tmp_path))  # the other new fields hold what the old run did


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


def test_evaluate_with_another_config_says_how_to_go_on(tmp_path):
  c = config_lib.base_config()
  stages.claim_workdir(c, str(tmp_path))
  other = config_lib.base_config()
  other.sagan.lambda_idt = 1.0
  with pytest.raises(stages.WorkdirMismatchError, match="evaluate it with the config that trained it") as info:
    stages.claim_workdir(other, str(tmp_path), create=False)
  assert "--allow_config_change" not in str(info.value)


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
  import re

  assert not [line for line in out.stderr.splitlines() if re.match(r"^I\d{4} ", line)]
  assert "adaptations (1):" in out.stdout
