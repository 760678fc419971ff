"""SIGTERM as a flag, and JAX's preemption sync point on several processes."""

import signal

import jax
from jax.experimental import multihost_utils

from sagan_jax import preemption


def test_several_processes_poll_jaxs_preemption_sync_point_and_keep_its_sigterm_handler(monkeypatch):
  """One process: the SIGTERM flag. Several: one sync-point poll per call, with increasing step ids
  (the protocol's requirement), and no Python handler installed over the distributed runtime's."""
  with preemption.SigtermFlag() as flag:
    stop = preemption.StopPoll(flag)
    assert not stop()
    signal.raise_signal(signal.SIGTERM)
    assert stop()
  polls = []
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point", lambda step: polls.append(step) or step == 3)
  stop = preemption.StopPoll(None)
  assert [stop() for _ in range(3)] == [False, False, True] and polls == [1, 2, 3]
  before = signal.getsignal(signal.SIGTERM)
  with preemption.SigtermFlag(install=False):
    assert signal.getsignal(signal.SIGTERM) is before
