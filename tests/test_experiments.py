"""train.py's stages end to end on a tiny synthetic benchmark: outputs, resume, SIGTERM, refusals, variants."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from sagan_jax import progress
from sagan_jax.experiments import config as config_lib
from sagan_jax.experiments import results, stages
from sagan_jax.sagan import SAGAN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(bench_dir, variant="sagan"):
  """configs/synthetic.py shrunk: 32×16 images, narrow networks, a few steps of everything."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("synthetic_config", os.path.join(ROOT, "configs", "synthetic.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(f"variant={variant}")
  c.data.synthetic_dir = str(bench_dir)
  c.data.synthetic_spec.update(height=64, width=32, train_ids=8, test_ids=6, num_cameras=2, images_per_camera=2,
                               distractors=4, junk=2, seed=3)
  s = c.sagan
  s.image_size = (32, 16)
  s.generator_features, s.generator_blocks, s.critic_features, s.critic_layers = 8, 1, 8, 2
  s.stm_features, s.stm_layers, s.stm_hidden, s.spatial_critic_hidden = 8, 2, 16, 16
  s.sianet_widths, s.sianet_embed_dim, s.n_critic = (8, 16), 16, 2
  c.sagan_train.update(batch_size=8, steps=4, log_every=1, sample_every=2, checkpoint_every=2)
  c.ide.update(image_size=(32, 16), width=8, batch_size=8, epochs=2, lr_decay_epochs=(1,), log_every=1,
               checkpoint_every=4)
  c.translate.batch_size = 16
  c.eval.batch_size = 16
  return c


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  return tmp_path_factory.mktemp("bench")


def read_metrics(path):
  """step → the last record logged for it (a resumed run logs the steps after its checkpoint again)."""
  out = {}
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      out[record["step"]] = record
  return out


def test_end_to_end_run_writes_every_output_and_reruns_as_a_no_op(bench, tmp_path):
  config = tiny_config(bench)
  config.sagan.num_codes = 3
  workdir = str(tmp_path / "run")
  stages.train(config, workdir)
  for path in ("config.json", "results.json", "results.md", "sagan/metrics.jsonl", "ide/metrics.jsonl",
               "sagan/samples/step_0000002.png", "sagan/samples/step_0000004.png", "translated/labels.json"):
    assert os.path.isfile(os.path.join(workdir, path)), path
  assert any(f.startswith("events") for _, _, fs in os.walk(os.path.join(workdir, "tensorboard")) for f in fs)
  with open(os.path.join(workdir, "translated", "labels.json")) as f:
    labels = json.load(f)
  assert len(labels["names"]) == 3 * labels["meta"]["source_images"]  # M = 3 images per source image
  assert labels["person_id"][:3] == [labels["person_id"][0]] * 3
  from PIL import Image
  grid = np.asarray(Image.open(os.path.join(workdir, "sagan/samples/step_0000004.png")))
  assert grid.shape == (4 * 34 + 2, 8 * 18 + 2, 3)  # 4 rows; source, 3 × (S1(x), G1(S1(x))), target
  with open(os.path.join(workdir, "results.json")) as f:
    result = json.load(f)
  table = result["tables"]["query_gallery"]
  assert 0 <= table["mAP"] <= 100 and table["R-1"] <= table["R-5"] <= table["R-10"]
  assert table["num_queries"] > 0
  stamps = {p: os.stat(os.path.join(workdir, p)).st_mtime_ns for p in ("translated/labels.json", "sagan/metrics.jsonl")}
  stages.train(config, workdir)  # every training stage is complete: only the evaluation runs again
  assert {p: os.stat(os.path.join(workdir, p)).st_mtime_ns for p in stamps} == stamps
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["tables"] == result["tables"]


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
  assert exit_info.value.code == stages.PREEMPTED_EXIT
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
  assert sorted(resumed) == sorted(straight) == list(range(1, 7))
  for step in range(1, 7):
    assert resumed[step] == straight[step], step  # bit-identical on CPU


def test_workdir_of_another_config_is_refused(tmp_path):
  config = config_lib.apply_variant(config_lib.base_config(), "sagan")
  stages.claim_workdir(config, str(tmp_path))
  other = config_lib.apply_variant(config_lib.base_config(), "sagan")
  other.sagan.lambda_idt = 1.0
  with pytest.raises(stages.WorkdirMismatchError, match=r"sagan.lambda_idt: 5.0 → 1.0"):
    stages.claim_workdir(other, str(tmp_path))
  driving = config_lib.apply_variant(config_lib.base_config(), "sagan")
  driving.stages, driving.sagan_train.log_every = "ide,evaluate", 7  # how a run is driven, not what it computes
  stages.claim_workdir(driving, str(tmp_path))
  stages.claim_workdir(other, str(tmp_path), allow_config_change=True)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["sagan"]["lambda_idt"] == 1.0


def test_each_variant_builds_the_networks_of_its_row():
  def networks(variant):
    c = config_lib.apply_variant(config_lib.base_config(), variant)
    if variant == "original":
      return c, None
    model = SAGAN(c.sagan)
    return c, set(model.generator_names + model.critic_names + model.sianet_names)

  c, _ = networks("original")
  assert config_lib.stages_of(c) == ("ide", "evaluate")
  full = {"G1", "G2", "S1", "S2", "D1", "D2", "DT1", "DT2", "SiaNet"}
  assert networks("sagan")[1] == full and networks("wd")[1] == full
  assert networks("sagan")[0].sagan.num_codes == 1 and networks("sagan_m10")[0].sagan.num_codes == 10
  assert networks("ws")[1] == full - {"S1", "S2", "DT1", "DT2"}
  assert networks("wp")[1] == full - {"G1", "G2"}
  c, nets = networks("cyclegan")
  assert nets == {"G1", "G2", "D1", "D2"} and not c.sagan.use_mask and c.sagan.identity_loss == "none"
  assert "masks" not in config_lib.stages_of(c)
  assert networks("cyclegan_star")[0].sagan.identity_loss == "mapping"
  assert not networks("wd")[0].sagan.disentangled_cycle
  with pytest.raises(ValueError, match="unknown variant 'sagan_m5'"):
    config_lib.apply_variant(config_lib.base_config(), "sagan_m5")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(bench, tmp_path):
  config = tiny_config(bench, "original")
  config.ide.update(learning_rate=1e12, lr_decay_epochs=(), epochs=4, checkpoint_every=1)
  with pytest.raises(progress.NonFiniteLossError, match=r"IDE: non-finite loss at step \d+ \(loss=") as info:
    stages.train(config, str(tmp_path))
  step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
  from sagan_jax.checkpoint import StageCheckpoints
  with StageCheckpoints(str(tmp_path / "ide" / "checkpoints")) as ckpt:
    assert ckpt.latest_step() == step - 1  # checkpoint_every=1: every good step saved, the bad one not
  assert not os.path.exists(tmp_path / "results.json")


def test_results_table_in_the_papers_prid_layout():
  mean = lambda r1: {"R-1": r1, "R-5": r1 + 10, "R-10": r1 + 20, "mAP": r1 / 2}
  result = {"experiment": "duke2prid", "variant": "sagan_m10", "protocol": "prid2011", "target": "prid2011",
            "tables": {"a2b": {"mean": mean(10.0)}, "b2a": {"mean": mean(30.0)}},
            "settings": {"normalize_features": False, "flip_average": True, "ap_mode": "step"}}
  text = results.markdown([result], "Table III")
  assert "| Method | PRID-CamA R-1 | PRID-CamA R-5 | PRID-CamA R-10 | PRID-CamA mAP | PRID-CamB R-1 |" in text
  assert "| SA-GAN [M=10] | 10.0 | 20.0 | 30.0 | 5.0 | 30.0 | 40.0 | 50.0 | 15.0 |" in text
  assert "flip-averaged" in text and "L2" not in text
  # Row labels carry the M a run actually used (the M sweep overrides num_codes of "sagan").
  label = lambda variant, codes: results.method_name({"variant": variant, "settings": {"num_codes": codes}})
  assert [label("sagan", 4), label("sagan_m10", 10), label("ws", 1), label("wd", 3), label("original", 0)] == [
      "SA-GAN [M=4]", "SA-GAN [M=10]", "SA-GAN (WS)", "SA-GAN (WD) [M=3]", "Original"]


def test_train_py_rejects_an_unknown_config_key():
  out = subprocess.run([sys.executable, "train.py", "--config=configs/synthetic.py", "--workdir=/nonexistent/x",
                        "--config.sagan.lamda_idt=3"], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode != 0
  assert "unknown config key 'lamda_idt' (from --config.sagan.lamda_idt)" in out.stderr
  assert not os.path.exists("/nonexistent/x")


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
