"""The training loop the SA-GAN, IDE and U-Net trainers share: logging, checkpoints, stopping, non-finite losses."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import loop
from sagan_jax.checkpoint import StageCheckpoints
from sagan_jax.errors import NonFiniteLossError


def _step(state, step):
  """A state that counts and sums; its 'loss' is the step number (NaN at step ``poison`` when set)."""
  new = {"count": state["count"] + 1, "total": state["total"] + step}
  loss = jnp.where(state["poison"] == step, jnp.nan, jnp.float32(step))
  return {**state, **new}, {"loss": loss}


def _fresh(poison=0):
  return {"count": jnp.zeros((), jnp.int32), "total": jnp.zeros((), jnp.int32), "poison": jnp.asarray(poison)}


class _Recorder:
  """A `loop.MetricsLog` in memory: (step, loss) rows."""

  def __init__(self, rows):
    self.rows = rows

  def trim(self, step):
    self.rows[:] = [r for r in self.rows if r[0] <= step]

  def write(self, step, metrics):
    self.rows.append((step, float(metrics.get("loss", -1))))


def _loop(logged, total=6, **kwargs):
  return loop.Loop("unit", "Unit", total, log_every=2, checkpoint_every=2, metrics_log=_Recorder(logged), **kwargs)


def test_stop_checkpoints_the_step_and_a_resume_finishes_as_an_uninterrupted_run(tmp_path):
  straight = []
  with StageCheckpoints(str(tmp_path / "straight")) as ckpt:
    done = _loop(straight).run(_fresh(), 0, _step, ckpt)
  assert int(done["count"]) == 6 and int(done["total"]) == 21
  assert straight == [(2, 2.0), (4, 4.0), (6, 6.0)]  # log steps only

  logged, polls = [], iter(range(100))
  with StageCheckpoints(str(tmp_path / "run")) as ckpt:
    with pytest.raises(loop.Stopped) as info:
      _loop(logged, should_stop=lambda: next(polls) == 2).run(_fresh(), 0, _step, ckpt)  # after step 3
    assert info.value.step == 3 and ckpt.latest_step() == 3 and ckpt.read_record() == {"complete": False}
  assert logged == [(2, 2.0), (3, 3.0)]  # the stopped step's metrics are logged although 3 is no log step
  with StageCheckpoints(str(tmp_path / "run")) as ckpt:
    state, record = ckpt.resume(_fresh())
    assert int(state["count"]) == 3 and record == {"complete": False}
    resumed = _loop(logged).run(state, 3, _step, ckpt)
    assert ckpt.latest_step() == 6 and ckpt.read_record() == {"complete": True}
  np.testing.assert_array_equal(resumed["total"], done["total"])


def test_a_non_finite_loss_names_its_first_step_and_the_truth_about_checkpoints(tmp_path):
  """NaN at step 3 (a step that is not logged): the stop at the log of step 4 names step 3, keeps
  the checkpoint of step 2, and its advice names the flags that make a rerun continue."""
  logged = []
  with StageCheckpoints(str(tmp_path / "a")) as ckpt:
    with pytest.raises(NonFiniteLossError) as info:
      _loop(logged, learning_rate_flag="the rate (--config.x.lr)").run(_fresh(poison=3), 0, _step, ckpt)
    assert ckpt.latest_step() == 2  # step 4 would have been checkpointed: it was not
  message = str(info.value)
  assert message.startswith("Unit: non-finite loss first at step 3 (found when logging step 4: all finite again)")
  assert "its checkpoint of step 2 is kept" in message and "--config.x.lr" in message
  assert "--allow_config_change, which resumes from step 2" in message
  assert logged == [(2, 2.0)]
  # Before any checkpoint: nothing is claimed to be kept.
  with StageCheckpoints(str(tmp_path / "b")) as ckpt:
    with pytest.raises(NonFiniteLossError, match=r"first at step 1 .*; no checkpoint .*which starts the stage afresh"):
      _loop([]).run(_fresh(poison=1), 0, _step, ckpt)
    assert ckpt.latest_step() is None


def test_hooks_scores_and_a_stage_that_saves_its_own_last_checkpoint(tmp_path):
  logged, pictures = [], []
  scores = lambda step, state: {"score": float(step) / 10} if step in (0, 3, 6) else {}
  hooks = loop.Hooks(
    extra_metrics=scores, after_step=lambda step, state: pictures.append(step), extra_log_steps=lambda step: step == 3
  )
  with StageCheckpoints(str(tmp_path)) as ckpt:
    _loop(logged, hooks=hooks, final_checkpoint=False).run(_fresh(), 0, _step, ckpt)
    assert ckpt.latest_step() == 4  # the last step is the stage's to save
  assert [s for s, _ in logged] == [0, 2, 3, 4, 6] and pictures == [1, 2, 3, 4, 5, 6]


def test_metrics_log_trims_what_a_resume_logs_again(tmp_path):
  log = loop.MetricsLog(str(tmp_path / "m" / "metrics.jsonl"))
  for step in (0, 2, 4, 6):
    log.write(step, {"loss": np.float32(step)})
  log.trim(3)
  with open(tmp_path / "m" / "metrics.jsonl") as f:
    assert [json.loads(line) for line in f] == [{"step": 0, "loss": 0.0}, {"step": 2, "loss": 2.0}]
