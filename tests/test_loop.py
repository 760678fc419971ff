"""The training loop the SA-GAN, IDE and U-Net stages share: logging, checkpoints, stopping, non-finite losses."""

import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import loop, progress
from sagan_jax.checkpoint import StageCheckpoints


def _step(state, step):
  """A state that counts and sums; its 'loss' is the step number (NaN at step 4 when asked)."""
  new = {"count": state["count"] + 1, "total": state["total"] + step}
  loss = jnp.nan if state.get("poison", jnp.zeros(()))[()] and step == 4 else float(step)
  return {**state, **new}, {"loss": jnp.asarray(loss)}


def _fresh(poison=False):
  return {"count": jnp.zeros((), jnp.int32), "total": jnp.zeros((), jnp.int32), "poison": jnp.asarray(poison)}


def _loop(logged, total=6, **kwargs):
  return loop.Loop(
    "unit",
    "Unit",
    total,
    log_every=2,
    checkpoint_every=2,
    log_metrics=lambda step, m: logged.append((step, float(m.get("loss", -1)))),
    **kwargs,
  )


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


def test_a_non_finite_loss_stops_before_its_step_is_kept(tmp_path):
  logged = []
  with StageCheckpoints(str(tmp_path)) as ckpt:
    with pytest.raises(progress.NonFiniteLossError, match=r"Unit: non-finite loss at step 4 \(loss=nan\)"):
      _loop(logged).run(_fresh(poison=True), 0, _step, ckpt)
    assert ckpt.latest_step() == 2  # step 4 would have been checkpointed: it was not
  assert logged == [(2, 2.0)]


def test_hooks_scores_and_a_stage_that_saves_its_own_last_checkpoint(tmp_path):
  logged, pictures = [], []
  scores = lambda step, state: {"score": float(step) / 10} if step in (0, 3, 6) else {}
  with StageCheckpoints(str(tmp_path)) as ckpt:
    _loop(
      logged,
      extra_metrics=scores,
      after_step=lambda step, state: pictures.append(step),
      extra_log_steps=lambda step: step == 3,
      final_checkpoint=False,
    ).run(_fresh(), 0, _step, ckpt)
    assert ckpt.latest_step() == 4  # the last step is the stage's to save
  assert [s for s, _ in logged] == [0, 2, 3, 4, 6] and pictures == [1, 2, 3, 4, 5, 6]


def test_several_processes_poll_jaxs_preemption_sync_point_and_keep_its_sigterm_handler(monkeypatch):
  """One process: the SIGTERM flag. Several: one sync-point poll per call, with increasing step ids
  (the protocol's requirement), and no Python handler installed over the distributed runtime's."""
  import signal

  import jax
  from jax.experimental import multihost_utils

  from sagan_jax.experiments import stages

  run = object.__new__(stages.Run)  # the polling needs none of a run's datasets or mesh
  run._polls = 0
  with stages.SigtermFlag() as flag:
    run.sigterm = flag
    assert not run.preempted()
    signal.raise_signal(signal.SIGTERM)
    assert run.preempted()
  polls = []
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point", lambda step: polls.append(step) or step == 3)
  assert [run.preempted() for _ in range(3)] == [False, False, True] and polls == [1, 2, 3]
  before = signal.getsignal(signal.SIGTERM)
  with stages.SigtermFlag(install=False):
    assert signal.getsignal(signal.SIGTERM) is before
